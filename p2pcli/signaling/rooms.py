"""Who is in which room, who may message whom, and the counters behind /stats (sans-IO).

`Rooms` is the whole signaling state: peers (one per connection, whatever the
transport), the rooms they announced (one per content hash) and the relay rule. It does
no I/O and keeps no clock; the server adapter (server.py) calls it and delivers what it
returns. A room exists while it has a member; a peer leaves every room when it goes.
"""

from __future__ import annotations

import base64
import random
import secrets
from dataclasses import dataclass, field
from typing import Final

from .limits import MAX_PEER_LIST, MAX_ROOMS
from .schema import ErrorCode, Relay, SignalSchemaError

#: Rooms one connection may be in. A seeder sharing many files announces each hash on
#: the same connection; the bound keeps one client from creating rooms without end.
MAX_ROOMS_PER_PEER: Final = MAX_ROOMS


def new_peer_id() -> str:
    """A fresh peer id, shaped like a Socket.IO sid (20 characters of URL-safe base64).

    Peers on the plain-WebSocket transport get these, so a client cannot tell which
    transport another peer uses.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode("ascii")


@dataclass(slots=True)
class Peer:
    """One connection."""

    id: str
    """Server-assigned id (the Socket.IO sid, or `new_peer_id()` for /ws)."""
    transport: str
    """``"socket.io"`` or ``"ws"``; only reported in stats."""
    rooms: set[str] = field(default_factory=set)
    """Rooms (content hashes) this peer announced."""


@dataclass(slots=True)
class Stats:
    """Counters since the server started; `Rooms.snapshot` adds the gauges."""

    connects: int = 0
    """Connections accepted."""
    announces: int = 0
    """``announce`` events accepted."""
    relayed: int = 0
    """offer/answer/ice-candidate messages delivered to their target."""
    errors: int = 0
    """``error`` answers sent for bad input (rate-limited events included)."""
    rate_limited: int = 0
    """Events refused because their connection was over its rate."""
    refused: int = 0
    """Connections refused (wrong token, too many from one address)."""


@dataclass(frozen=True, slots=True)
class Joined:
    """What an accepted ``announce`` asks the adapter to send."""

    peers: list[str]
    """Everyone else in the room, in join order: the announcer's ``peer-list`` (a random
    sample of `Rooms.max_peer_list` of them, still in join order, in a larger room)."""
    notify: list[str]
    """Who gets ``new-peer``: the others, or nobody when the peer was already a member."""


@dataclass
class Rooms:
    """Room membership and the relay rule for every connected peer."""

    max_rooms_per_peer: int = MAX_ROOMS_PER_PEER
    max_peer_list: int = MAX_PEER_LIST
    rng: random.Random = field(default_factory=random.Random)
    peers: dict[str, Peer] = field(default_factory=dict)
    # Room name -> members; a dict used as an ordered set so peer-list keeps join order.
    rooms: dict[str, dict[str, None]] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)

    def connect(self, peer_id: str, transport: str) -> None:
        """Register a new connection. Ids are unique: the server makes them."""
        self.peers[peer_id] = Peer(peer_id, transport)
        self.stats.connects += 1

    def announce(self, peer_id: str, room: str) -> Joined:
        """Put `peer_id` in `room`; say whom to answer and whom to tell.

        Announcing a room again is allowed (clients do it after reconnecting): the peer
        gets a fresh peer-list, and the others are not told twice.
        """
        peer = self.peers[peer_id]
        members = self.rooms.get(room)
        if members is None:
            if len(peer.rooms) >= self.max_rooms_per_peer:
                raise SignalSchemaError(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"a connection may announce at most {self.max_rooms_per_peer} hashes",
                )
            members = self.rooms[room] = {}
        elif peer_id not in members and len(peer.rooms) >= self.max_rooms_per_peer:
            raise SignalSchemaError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a connection may announce at most {self.max_rooms_per_peer} hashes",
            )
        self.stats.announces += 1
        others = [p for p in members if p != peer_id]
        listed = sample_in_order(others, self.max_peer_list, self.rng)
        if peer_id in members:
            return Joined(listed, [])
        members[peer_id] = None
        peer.rooms.add(room)
        return Joined(listed, others)

    def route(self, sender: str, relay: Relay) -> dict[str, object]:
        """Check that `sender` may message the target; return the payload to deliver.

        The rule: both must be connected and share a room, and they are two peers: a
        peer shares a room with itself, but a message to its own id is delivered to
        nobody (as the reference server's ``socket.to(id)``, which excludes the sender).
        The answer for "no such peer" and "not in your room" is the same, so a stranger
        learns nothing about who is connected. The returned payload is the sender's,
        every field kept, with ``fromPeer`` set to the sender's id (overwriting any the
        client sent).
        """
        if relay.target == sender:
            raise SignalSchemaError(
                ErrorCode.UNKNOWN_PEER,
                "targetPeer is your own id: a peer cannot signal itself",
            )
        target = self.peers.get(relay.target)
        source = self.peers.get(sender)
        if target is None or source is None or source.rooms.isdisjoint(target.rooms):
            raise SignalSchemaError(
                ErrorCode.UNKNOWN_PEER,
                f"no peer {relay.target!r} in any room you announced",
            )
        out = dict(relay.payload)
        out["fromPeer"] = sender
        return out

    def disconnect(self, peer_id: str) -> list[str]:
        """Remove a peer from every room; return who shared a room with it (each once).

        Rooms left empty are freed. Unknown ids are ignored, so a double disconnect
        (both transports racing to report it) is harmless.
        """
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return []
        notify: dict[str, None] = {}
        for room in peer.rooms:
            members = self.rooms[room]
            del members[peer_id]
            if members:
                notify.update(members)
            else:
                del self.rooms[room]
        return list(notify)

    def rooms_of(self, peer_id: str) -> set[str]:
        """The rooms `peer_id` is in (empty if it is not connected)."""
        peer = self.peers.get(peer_id)
        return peer.rooms if peer is not None else set()

    def snapshot(self, uptime: float) -> dict[str, object]:
        """The /stats document. `uptime` (seconds) comes from the caller's clock."""
        by_transport: dict[str, int] = {}
        for peer in self.peers.values():
            by_transport[peer.transport] = by_transport.get(peer.transport, 0) + 1
        return {
            "peers": len(self.peers),
            "peersByTransport": by_transport,
            "rooms": len(self.rooms),
            "relayed": self.stats.relayed,
            "announces": self.stats.announces,
            "connects": self.stats.connects,
            "errors": self.stats.errors,
            "rateLimited": self.stats.rate_limited,
            "refused": self.stats.refused,
            "uptime": round(uptime, 3),
        }


def sample_in_order(peers: list[str], limit: int, rng: random.Random) -> list[str]:
    """At most `limit` of `peers` (all of them if 0), chosen at random, order kept.

    Random, as BitTorrent trackers do, so that in a crowded room every member (the
    seeders who joined first included) keeps being handed to newcomers.
    """
    if limit <= 0 or len(peers) <= limit:
        return peers
    return [peers[i] for i in sorted(rng.sample(range(len(peers)), limit))]
