"""Peer exchange, sans-IO: connected peers tell each other whom else they are connected
to, and relay offers and answers between two of their peers, so a swarm keeps growing when
its rendezvous is gone (docs/PROTOCOL.md 3.5). Part of the swarm core; it shares its peers,
outbox and admission.

The policy, in the order things happen:
- Tell: a peer that negotiated `pex` hears the peer ids of our other ready peers that speak
  it, right after its handshake and then whenever that list changed, at most every
  PEX_INTERVAL. Ids only, never addresses: a listed peer is reached through us.
- Dial: only while we want something and have a free slot; only ids that a connected peer
  listed; never ourselves, a peer we are connected to or already dialing, a banned one, or
  one whose dials failed lately; at most MAX_DIALING at once, and none through a peer
  whose last MAX_FAILURES introductions all failed. The offer goes as a RELAY to the peer
  that listed the id (its "via"). Two peers that dial each other at once: the lower peer
  id keeps its offer, the other answers it.
- Relay (the middle peer): only between two ready peers that speak pex; the source is
  stamped with the sender's peer id from its handshake, so nobody can speak for another;
  each link's signals go within a token bucket (SIGNAL_BURST, then one per SIGNAL_REFILL),
  the excess dropped. A peer that sends more than twice that, or PEX more often than
  PEX_BURST then one per PEX_INTERVAL / 2, floods: it is dropped and banned.
- Be dialed: a relayed offer goes to admission like a rendezvous' offer, from the id
  "px:<source peer id, hex>", at most MAX_DIALING through one peer still opening at once;
  an answer counts only through the via our offer went to; the peer that handshakes on
  such a connection must have the id it was introduced by.
What a hostile peer can do with this: name ids (we offer only through it, so it reaches
no one else) and relay SDP of its choosing, at the rate above and to our free slots, as a
peer on a signaling server can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import wire
from ..tokenbucket import TokenBucket
from . import actions as act
from .admission import Admission, Drop
from .peer import RELAYED, Peer

PREFIX = RELAYED  # "px:"
"Ids of peers met through peer exchange: this prefix, then their peer id in hex."
MAX_DIALING = 4
"Connections we offer through peer exchange at once."
RETRY_AFTER = 60.0
"Seconds before a peer id whose dial failed is dialed again..."
MAX_FAILURES = 3
"...and failed dials before it is not dialed again at all."
VIA_MEMORY = 60.0
"Seconds a via is remembered for a peer that is gone (a late answer still finds its way)."


def key_of(peer_id: bytes) -> str:
    """The swarm's id of a peer met through peer exchange."""
    return PREFIX + peer_id.hex()


def id_of(key: str) -> bytes | None:
    """The peer id in a peer exchange id (None: not one)."""
    if not key.startswith(PREFIX):
        return None
    try:
        pid = bytes.fromhex(key[len(PREFIX):])
    except ValueError:
        return None
    return pid if len(pid) == 16 else None


class PeerExchange:
    """Whom we tell about whom, whom we dial, what we relay."""

    def __init__(self, own_id: bytes, peers: dict[str, Peer], out: act.Outbox,
                 admission: Admission, drop: Drop, wanting: Callable[[], bool], *,
                 extensions: frozenset[str] = wire.SUPPORTED_EXTENSIONS) -> None:
        self.own_id = own_id
        self.peers, self.out, self.admission, self.drop = peers, out, admission, drop
        self.wanting = wanting
        self.extensions = extensions & wire.SUPPORTED_EXTENSIONS
        "What we offer and accept (empty: we behave as a peer from before extensions)."
        self.heard: dict[str, tuple[bytes, ...]] = {}
        "The ids each peer listed in its last PEX."
        self.told: dict[str, tuple[float, frozenset[bytes]]] = {}
        "When we last sent each peer a PEX, and the ids in it."
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        "(peer, 'pex' | 'in' | 'out'): the rate budgets of each link."
        self.via: dict[str, tuple[str, float]] = {}
        "Peer exchange id -> (the peer relaying its signals, since when)."
        self.failures: dict[bytes, tuple[int, float]] = {}
        "Peer ids whose dials failed: (how many, when to try again)."
        self.via_failures: dict[str, int] = {}
        "Dials through each via that failed since one through it last got through."
        self.relayed = 0
        "Signals we relayed between two of our peers."

    @property
    def channel_protocol(self) -> str:
        """The protocol string our offers give their channel."""
        return wire.channel_protocol(self.extensions)

    def handlers(self) -> dict[type, Callable[[Peer, Any, float], None]]:
        return {wire.ExtensionsAccepted: self.on_extensions, wire.PexReceived: self.on_pex,
                wire.RelayRequested: self.on_relay, wire.RelayedSignal: self.on_relayed}

    # -- a peer's life ---------------------------------------------------------------------

    def opened(self, p: Peer, protocol: str) -> None:
        """`p`'s channel opened; our handshake is queued. Offering, our channel listed our
        extensions (`protocol` is that string); answering, say which of the offerer's
        extensions (its `protocol`) we speak."""
        if p.offerer:
            offered = wire.offered_extensions(protocol)  # what our channel really listed
            if offered and self.extensions:
                p.proto.offer_extensions(offered & self.extensions)
        else:
            p.proto.answer_extensions(protocol if self.extensions else None)
            self.out.send(p, p.proto.extensions_message())

    def handshook(self, p: Peer, now: float) -> None:
        """`p` handshook. A peer met through peer exchange must be the one introduced:
        else it broke the protocol (the core drops and bans it)."""
        assert p.proto.remote is not None
        pid = id_of(p.id)
        if pid is not None and p.proto.remote.peer_id != pid:
            raise wire.ProtocolError("not the peer it was introduced as")
        if pid is not None:
            self.failures.pop(pid, None)
            self.via_failures.pop(self.via.get(p.id, ("",))[0], None)
        self.tell(p, now)

    def forget(self, p: Peer, reason: str | None, now: float) -> None:
        """`p` was dropped (`reason`: not on purpose)."""
        self.heard.pop(p.id, None)
        self.told.pop(p.id, None)
        self.via_failures.pop(p.id, None)
        for k in ("pex", "in", "out"):
            self.buckets.pop((p.id, k), None)
        pid = id_of(p.id)
        if pid is not None and p.offerer and p.proto.remote is None and reason:
            n = self.failures.get(pid, (0, 0.0))[0] + 1
            self.failures[pid] = (n, now + RETRY_AFTER)
            via = self.via.get(p.id, ("",))[0]
            if via in self.peers:  # it listed a peer we could not reach through it
                self.via_failures[via] = self.via_failures.get(via, 0) + 1

    # -- telling ---------------------------------------------------------------------------

    def tell(self, p: Peer, now: float) -> None:
        """Send `p` our list if it changed and the interval allows."""
        if not p.proto.speaks_pex or p.refusing_until is not None:
            return
        at, last = self.told.get(p.id, (None, frozenset()))
        if at is not None and now < at + wire.PEX_INTERVAL:
            return  # before building the list: this runs for every peer at every tick
        ids = frozenset(self._listable(p)[: wire.PEX_MAX_PEERS])
        if ids == last:
            return
        self.told[p.id] = (now, ids)
        self.out.send(p, p.proto.send_pex(sorted(ids)))

    def _listable(self, to: Peer) -> list[bytes]:
        return [q.proto.remote.peer_id for q in self.peers.values()
                if q is not to and q.proto.speaks_pex and q.ready and q.proto.remote]

    # -- incoming --------------------------------------------------------------------------

    def on_extensions(self, p: Peer, e: wire.ExtensionsAccepted, now: float) -> None:
        self.tell(p, now)  # the offerer learns here that the answerer speaks pex

    def on_pex(self, p: Peer, e: wire.PexReceived, now: float) -> None:
        if not self._bucket(p, "pex", wire.PEX_BURST, wire.PEX_INTERVAL / 2, now):
            raise wire.ProtocolError("peer exchange flood (PEX too often)")
        self.heard[p.id] = e.peers
        self.dial(now)

    def on_relay(self, p: Peer, e: wire.RelayRequested, now: float) -> None:
        """We are the middle: forward `p`'s signal to the peer it names, if it is ours."""
        self._check_in(p, now)
        q = self._ready(e.target)
        if q is None or q is p or not q.proto.speaks_pex or not self._take_out(q, now):
            return  # gone meanwhile, or over its budget: the dial times out
        assert p.proto.remote is not None
        self.relayed += 1
        self.out.send(q, q.proto.send_relayed(p.proto.remote.peer_id, e.kind, e.payload))

    def on_relayed(self, p: Peer, e: wire.RelayedSignal, now: float) -> None:
        """`p` relays a signal from `e.source`: hand it to the swarm as a rendezvous'."""
        self._check_in(p, now)
        src = e.source
        if src == self.own_id or src in self.admission.banned_ids:
            return
        key = key_of(src)
        if e.kind == wire.Signal.OFFER:
            mine = self.peers.get(key)
            if self._ready(src) is not None or (
                    mine is not None and mine.offerer and mine.opened_at is None
                    and self.own_id < src):
                return  # connected already, or both dialed: the lower id's offer stands
            if self._answering_through(p.id) >= MAX_DIALING:
                return  # made-up offers would hold our slots until each timed out
            self.via[key] = (p.id, now)
            self.out.push(act.Relay("offer", key, {"offer": {"type": "offer",
                                                               "sdp": e.payload}}))
        elif self.via.get(key, ("",))[0] == p.id:  # only through the via we offered through
            data = ({"busy": e.payload} if e.kind == wire.Signal.BUSY
                    else {"answer": {"type": "answer", "sdp": e.payload}})
            self.out.push(act.Relay("answer", key, data))

    def _check_in(self, p: Peer, now: float) -> None:
        if not self._bucket(p, "in", 2 * wire.SIGNAL_BURST, wire.SIGNAL_REFILL / 2, now):
            raise wire.ProtocolError("signal flood (RELAY / RELAYED too often)")

    # -- outgoing signals (the adapter's `PexMeeting.send`) --------------------------------

    def send_signal(self, kind: str, key: str, data: dict, now: float) -> bool:
        """Relay our offer, answer or busy for `key` through its via. False when it cannot
        go (the via is gone, the link's budget spent, a trickled candidate: our CLI puts
        every candidate in its SDP); the connection then times out."""
        pid, entry = id_of(key), self.via.get(key)
        v = self.peers.get(entry[0]) if entry else None
        if pid is None or v is None or not v.proto.speaks_pex:
            return False
        if kind == "answer" and isinstance(data.get("busy"), str):
            sk = wire.Signal.BUSY
            text = data["busy"].encode()[: wire.MAX_REASON].decode("utf-8", "ignore")
        elif kind in ("offer", "answer") and isinstance(data.get(kind), dict):
            sk = wire.Signal.OFFER if kind == "offer" else wire.Signal.ANSWER
            text = data[kind].get("sdp")
        else:
            return False
        if (not isinstance(text, str) or len(text.encode("utf-8", "replace")) > wire.SIGNAL_MAX
                or not self._take_out(v, now)):
            return False
        self.out.send(v, v.proto.send_relay(pid, sk, text))
        return True

    # -- dialing ---------------------------------------------------------------------------

    def dial(self, now: float) -> None:
        """Offer connections to listed peers while we want more (see the module doc)."""
        adm = self.admission
        if not (self.extensions and self.wanting() and adm.accepting):
            return
        dialing = sum(1 for k, p in self.peers.items()
                      if k.startswith(PREFIX) and p.offerer and p.opened_at is None)
        connected = {p.proto.remote.peer_id for p in self.peers.values() if p.proto.remote}
        for via, ids in list(self.heard.items()):
            v = self.peers.get(via)
            if v is None or not v.ready or self.via_failures.get(via, 0) >= MAX_FAILURES:
                continue  # gone, or the peers it names cannot be reached through it
            for pid in ids:
                if dialing >= MAX_DIALING or adm.slots.full:
                    return
                key = key_of(pid)
                n, at = self.failures.get(pid, (0, 0.0))
                if (pid == self.own_id or pid in connected or pid in adm.banned_ids
                        or key in self.peers or key in adm.banned or n >= MAX_FAILURES
                        or (n and now < at)):
                    continue
                self.via[key] = (via, now)
                adm.peer_listed(key, now)
                dialing += key in self.peers

    def tick(self, now: float) -> None:
        """Housekeeping: pending lists go out, dials whose via no longer lists their peer
        end, and we dial again if we want more."""
        for p in list(self.peers.values()):
            self.tell(p, now)
        listed = {pid for via, ids in self.heard.items()
                  if (v := self.peers.get(via)) is not None and v.ready for pid in ids}
        for key, (_, since) in list(self.via.items()):
            p = self.peers.get(key)
            if id_of(key) in listed:
                continue
            if p is None or p.offerer:
                # Nobody lists it now: a dial or a busy retry through it cannot complete.
                self.admission.signaling_left(key, now)
            if p is None and now - since > VIA_MEMORY:
                del self.via[key]
        self.dial(now)

    # -- helpers ---------------------------------------------------------------------------

    def _ready(self, peer_id: bytes) -> Peer | None:
        for q in self.peers.values():
            if q.ready and q.proto.remote is not None and q.proto.remote.peer_id == peer_id:
                return q
        return None

    def _answering_through(self, via: str) -> int:
        """Connections we answered, offered through `via`, not open yet."""
        return sum(1 for k, q in self.peers.items() if k.startswith(PREFIX) and not q.offerer
                   and q.opened_at is None and self.via.get(k, ("",))[0] == via)

    def _bucket(self, p: Peer, kind: str, burst: int, every: float, now: float) -> bool:
        b = self.buckets.get((p.id, kind))
        if b is None:
            b = self.buckets[(p.id, kind)] = TokenBucket(1.0 / every, float(burst), stamp=now)
        return b.take(now) == 0.0

    def _take_out(self, q: Peer, now: float) -> bool:
        return self._bucket(q, "out", wire.SIGNAL_BURST, wire.SIGNAL_REFILL, now)
