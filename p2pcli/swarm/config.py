"""What the user chose for a swarm: servers, limits and timeouts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import wire
from ..picker import REQUEST_TIMEOUT

HANDSHAKE_TIMEOUT_ENV = "P2P_HANDSHAKE_TIMEOUT"
MANIFEST_TIMEOUT_ENV = "P2P_MANIFEST_TIMEOUT"
REQUEST_TIMEOUT_ENV = "P2P_REQUEST_TIMEOUT"


def env_seconds(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """The positive seconds the environment variable `name` gives, else `default`.

    Knobs for tests and the impatient, not flags: a peer that never answers costs this
    long before it is dropped (time that end-to-end tests of such peers would otherwise
    wait out), the defaults suit every real network, and a value too short drops peers
    that are merely slow."""
    value = (os.environ if environ is None else environ).get(name, "")
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if seconds > 0 else default


def handshake_timeout(environ: Mapping[str, str] | None = None) -> float:
    """`wire.HANDSHAKE_TIMEOUT`, or the seconds P2P_HANDSHAKE_TIMEOUT gives."""
    return env_seconds(HANDSHAKE_TIMEOUT_ENV, wire.HANDSHAKE_TIMEOUT, environ)


def manifest_timeout(environ: Mapping[str, str] | None = None) -> float:
    """`wire.MANIFEST_TIMEOUT`, or the seconds P2P_MANIFEST_TIMEOUT gives."""
    return env_seconds(MANIFEST_TIMEOUT_ENV, wire.MANIFEST_TIMEOUT, environ)


def request_timeout(environ: Mapping[str, str] | None = None) -> float:
    """`picker.REQUEST_TIMEOUT`, or the seconds P2P_REQUEST_TIMEOUT gives."""
    return env_seconds(REQUEST_TIMEOUT_ENV, REQUEST_TIMEOUT, environ)


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
    "Seconds without help (manifest bytes or a block: patience.py) before giving up."
    max_peers: int = 32
    "Connections kept at once."
    max_peers_per_address: int | None = None
    "Connections from one remote address (None: slots.default_per_address)."
    max_upload_rate: float | None = None
    "Bytes per second summed over all peers (None: unlimited)."
    connect_timeout: float = 15.0
    "Seconds for one WebRTC connection to open."
    handshake_timeout: float = field(default_factory=handshake_timeout)
    "Seconds from a channel's opening to the peer's handshake (P2P_HANDSHAKE_TIMEOUT)."
    manifest_timeout: float = field(default_factory=manifest_timeout)
    "Seconds a peer gets to answer a manifest request (P2P_MANIFEST_TIMEOUT)."
    request_timeout: float = field(default_factory=request_timeout)
    """Seconds a block request waits before it goes to another peer (P2P_REQUEST_TIMEOUT);
    a peer that sent nothing for as long is dropped."""
