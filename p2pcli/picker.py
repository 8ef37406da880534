"""The piece picker and request scheduler (sans-IO): which block to ask whom for, and when.

Fed by state (who has what, what arrived, what the clock says), never by sockets, so every
decision is a plain function call in tests. Policies, as in libtorrent:

- *rarest first* for file downloads, so rare pieces spread before their holders leave;
- *sequential* with a read-ahead window for pipes and streams, so output can be written in
  order and memory stays bounded (`priority` lets a stream put the pieces under a player's
  open ranges first);
- partially requested pieces are finished before new ones are started;
- requests that time out are handed to other peers (a stalled peer stops costing time);
- *end-game*: when every missing block is already requested, idle peers ask again for
  blocks in flight elsewhere; the first copy wins and the others are cancelled.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

REQUEST_TIMEOUT = 8.0
"Seconds before an unanswered block request goes to another peer (SwarmConfig can change it)."

Block = tuple[int, int, int]  # piece, offset, length
Peer = Hashable


@dataclass
class _Piece:
    length: int
    block_size: int
    in_flight: list[set[Peer]] = field(init=False)
    received: bytearray = field(init=False)
    n_received: int = 0

    def __post_init__(self) -> None:
        n = max(1, -(-self.length // self.block_size))
        self.in_flight = [set() for _ in range(n)]
        self.received = bytearray(n)

    @property
    def n_blocks(self) -> int:
        return len(self.received)


class Picker:
    """Decides requests for one download.

    `block_size` is the largest block asked for in one request; a peer's own limit may be
    lower (`pick(max_block=...)` splits nothing: blocks are fixed per download, so the
    swarm uses the smallest limit of the peers it knows).
    """

    def __init__(
        self,
        piece_lengths: list[int],
        block_size: int,
        *,
        sequential: bool = False,
        window: int | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        endgame_copies: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        self.piece_lengths = piece_lengths
        self.count = len(piece_lengths)
        self.block_size = block_size
        self.sequential = sequential
        self.window = window
        self.request_timeout = request_timeout
        self.endgame_copies = endgame_copies
        self.rng = rng or random.Random()
        self.have = bytearray(self.count)  # 1 = verified and stored
        self.n_have = 0
        self.skipped = bytearray(self.count)  # 1 = not wanted (`--select`): never picked
        self.n_skipped = 0
        self.availability = [0] * self.count
        self._all_peers: set[Peer] = set()  # peers that have everything (not in availability)
        self._active: dict[int, _Piece] = {}  # pieces with requests in flight or blocks received
        self._peer_blocks: dict[Peer, dict[tuple[int, int], float]] = {}
        self.cursor = 0  # sequential: the first piece not yet consumed downstream
        self.priority: list[int] = []  # pieces wanted first, in order (streaming)
        self.strict_priority = False  # while priority pieces are missing, pick nothing else
        self._order: list[int] | None = None
        self._order_start = 0  # _order[:_order_start] are had or skipped

    # -- state from the swarm --------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.n_have + self.n_skipped == self.count

    @property
    def missing(self) -> int:
        """Pieces still wanted."""
        return self.count - self.n_have - self.n_skipped

    def wants(self, piece: int) -> bool:
        return not self.have[piece] and not self.skipped[piece]

    def skip(self, pieces: Iterable[int]) -> None:
        """Pieces this download does not want (files not selected): never requested, and
        not missing for `complete`."""
        for p in pieces:
            if not self.have[p] and not self.skipped[p]:
                self.skipped[p] = 1
                self.n_skipped += 1
        self._order = None

    def mark_have(self, piece: int) -> None:
        """A piece is verified and stored (including pieces found on disk at start)."""
        if not self.have[piece]:
            self.have[piece] = 1
            self.n_have += 1
            if self.skipped[piece]:
                self.skipped[piece] = 0
                self.n_skipped -= 1
        self._active.pop(piece, None)

    def add_peer(self, peer: Peer, pieces: Iterable[int] | None) -> None:
        """A peer announced its pieces (None: it has every piece)."""
        self._peer_blocks.setdefault(peer, {})
        if pieces is None:
            self._all_peers.add(peer)
        else:
            for p in pieces:
                self.availability[p] += 1
            self._order = None

    def peer_has(self, piece: int) -> None:
        self.availability[piece] += 1
        self._order = None

    def remove_peer(self, peer: Peer, pieces: Iterable[int] | None) -> list[Block]:
        """Forget a peer; returns the blocks it had in flight (now free for others)."""
        if peer in self._all_peers:
            self._all_peers.discard(peer)
        elif pieces is not None:
            for p in pieces:
                self.availability[p] -= 1
            self._order = None
        freed = []
        for (piece, b), _t in self._peer_blocks.pop(peer, {}).items():
            st = self._active.get(piece)
            if st is not None:
                st.in_flight[b].discard(peer)
                freed.append(self._block(piece, b))
        return freed

    def set_cursor(self, piece: int) -> None:
        self.cursor = piece

    def set_priority(self, pieces: list[int]) -> None:
        """Pieces to request before anything else, most urgent first (streaming)."""
        self.priority = pieces

    # -- decisions -------------------------------------------------------------------------

    def in_flight(self, peer: Peer) -> int:
        return len(self._peer_blocks.get(peer, ()))

    def pick(
        self, peer: Peer, has: Callable[[int], bool] | None, slots: int, now: float
    ) -> list[Block]:
        """Up to `slots` new blocks to request from `peer` (`has` None: it has all)."""
        if slots <= 0 or self.complete:
            return []
        mine = self._peer_blocks.setdefault(peer, {})
        out: list[Block] = []

        def take(piece: int, endgame: bool) -> bool:
            st = self._active.get(piece)
            if st is None:
                st = self._active[piece] = _Piece(self.piece_lengths[piece], self.block_size)
            for b in range(st.n_blocks):
                if st.received[b] or (piece, b) in mine:
                    continue
                flying = st.in_flight[b]
                if flying and (not endgame or len(flying) >= self.endgame_copies):
                    continue
                flying.add(peer)
                mine[(piece, b)] = now
                out.append(self._block(piece, b))
                if len(out) >= slots:
                    return True
            return False

        urgent = [p for p in self.priority if self.wants(p)]
        strict = bool(urgent and self.strict_priority)
        prioritized = set(urgent)
        for endgame in (False, True):
            if strict:
                # A player is waiting: spend no bandwidth elsewhere until its pieces are in.
                order: Iterable[int] = urgent
            else:
                # Pieces already started come first: finishing them frees memory sooner.
                # New pieces are looked at lazily: a pick usually wants one block, found
                # in the first few, and this runs for every block that arrives.
                order = chain(urgent, list(self._active), self._candidates())
            for piece in order:
                if not self.wants(piece) or not (has is None or has(piece)):
                    continue
                if piece not in prioritized and not self._in_window(piece):
                    continue
                if take(piece, endgame):
                    return out
            if out:
                break  # normal picks found: no duplicates yet
        return out

    def waiting_for_reader(self) -> bool:
        """A download with a read-ahead window (to a pipe, whose reader may be a paused
        player) that has every block the window allows, received if not yet verified:
        only the reader moving `cursor` lets it ask for more. A block still in flight
        does not count: the peer asked for it must answer to hold a timeout off."""
        if self.window is None or self.complete:
            return False
        active = self._active
        for p in range(self.cursor, min(self.count, self.cursor + self.window)):
            if not self.wants(p):
                continue
            st = active.get(p)
            if st is None or st.n_received < st.n_blocks:
                return False
        return True

    def _in_window(self, piece: int) -> bool:
        return self.window is None or piece < self.cursor + self.window

    def _candidates(self) -> Iterator[int]:
        """Wanted pieces not started yet, best first; lazy (pick stops when it is served)."""
        active = self._active
        have, skipped = self.have, self.skipped
        if self.sequential:
            end = self.count if self.window is None else min(self.count, self.cursor + self.window)
            return (p for p in range(self.cursor, end)
                    if not have[p] and not skipped[p] and p not in active)
        order = self._order
        if order is None:
            # Rarest first, ties broken at random so peers don't all start on the same piece.
            keys = {p: (self.availability[p], self.rng.random()) for p in range(self.count)}
            order = self._order = sorted(range(self.count), key=keys.__getitem__)
            self._order_start = 0
        # A piece that is had or skipped stays so: skip the run of them at the front once,
        # not on every pick (most of the order, late in a download).
        start = self._order_start
        while start < len(order) and (have[order[start]] or skipped[order[start]]):
            start += 1
        self._order_start = start
        return (p for p in islice(order, start, None)
                if not have[p] and not skipped[p] and p not in active)

    def _block(self, piece: int, b: int) -> Block:
        off = b * self.block_size
        return (piece, off, min(self.block_size, self.piece_lengths[piece] - off))

    # -- outcomes --------------------------------------------------------------------------

    def on_block(self, peer: Peer, block: Block) -> tuple[bool, list[tuple[Peer, Block]]]:
        """A block arrived from `peer`. Returns (piece now fully received, duplicates to cancel)."""
        piece, offset, _length = block
        b = offset // self.block_size
        self._peer_blocks.get(peer, {}).pop((piece, b), None)
        st = self._active.get(piece)
        if st is None or st.received[b]:
            return False, []  # duplicate (end-game) or piece already done
        st.received[b] = 1
        st.n_received += 1
        cancels = []
        for other in st.in_flight[b]:
            if other != peer:
                self._peer_blocks.get(other, {}).pop((piece, b), None)
                cancels.append((other, self._block(piece, b)))
        st.in_flight[b].clear()
        return st.n_received == st.n_blocks, cancels

    def in_flight_blocks(self, peer: Peer) -> list[Block]:
        return [self._block(piece, b) for piece, b in self._peer_blocks.get(peer, {})]

    def block_needed(self, piece: int, offset: int) -> bool:
        """Whether a block arriving now would be new data (not a duplicate or a late copy)."""
        st = self._active.get(piece)
        return st is not None and not st.received[offset // self.block_size]

    def is_expected(self, peer: Peer, block: Block) -> bool:
        piece, offset, _ = block
        return (piece, offset // self.block_size) in self._peer_blocks.get(peer, {})

    def on_reject(self, peer: Peer, block: Block) -> None:
        piece, offset, _ = block
        b = offset // self.block_size
        self._peer_blocks.get(peer, {}).pop((piece, b), None)
        st = self._active.get(piece)
        if st is not None:
            st.in_flight[b].discard(peer)

    def on_piece_verified(self, piece: int) -> None:
        self.mark_have(piece)

    def on_piece_failed(self, piece: int) -> None:
        """The assembled piece did not match its hash: fetch all of it again."""
        st = self._active.pop(piece, None)
        if st is not None:
            for b, flying in enumerate(st.in_flight):
                for p in flying:
                    self._peer_blocks.get(p, {}).pop((piece, b), None)

    def expired(self, now: float) -> list[tuple[Peer, Block]]:
        """Requests older than the timeout; they are freed for other peers to take."""
        out = []
        limit = now - self.request_timeout
        for peer, blocks in self._peer_blocks.items():
            old = [k for k, t in blocks.items() if t < limit]
            for piece, b in old:
                del blocks[(piece, b)]
                st = self._active.get(piece)
                if st is not None:
                    st.in_flight[b].discard(peer)
                out.append((peer, self._block(piece, b)))
        return out
