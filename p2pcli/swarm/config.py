"""What the user chose for a swarm: servers, limits and timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SwarmConfig:
    signal_urls: list[str]
    "Signaling servers, in order of preference (one connection: a cluster's nodes)."
    trackers: list[str] = field(default_factory=list)
    "WebTorrent WebSocket trackers (ws:// or wss://), each announced to at once."
    peerjs: list[str] = field(default_factory=list)
    "PeerJS servers (docs/PROTOCOL.md §2.2), each registered with at once."
    ice_servers: list = field(default_factory=list)
    "RTCIceServer list; empty means host candidates only."
    ice_servers_fixed: bool = False
    "The user chose ICE servers (--ice-server): ignore the signaling server's ice-config."
    token: str | None = None
    "Signaling access token."
    retries: int = 3
    "Attempts to reach the signaling server."
    timeout: float = 10.0
    "Seconds to wait for a usable peer before giving up."
    max_peers: int = 32
    "Connections kept at once."
    max_peers_per_address: int | None = None
    "Connections from one remote address (None: slots.default_per_address)."
    max_upload_rate: float | None = None
    "Bytes per second summed over all peers (None: unlimited)."
    connect_timeout: float = 15.0
    "Seconds for one WebRTC connection to open."
