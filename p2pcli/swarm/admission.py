"""Which peers we talk to (sans-IO): peer lists, offers, "busy" and its retries, the
connection slots at open, redials after a lost connection, and bans. Part of the swarm
core; it shares its peers and outbox.

A connection that ends without a CLOSE, while neither side decided to end it (the peer's
Wi-Fi blipped, its SCTP association gave up), is not a verdict on the peer: if
we still want pieces and it is still in the signaling room, it is offered a connection
again on the "busy" back-off (`retry_delay`), at most `MAX_REDIALS` times in a row (a
connection that brought us data starts the count again). Only one side redials, so two
downloaders never offer to each other at once (each would drop its own offer to answer
the other's): the side that offered the lost connection, or the side that wants pieces
from a peer that has them all (that peer wants nothing and never redials). A peer that
sent CLOSE, was banned or left the room is never redialed.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import events as ev
from ..slots import Refuse, Slots, retry_delay
from . import actions as act
from .peer import Peer

MAX_REDIALS = 4
"Offers in a row to a peer whose connections end without a CLOSE and bring us nothing."

Drop = Callable[..., None]  # (peer, reason, now, *, ban=False, warn=False)
NewPeer = Callable[[str, bool, float], Peer]  # (id, we offer, now)


class Admission:
    """Decides who gets a connection, and when to try again."""

    def __init__(self, peers: dict[str, Peer], out: act.Outbox, slots: Slots, drop: Drop,
                 new_peer: NewPeer) -> None:
        self.peers = peers
        self.out = out
        self.slots = slots
        self.drop = drop
        self.new_peer = new_peer
        self.accepting = True
        "False once a finished download stops taking new peers."
        self.busy_peers: dict[str, tuple[int, float]] = {}
        "Peers that said busy: (attempts, when to offer again)."
        self.banned: set[str] = set()
        self.banned_ids: set[bytes] = set()
        self.connect_failures = 0
        "Peers whose WebRTC connection never opened."
        self.lost_peers: dict[str, float] = {}
        "Peers whose connection ended without a CLOSE: when to offer again."
        self.redials: dict[str, int] = {}
        "Offers made since a lost connection to the peer last brought us data."

    def unopened(self) -> int:
        """Connections that never opened, counting those still trying (not busy retries)."""
        return self.connect_failures + sum(
            p.opened_at is None and p.id not in self.busy_peers for p in self.peers.values()
        )

    def peer_listed(self, peer: str, now: float) -> None:
        """A signaling peer list named `peer`: connect to it if there is room."""
        if self._admit(peer, now):
            self.out.push(act.Connect(peer))

    def answer_adopted(self, peer: str, now: float) -> bool:
        """`peer` answered an offer we made in advance (a tracker carried it to whoever it
        chose): True to keep that connection, as if we had offered to `peer` by name."""
        return self._admit(peer, now)

    def _admit(self, peer: str, now: float) -> bool:
        """Take `peer` on as one we offer to, if it is new, not banned and there is room."""
        if (peer in self.peers or peer in self.banned or not self.accepting
                or self.slots.full):
            return False
        self._add(peer, offerer=True, now=now)
        return True

    def offer_received(self, peer: str, now: float) -> bool:
        """`peer` offers a connection: True to answer it. An idle peer may give its slot
        up; with no room the newcomer hears "busy" and tries again later."""
        if peer in self.banned:
            return False
        old = self.peers.get(peer)
        if old is not None:
            self.drop(old, None, now)  # the peer restarted its side
        verdict = self.slots.offer(peer, now)
        if isinstance(verdict, Refuse):
            self.out.push(act.SignalBusy(peer, verdict.reason))
            self.out.emit(ev.PeerRefused(peer=peer, reason=verdict.reason))
            return False
        if verdict.evict is not None:
            self.drop_idle(verdict.evict, "gave its slot to a waiting peer", now)
        self._add(peer, offerer=False, now=now)
        return True

    def expects_answer(self, peer: str) -> bool:
        p = self.peers.get(peer)
        return p is not None and p.offerer and p.opened_at is None

    def answered_busy(self, peer: str, now: float) -> None:
        """Our offer was answered "busy": offer again later; not a network failure."""
        p = self.peers.get(peer)
        if p is not None and p.offerer:
            self.refused_busy(p, now)
            self.drop(p, None, now)

    def signaling_left(self, peer: str, now: float) -> None:
        self.busy_peers.pop(peer, None)
        self.forget_redials(peer)
        p = self.peers.get(peer)
        if p is not None:
            p.left_room = True  # if its link ends now, it is gone for good
        # Once connected, WebRTC no longer needs the server: keep the link.
        if p is not None and p.opened_at is None:
            self.drop(p, None, now)

    def connect_failed(self, peer: str, reason: str | None, now: float) -> None:
        """The connection did not open (`reason` None: it was closed on purpose)."""
        p = self.peers.get(peer)
        if p is None:
            return
        if not p.refused_busy:
            self.connect_failures += 1
        self.drop(p, reason, now)

    def opened(self, p: Peer, address: str | None, now: float, grace: float) -> bool:
        """`p`'s channel opened from `address`: False if it is turned away (with a CLOSE
        it has `grace` seconds to read: closing at once would drop what is queued)."""
        verdict = self.slots.opened(p.id, address, now)
        if isinstance(verdict, Refuse):
            p.dropped = verdict.reason
            p.refusing_until = now + grace
            self.out.send(p, p.proto.send_close(verdict.reason))
            self.out.emit(ev.PeerRefused(peer=p.id, reason=verdict.reason))
            return False
        if verdict.evict is not None:
            self.drop_idle(verdict.evict, "gave its slot to another peer from its address", now)
        return True

    def connection_lost(self, p: Peer, now: float, *, wanting: bool,
                        has_everything: bool) -> None:
        """`p`'s open connection ended without a CLOSE and we did not end it. `wanting`: we
        still want pieces (or the manifest); `has_everything`: `p` announced every piece."""
        if p.bytes_down:
            self.redials.pop(p.id, None)  # it worked for a while: a new blip, a new count
        if (not wanting or p.left_room or p.id in self.banned
                or not (p.offerer or has_everything)
                or self.redials.get(p.id, 0) >= MAX_REDIALS):
            return
        self.lost_peers[p.id] = now + retry_delay(self.redials.get(p.id, 0) + 1)

    def reconnected(self, peer: str) -> None:
        """`peer` handshook: nothing to redial (the count stays, for its next loss)."""
        self.busy_peers.pop(peer, None)  # it had room after all
        self.lost_peers.pop(peer, None)

    def forget_redials(self, peer: str) -> None:
        """Never redial `peer` (it left the room, sent CLOSE, or was banned)."""
        self.lost_peers.pop(peer, None)
        self.redials.pop(peer, None)

    def refused_busy(self, p: Peer, now: float) -> None:
        """`p` has no slot for us now: offer again later."""
        p.refused_busy = True
        attempts = self.busy_peers.get(p.id, (0, 0.0))[0] + 1
        self.busy_peers[p.id] = (attempts, now + retry_delay(attempts))

    def ban(self, p: Peer) -> None:
        """`p` misbehaved: never talk to it again, under this id or its peer id."""
        self.banned.add(p.id)
        self.forget_redials(p.id)
        if p.proto.remote:
            self.banned_ids.add(p.proto.remote.peer_id)

    def drop_idle(self, peer: str, why: str, now: float) -> None:
        p = self.peers.get(peer)
        if p is not None:
            self.drop(p, f"idle for {self.slots.idle_for(peer, now):.0f}s, {why}", now)

    def handle_timer(self, now: float, *, wanting: bool = True) -> None:
        """Free a slot from an idle peer when they are all taken; retry busy peers; redial
        lost ones while we still want pieces (`wanting`)."""
        idle = self.slots.to_drop(now)
        if idle is not None:
            self.drop_idle(idle, "while every slot was taken", now)
        for sig, (attempts, at) in list(self.busy_peers.items()):
            if now >= at and sig not in self.peers:
                self.busy_peers[sig] = (attempts, now + retry_delay(attempts + 1))
                self.peer_listed(sig, now)
        for sig, at in list(self.lost_peers.items()):
            if not wanting:
                del self.lost_peers[sig]
            elif now >= at and sig not in self.peers:
                made = self.redials[sig] = self.redials.get(sig, 0) + 1
                if made < MAX_REDIALS:  # the next try, should this one not get through
                    self.lost_peers[sig] = now + retry_delay(made + 1)
                else:
                    del self.lost_peers[sig]
                self.peer_listed(sig, now)

    def _add(self, peer: str, *, offerer: bool, now: float) -> None:
        self.peers[peer] = self.new_peer(peer, offerer, now)
        self.slots.add(peer, now)
