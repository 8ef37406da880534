"""What the swarm knows of one remote peer (sans-IO; the link lives in the adapter)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import wire
from .manifest_fetch import ManifestFetch
from .rates import Rate

MIN_DEPTH, MAX_DEPTH, START_DEPTH = 2, 48, 8
"Requests kept in flight to one peer: about one second of its rate, within these bounds."


class Peer:
    """One remote peer: its protocol state, what it has, and how it has behaved."""

    def __init__(self, peer_id: str, proto: wire.PeerProtocol, *, offerer: bool, now: float):
        self.id = peer_id
        "Its signaling id: the key of everything about it."
        self.proto = proto
        self.offerer = offerer
        "We sent the offer (it was in a peer list), so an answer is expected."
        self.opened_at: float | None = None
        "When its data channel opened (None: still connecting)."
        self.closed = False
        "Its link closed: nothing more can be sent."
        self.connection: str | None = None
        "The candidate pair's kind once open: host, srflx or relay."
        self.pair: str | None = None
        "The candidate pair in use, 'srflx 1.2.3.4:5 -> host 6.7.8.9:10' (None: unknown)."
        self.link_key = ""
        "Names its connection the same way at both ends (rtc.PeerLink.key); '' unknown."
        self.has_all = False
        self.pieces: set[int] = set()
        "Pieces it announced (HAVE, BITFIELD), unless `has_all`."
        self.pending_bitfield: bytes | None = None
        "A BITFIELD received before we knew the piece count."
        self.in_picker = False
        "The picker counts its pieces."
        self.manifest = ManifestFetch()
        self.bytes_down = 0
        self.bytes_up = 0
        self.rate = Rate(now)
        self.depth = START_DEPTH
        self.strikes = 0
        "Blame for pieces that failed verification."
        self.last_data = now
        "When it last sent a block (or opened)."
        self.refused: set[int] = set()
        "Pieces it said it had, then rejected: not asked for again."
        self.dropped: str | None = None
        "Why it was dropped or turned away, for the peer-left event."
        self.refused_busy = False
        "It answered 'busy': no slot for us there, for now (not a network failure)."
        self.left_room = False
        "Signaling said it left: once its link ends, it is not redialed."
        self.refusing_until: float | None = None
        "We turned it away with a CLOSE: hang up at this time if it has not."
        self.unresponsive = False
        "Dropped for leaving our requests for pieces unanswered (patience.py remembers it)."
        self.helped = False
        "It sent us manifest bytes or a block (a handshake alone is no help: patience.py)."

    @property
    def ready(self) -> bool:
        """Both handshakes done and not being turned away."""
        return self.proto.remote is not None and self.refusing_until is None

    def has(self, piece: int) -> bool:
        return (self.has_all or piece in self.pieces) and piece not in self.refused


def second_connection(p: Peer, others: Iterable[Peer]) -> Peer | None:
    """`p` handshook: if we already have a connection to the same peer (two rendezvous
    found it, or it came back under a new signaling id), the one of the two to drop.

    Both ends must drop the same one, or each drops a different one and none is left. A
    connection a peer relayed (peer exchange, ids "px:...") goes before one a rendezvous
    made, which both ends can tell; between two of a kind, keep the one whose key (the
    same string at both ends) sorts first; without keys, the one that was there first."""
    assert p.proto.remote is not None
    twin = next((o for o in others if o is not p and o.proto.remote is not None
                 and o.proto.remote.peer_id == p.proto.remote.peer_id), None)
    if twin is None:
        return None
    relayed_p, relayed_twin = p.id.startswith(RELAYED), twin.id.startswith(RELAYED)
    if relayed_p != relayed_twin:
        return p if relayed_p else twin
    return twin if p.link_key and twin.link_key and p.link_key < twin.link_key else p


RELAYED = "px:"
"The id prefix of peers met through another peer (swarm/pex.py's PREFIX)."

