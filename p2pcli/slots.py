"""Who keeps a connection slot (sans-IO): idle peers make room, one address cannot fill them.

A swarm keeps at most `max_peers` connections, and a slot is what an idle peer can hoard:
it connects, says hello, and never asks for or offers anything. The policy:

- A peer is *useful* while it asks us for data, sends us data, or has our requests in
  flight (`useful(peer, now)`); connecting counts as being useful, so everyone gets
  `idle_after` seconds to start.
- Someone is *waiting* when an offer came while every slot was taken (`offer` refused it:
  a knock). The newcomer is told it is busy and tries again; meanwhile a peer useless for
  `idle_after` seconds gives its slot up, at once if the offer finds one, else at the next
  tick (`to_drop`), so the retry gets in.
- With nobody knocking, a full swarm still drops a peer useless for `reserve_after`
  seconds: a slot's worth of room stays free for the next newcomer.
- A peer dropped for idling gets no slot back while the swarm is full, for `COOLDOWN`
  seconds: an idle peer that rejoins at once cannot take turns with the others forever.
- At most `per_address` connections come from one remote address, the address of the
  ICE candidate pair in use (`address_key`). A relayed peer is keyed by its TURN
  allocation, not by the relay's address, since everyone behind one TURN server shares
  it. A newcomer over its address's cap takes the slot of that address's longest-useless
  peer if it is past `idle_after`, else it is refused.

Refusals carry a reason starting with `BUSY`, which the other side reads as "try again
later" (`retry_delay`), not as an error about the content or the network.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_AFTER = 5.0  # seconds useless before a peer gives its slot to someone waiting
RESERVE_AFTER = 30.0  # seconds useless before a full swarm frees a slot unasked
KNOCK_MEMORY = 10.0  # seconds a refused newcomer counts as waiting (it retries sooner)
COOLDOWN = 60.0  # seconds a peer dropped for idling is refused while the swarm is full
BUSY = "busy: "  # the prefix of every refusal


def default_per_address(max_peers: int) -> int:
    """A quarter of the slots, at least 2: one address (one machine, or one NAT) can never
    take them all, and a few peers on one host (or behind one NAT) still connect."""
    return max(2, max_peers // 4)


def address_key(candidate: tuple[str, str, int] | None) -> str | None:
    """The address a connection counts against, from the remote candidate in use
    (type, host, port); None while no pair is chosen."""
    if candidate is None:
        return None
    kind, host, port = candidate
    if kind == "relay":
        # The host is the TURN server's, shared by all its users; the port is this
        # peer's own allocation.
        return f"relay {host}:{port}"
    return host


def retry_delay(attempt: int) -> float:
    """Seconds before offering again to a peer that said it was busy, `attempt` >= 1:
    soon at first (a slot frees within `IDLE_AFTER` if someone idles), then backing off."""
    return min(30.0, 2.0 * 2 ** max(0, attempt - 4))


@dataclass(frozen=True)
class Admit:
    """The newcomer may have a slot."""

    evict: str | None = None
    "A peer to drop first to make room for it (None: there is room)."


@dataclass(frozen=True)
class Refuse:
    """No slot for the newcomer now."""

    reason: str
    "What to tell it; starts with `BUSY`."


@dataclass
class _Peer:
    since: float
    "When it was last useful (or connected)."
    open: bool = False
    "The connection is open (only open peers can be judged idle)."
    address: str | None = None
    "Remote address key, once the connection is open and a pair is known."


class Slots:
    """The connection slots of one swarm, keyed by the peers' signaling ids."""

    def __init__(
        self,
        max_peers: int,
        per_address: int | None = None,
        *,
        idle_after: float = IDLE_AFTER,
        reserve_after: float = RESERVE_AFTER,
    ) -> None:
        self.max_peers = max_peers
        self.per_address = per_address or default_per_address(max_peers)
        self.idle_after = idle_after
        self.reserve_after = reserve_after
        self._peers: dict[str, _Peer] = {}
        self._knocked: float | None = None  # when a newcomer was last refused for room
        self._cooling: dict[str, float] = {}  # dropped for idling -> until when

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    @property
    def full(self) -> bool:
        return len(self._peers) >= self.max_peers

    # -- newcomers

    def offer(self, peer: str, now: float) -> Admit | Refuse:
        """`peer` offers a connection: room, room after evicting an idle peer, or busy."""
        if not self.full:
            return Admit()
        busy = Refuse(f"{BUSY}all {self.max_peers} connection slots are taken")
        if self._cooling_down(peer, now):
            return busy
        victim = self._evict(now, self.idle_after)
        if victim is not None:
            return Admit(victim)
        self._knocked = now
        return busy

    def add(self, peer: str, now: float) -> None:
        """A connection is being set up (by us or by them); it holds a slot from now on."""
        self._peers[peer] = _Peer(now)

    def opened(self, peer: str, address: str | None, now: float) -> Admit | Refuse:
        """The connection is open and comes from `address`: within that address's cap?"""
        me = self._peers.get(peer)
        if me is None:
            return Refuse(f"{BUSY}no slot")
        me.open = True
        me.address = address
        if address is None:
            return Admit()
        same = [p for p, s in self._peers.items() if p != peer and s.address == address]
        if len(same) < self.per_address:
            return Admit()
        victim = None if self._cooling_down(peer, now) else self._evict(now, self.idle_after, same)
        if victim is not None:
            return Admit(victim)
        return Refuse(
            f"{BUSY}too many connections from {address} (at most {self.per_address} per address)"
        )

    # -- the peers we have

    def useful(self, peer: str, now: float) -> None:
        """It asked for data, sent data, or serves our requests: it keeps its slot."""
        s = self._peers.get(peer)
        if s is not None:
            s.since = max(s.since, now)

    def remove(self, peer: str) -> None:
        self._peers.pop(peer, None)

    def to_drop(self, now: float) -> str | None:
        """The peer to drop now to keep room in a full swarm, if any."""
        if not self.full:
            return None
        waiting = self._knocked is not None and now - self._knocked <= KNOCK_MEMORY
        return self._evict(now, self.idle_after if waiting else self.reserve_after)

    def idle_for(self, peer: str, now: float) -> float:
        """Seconds since `peer` was last useful."""
        s = self._peers.get(peer)
        return 0.0 if s is None else now - s.since

    def _evict(self, now: float, bound: float, among: list[str] | None = None) -> str | None:
        """The open peer useless the longest, if that is at least `bound` seconds; it is
        to be dropped, and cools down."""
        names = self._peers if among is None else among
        open_ = [(self._peers[p].since, p) for p in names if self._peers[p].open]
        if not open_:
            return None
        since, peer = min(open_)
        if now - since < bound:
            return None
        # Forget the cooled-down ones first: the table stays as small as the churn.
        self._cooling = {p: t for p, t in self._cooling.items() if t > now}
        self._cooling[peer] = now + COOLDOWN
        return peer

    def _cooling_down(self, peer: str, now: float) -> bool:
        return self._cooling.get(peer, now) > now
