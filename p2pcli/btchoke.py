"""Whom a seeding BitTorrent session unchokes (sans-IO): BitTorrent's classic choker, as a
seeder (docs/PROTOCOL.md §5.6).

- Only interested peers hold a slot. There are `regular` slots (4) and one optimistic slot.
- While slots are free, an interested peer is unchoked at once; a peer that leaves or
  loses interest frees its slot at once, for the interested peer that has waited longest.
- Every `RECHOOSE` seconds (10) the regular slots go to the interested peers we sent the
  most to over the last period: the peers that take data fastest keep being served (a
  seeder cannot reward uploads, so it rewards throughput, as classic seeding chokers do).
  On a tie (peers that were choked took nothing, so they cannot show a rate) a choked peer
  goes before an unchoked one, and then whoever has waited longest.
- Every `OPTIMISTIC` seconds (30) the optimistic slot moves to the choked interested peer
  that has waited longest: round robin, so every waiting peer gets its turn and can then
  show a rate that wins a regular slot.
- While someone waits, an unchoked peer that has taken nothing for `IDLE` seconds (3)
  gives its slot up at once (checked at each `on_timer`): a peer that vanished without a
  goodbye (a killed process: its connection is noticed dead only much later) or stopped
  asking must not keep a newcomer waiting for the next re-ranking.

Time comes in as `now`; decisions come out as `Rechoke` (who to unchoke, who to choke).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REGULAR = 4  # slots kept for the fastest takers
RECHOOSE = 10.0  # seconds between re-rankings of the regular slots
OPTIMISTIC = 30.0  # seconds between moves of the optimistic slot
IDLE = 3.0  # seconds an unchoked peer may take nothing while someone waits


@dataclass(frozen=True)
class Rechoke:
    """Choke state changes to send."""

    unchoke: tuple[str, ...] = ()
    "Peers to send UNCHOKE."
    choke: tuple[str, ...] = ()
    "Peers to send CHOKE (their queued requests are dropped, as BEP 3 says)."

    def __bool__(self) -> bool:
        return bool(self.unchoke or self.choke)


@dataclass
class _Peer:
    since: float
    "When it was last choked or unchoked (or connected): its place in the waiting line."
    interested: bool = False
    unchoked: bool = False
    sent: int = 0
    "Bytes sent to it this period."
    taken: int = 0
    "Bytes sent to it since it connected."
    checked: int = 0
    "`taken` when `on_timer` last looked."
    idle_since: float = 0.0
    "Since when it has taken nothing (while unchoked)."


@dataclass
class Choker:
    regular: int = REGULAR
    "Regular slots (the optimistic one comes on top)."
    rechoose: float = RECHOOSE
    optimistic_every: float = OPTIMISTIC
    idle: float = IDLE
    peers: dict[str, _Peer] = field(default_factory=dict)
    optimistic: str | None = None
    "Who holds the optimistic slot."
    _next_rechoose: float | None = None
    _next_optimistic: float | None = None

    # -- what happened --

    def connected(self, peer: str, now: float) -> None:
        self.peers[peer] = _Peer(since=now)
        if self._next_rechoose is None:
            self._next_rechoose = now + self.rechoose
            self._next_optimistic = now + self.optimistic_every

    def disconnected(self, peer: str, now: float) -> Rechoke:
        before = self._unchoked()
        if self.peers.pop(peer, None) is None:
            return Rechoke()
        if self.optimistic == peer:
            self.optimistic = None
        self._fill(now)
        return self._diff(before - {peer})

    def interested(self, peer: str, now: float) -> Rechoke:
        p = self.peers.get(peer)
        if p is None or p.interested:
            return Rechoke()
        before = self._unchoked()
        p.interested = True
        self._fill(now)
        return self._diff(before)

    def not_interested(self, peer: str, now: float) -> Rechoke:
        p = self.peers.get(peer)
        if p is None or not p.interested:
            return Rechoke()
        before = self._unchoked()
        p.interested = False
        if p.unchoked:  # its slot goes to someone who wants it
            self._set(peer, False, now)
            self._fill(now)
        return self._diff(before)

    def sent(self, peer: str, n: int) -> None:
        p = self.peers.get(peer)
        if p is not None:
            p.sent += n
            p.taken += n

    def is_unchoked(self, peer: str) -> bool:
        p = self.peers.get(peer)
        return p is not None and p.unchoked

    # -- time --

    def timer(self) -> float | None:
        """When `on_timer` has work next (None: nobody has connected yet)."""
        if self._next_rechoose is None or self._next_optimistic is None:
            return None
        return min(self._next_rechoose, self._next_optimistic)

    def on_timer(self, now: float) -> Rechoke:
        if self._next_rechoose is None or self._next_optimistic is None:
            return Rechoke()
        before = self._unchoked()
        self._drop_idle(now)
        if now >= self._next_optimistic:
            self._next_optimistic = now + self.optimistic_every
            self._rotate_optimistic(now)
        if now >= self._next_rechoose:
            self._next_rechoose = now + self.rechoose
            self._rerank(now)
        return self._diff(before)

    # -- decisions --

    def _unchoked(self) -> set[str]:
        return {k for k, p in self.peers.items() if p.unchoked}

    def _diff(self, before: set[str]) -> Rechoke:
        """The messages that take peers from `before` to now. A peer choked and unchoked
        again within one step gets none: for it nothing changed, its requests stand."""
        after = self._unchoked()
        return Rechoke(unchoke=tuple(k for k in self.peers if k in after - before),
                       choke=tuple(sorted(before - after)))

    def _waiting(self) -> list[str]:
        """Choked interested peers, longest-waiting first."""
        return sorted((k for k, p in self.peers.items() if p.interested and not p.unchoked),
                      key=lambda k: self.peers[k].since)

    def _regulars(self) -> list[str]:
        return [k for k, p in self.peers.items() if p.unchoked and k != self.optimistic]

    def _set(self, peer: str, unchoked: bool, now: float) -> None:
        p = self.peers[peer]
        if p.unchoked != unchoked:
            p.since = now  # a choked peer goes to the back of the line
            p.idle_since = now
            p.unchoked = unchoked
        if not unchoked and self.optimistic == peer:
            self.optimistic = None

    def _fill(self, now: float) -> None:
        """Free slots to the longest-waiting interested peers; nobody is moved."""
        for peer in self._waiting():
            if len(self._regulars()) < self.regular:
                self._set(peer, True, now)
            elif self.optimistic is None:
                self._set(peer, True, now)
                self.optimistic = peer
            else:
                break

    def _drop_idle(self, now: float) -> None:
        """Slots of peers idle for `idle` seconds to those waiting (if anyone is)."""
        for p in self.peers.values():
            if p.taken != p.checked:
                p.checked, p.idle_since = p.taken, now
        if not self._waiting():
            return
        for k, p in self.peers.items():
            if p.unchoked and now - p.idle_since >= self.idle:
                self._set(k, False, now)
        self._fill(now)

    def _rotate_optimistic(self, now: float) -> None:
        waiting = self._waiting()
        if not waiting:
            return  # nobody to give the turn to: the holder keeps it
        if self.optimistic is not None:
            self._set(self.optimistic, False, now)
        self._set(waiting[0], True, now)
        self.optimistic = waiting[0]

    def _rerank(self, now: float) -> None:
        """The regular slots to the interested peers sent the most this period (the
        optimistic holder keeps its own slot); on a tie a choked peer before an unchoked one
        (which took nothing more), then the longest in its state."""
        candidates = [k for k, p in self.peers.items() if p.interested and k != self.optimistic]
        candidates.sort(key=lambda k: (-self.peers[k].sent, self.peers[k].unchoked,
                                       self.peers[k].since))
        keep = set(candidates[: self.regular])
        for k in self._regulars():
            if k not in keep:
                self._set(k, False, now)
        for k in keep:
            self._set(k, True, now)
        for p in self.peers.values():
            p.sent = 0
        self._fill(now)
