"""The piece picker: which block to ask which peer for, and when (p2pcli.picker).

Each policy is pinned with a small scenario, then a seeded simulation runs the real swarm
core with this picker (several peers with random bitfields, answers in random order,
stalls, rejects, peers leaving, pieces failing verification) until the download
completes, checking the picker's promises on every message and after every step.
"""

from __future__ import annotations

import random

import pytest

from p2pcli import events as ev
from p2pcli import wire
from p2pcli.manifest import Manifest
from p2pcli.picker import Picker
from p2pcli.swarm import actions as act
from tests.helpers.swarm_sim import Link, Net, Node, Raw, Wire, make_manifest

B = 16 * 1024  # block size
P = 4 * B  # piece size: four blocks


def blocks_of(piece: int, length: int = P) -> list[tuple[int, int, int]]:
    return [(piece, o, min(B, length - o)) for o in range(0, length, B)]


def pieces(blocks: list[tuple[int, int, int]]) -> list[int]:
    """The pieces of `blocks`, in order of first appearance."""
    return list(dict.fromkeys(p for p, _, _ in blocks))


def has(*ps: int):
    return lambda p: p in ps


def make(n: int = 8, **kw) -> Picker:
    kw.setdefault("rng", random.Random(1))
    return Picker([P] * n, B, **kw)


# -- geometry --------------------------------------------------------------------------------


def test_blocks_lie_on_fixed_boundaries_and_the_last_one_is_short() -> None:
    p = Picker([2 * B + 100, 100], B, sequential=True)
    got = p.pick("a", None, 10, 0.0)
    assert got == [(0, 0, B), (0, B, B), (0, 2 * B, 100), (1, 0, 100)]


def test_pieces_smaller_than_a_block_are_one_block() -> None:
    p = Picker([1000], B)
    assert p.pick("a", None, 10, 0.0) == [(0, 0, 1000)]


def test_nothing_to_pick_when_no_slots_or_complete() -> None:
    p = make(2)
    assert p.pick("a", None, 0, 0.0) == []
    p.mark_have(0)
    p.mark_have(1)
    assert p.complete
    assert p.pick("a", None, 10, 0.0) == []


def test_empty_download_is_complete_from_the_start() -> None:
    assert Picker([], B).complete


# -- sequential ------------------------------------------------------------------------------


def test_sequential_requests_in_order() -> None:
    p = make(4, sequential=True)
    assert p.pick("a", None, 6, 0.0) == blocks_of(0) + blocks_of(1)[:2]
    assert p.pick("b", None, 6, 0.0) == blocks_of(1)[2:] + blocks_of(2)


def test_sequential_never_goes_beyond_cursor_plus_window() -> None:
    p = make(10, sequential=True, window=3)
    assert pieces(p.pick("a", None, 100, 0.0)) == [0, 1, 2]
    # Another peer gets end-game copies, but still only inside the window.
    assert set(pieces(p.pick("b", None, 100, 0.0))) <= {0, 1, 2}
    for piece in (0, 1, 2):
        for blk in blocks_of(piece):
            p.on_block("a", blk)
        p.on_piece_verified(piece)
    assert p.pick("a", None, 100, 0.0) == []  # verified, but not yet consumed downstream
    p.set_cursor(2)
    assert pieces(p.pick("a", None, 100, 0.0)) == [3, 4]
    p.set_cursor(3)
    assert pieces(p.pick("a", None, 100, 0.0)) == [5]


def test_sequential_skips_pieces_the_peer_lacks_and_pieces_we_have() -> None:
    p = make(6, sequential=True)
    p.mark_have(1)
    assert pieces(p.pick("a", has(0, 1, 2, 4), 100, 0.0)) == [0, 2, 4]


# -- rarest first ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_rarest_first_prefers_the_piece_fewest_peers_have(seed: int) -> None:
    p = make(3, rng=random.Random(seed))
    p.add_peer("a", {0, 1, 2})
    p.add_peer("b", {0, 1})
    p.add_peer("c", {0})
    assert pieces(p.pick("a", None, 12, 0.0)) == [2, 1, 0]


def test_rarest_first_follows_have_messages() -> None:
    p = make(3)
    p.add_peer("a", {0, 1, 2})
    p.add_peer("b", {0})  # piece 1 is rarer than piece 0...
    assert pieces(p.pick("x", has(2), 1, 0.0)) == [2]
    p.peer_has(1)
    p.peer_has(1)  # ...until two peers announce it
    assert pieces(p.pick("y", has(0, 1), 1, 0.0)) == [0]


def test_rarest_first_follows_departures() -> None:
    p = make(3)
    for peer, held in {"a": {0, 1}, "b": {0}, "c": {0}, "d": {1}, "e": {2}}.items():
        p.add_peer(peer, held)
    assert pieces(p.pick("x", has(2), 1, 0.0)) == [2]
    p.remove_peer("b", {0})
    p.remove_peer("c", {0})
    assert pieces(p.pick("y", has(0, 1), 1, 0.0)) == [0]  # held by one peer now, 1 by two


class CountingBytes(bytearray):
    """A picker's `have`: counts the pieces a pick looks at."""

    reads = 0

    def __getitem__(self, i):  # type: ignore[override]
        CountingBytes.reads += 1
        return super().__getitem__(i)


@pytest.mark.parametrize("sequential", [False, True])
def test_a_pick_looks_at_a_few_pieces_not_all_of_them(sequential: bool) -> None:
    # A pick runs for every block that arrives: scanning every piece each time cost 53 us
    # per block at 1,024 pieces and 200 us at 4,096 (most of them had, late in a download).
    n = 20_000
    p = Picker([B] * n, B, sequential=sequential, rng=random.Random(1))
    p.add_peer("seed", None)
    p.have = CountingBytes(n)
    done = 0
    while done < n // 2:
        (block,) = p.pick("seed", None, 1, 0.0)
        complete, _ = p.on_block("seed", block)
        assert complete
        p.mark_have(block[0])
        if sequential:
            p.set_cursor(block[0] + 1)
        done += 1
    CountingBytes.reads = 0
    picked = p.pick("seed", None, 4, 0.0)
    assert len(pieces(picked)) == 4 and not any(p.have[b[0]] for b in picked)
    assert CountingBytes.reads < 50  # the 4 picked and a few more, not 10,000 had pieces


def test_peers_that_have_everything_do_not_change_rarity() -> None:
    p = make(2)
    p.add_peer("a", {0, 1})
    p.add_peer("b", {1})
    p.add_peer("seed1", None)
    p.add_peer("seed2", None)
    assert pieces(p.pick("x", None, 1, 0.0)) == [0]


def test_ties_are_broken_at_random_so_peers_spread_out() -> None:
    firsts = {pieces(make(8, rng=random.Random(s)).pick("a", None, 1, 0.0))[0] for s in range(30)}
    assert len(firsts) > 1


# -- what a peer is asked for ----------------------------------------------------------------


def test_a_peer_is_only_asked_for_pieces_it_has() -> None:
    p = make(8)
    got = p.pick("a", has(1, 5), 100, 0.0)
    assert sorted(got) == sorted(blocks_of(1) + blocks_of(5))


def test_a_peer_is_never_given_more_than_its_slots() -> None:
    p = make(8)
    assert len(p.pick("a", None, 3, 0.0)) == 3
    assert p.in_flight("a") == 3
    assert len(p.pick("a", None, 5, 0.0)) == 5
    assert p.in_flight("a") == 8


def test_a_block_in_flight_is_not_given_to_the_same_peer_twice() -> None:
    p = make(1, endgame_copies=3)
    first = p.pick("a", None, 4, 0.0)
    assert p.pick("a", None, 4, 0.0) == []
    assert sorted(first) == blocks_of(0)


def test_partially_requested_pieces_are_finished_before_new_ones() -> None:
    p = make(8)
    p.add_peer("x", set(range(8)))
    p.add_peer("y", set(range(8)) - {6})
    assert p.pick("a", None, 2, 0.0) == blocks_of(6)[:2]  # the rarest
    for _ in range(3):
        p.peer_has(6)  # now the most common piece, but already started
    assert p.pick("b", None, 2, 0.0) == blocks_of(6)[2:]
    assert 6 not in pieces(p.pick("c", None, 2, 0.0))


def test_a_piece_completes_only_when_every_block_arrived() -> None:
    p = make(1)
    got = p.pick("a", None, 4, 0.0)
    random.Random(3).shuffle(got)
    for blk in got[:-1]:
        assert p.on_block("a", blk) == (False, [])
        assert not p.block_needed(blk[0], blk[1])
    assert p.block_needed(0, got[-1][1])
    assert p.on_block("a", got[-1]) == (True, [])
    assert p.in_flight("a") == 0


def test_a_block_arriving_twice_completes_nothing() -> None:
    p = make(1)
    got = p.pick("a", None, 4, 0.0)
    p.on_block("a", got[0])
    assert p.on_block("a", got[0]) == (False, [])
    for blk in got[1:]:
        p.on_block("a", blk)
    assert p.n_have == 0  # complete, but only verification makes it "have"
    p.on_piece_verified(0)
    assert p.complete
    assert p.on_block("a", got[0]) == (False, [])  # a late copy after verification


def test_is_expected_tells_which_peer_a_block_was_asked_of() -> None:
    p = make(2)
    (blk,) = p.pick("a", has(0), 1, 0.0)
    assert p.is_expected("a", blk)
    assert not p.is_expected("b", blk)
    p.on_block("a", blk)
    assert not p.is_expected("a", blk)


# -- end-game --------------------------------------------------------------------------------


def test_endgame_duplicates_blocks_in_flight_once_nothing_else_is_left() -> None:
    p = make(1, endgame_copies=2)
    a = p.pick("a", None, 4, 0.0)
    b = p.pick("b", None, 4, 0.0)
    assert sorted(a) == sorted(b) == blocks_of(0)
    assert p.pick("c", None, 4, 0.0) == []  # two copies of each block are enough


def test_endgame_allows_as_many_copies_as_configured() -> None:
    p = make(1, endgame_copies=3)
    for peer in "abc":
        assert len(p.pick(peer, None, 4, 0.0)) == 4
    assert p.pick("d", None, 4, 0.0) == []
    p1 = make(1, endgame_copies=1)
    p1.pick("a", None, 4, 0.0)
    assert p1.pick("b", None, 4, 0.0) == []  # end-game off


def test_no_duplicates_while_the_peer_has_fresh_blocks_to_fetch() -> None:
    p = make(2)
    p.pick("a", has(0), 4, 0.0)
    assert pieces(p.pick("b", None, 8, 0.0)) == [1]  # piece 1 only, although 4 slots are left
    assert sorted(p.pick("b", None, 8, 0.0)) == blocks_of(0)  # now it is end-game


def test_endgame_only_duplicates_pieces_the_peer_has() -> None:
    p = make(2)
    p.pick("a", None, 8, 0.0)
    assert pieces(p.pick("b", has(1), 8, 0.0)) == [1]


def test_first_copy_wins_and_the_others_are_cancelled() -> None:
    p = make(1, endgame_copies=3)
    blk = blocks_of(0)[1]
    for peer in "abc":
        p.pick(peer, None, 4, 0.0)
    complete, cancels = p.on_block("b", blk)
    assert not complete
    assert sorted(cancels) == [("a", blk), ("c", blk)]
    assert p.in_flight("a") == p.in_flight("c") == 3
    assert not p.is_expected("a", blk)
    # The cancelled copy may still arrive: it is a harmless duplicate.
    assert p.on_block("a", blk) == (False, [])
    # The last block completes the piece once, whoever delivers it.
    for other in blocks_of(0):
        if other != blk:
            p.on_block("c", other)
    assert p.in_flight("a") == p.in_flight("b") == p.in_flight("c") == 0


def test_last_block_completes_the_piece_and_cancels_its_duplicates() -> None:
    p = make(1)
    p.pick("a", None, 4, 0.0)
    p.pick("b", None, 4, 0.0)
    last = blocks_of(0)[3]
    for blk in blocks_of(0)[:3]:
        p.on_block("a", blk)
    assert p.on_block("b", last) == (True, [("a", last)])


# -- timeouts, rejects, departures, failures --------------------------------------------------


def test_expired_frees_requests_older_than_the_timeout_for_other_peers() -> None:
    p = make(1, request_timeout=8.0, endgame_copies=1)
    first = p.pick("slow", None, 2, 0.0)
    second = p.pick("slow", None, 2, 5.0)
    assert p.pick("fast", None, 4, 6.0) == []
    assert p.expired(8.0) == []  # exactly the timeout is not yet late
    expired = p.expired(8.5)
    assert sorted(expired) == sorted(("slow", blk) for blk in first)
    assert p.in_flight("slow") == 2
    assert sorted(p.pick("fast", None, 4, 8.5)) == sorted(first)
    assert sorted(b for _, b in p.expired(13.5)) == sorted(second)
    assert p.in_flight("slow") == 0 and p.in_flight("fast") == 2
    assert sorted(p.expired(16.6)) == sorted(("fast", blk) for blk in first)


def test_a_late_answer_to_an_expired_request_is_still_used() -> None:
    p = make(1, endgame_copies=1)
    blk = p.pick("slow", None, 1, 0.0)[0]
    p.expired(9.0)
    p.pick("fast", None, 1, 9.0)
    assert p.block_needed(blk[0], blk[1])
    assert p.on_block("slow", blk) == (False, [("fast", blk)])


def test_rejected_block_is_free_for_others() -> None:
    p = make(1, endgame_copies=1)
    got = p.pick("a", None, 4, 0.0)
    p.on_reject("a", got[0])
    assert p.in_flight("a") == 3
    assert p.pick("b", None, 4, 0.0) == [got[0]]


def test_remove_peer_frees_its_blocks() -> None:
    p = make(2, endgame_copies=1)
    p.add_peer("a", {0, 1})
    got = p.pick("a", None, 5, 0.0)
    assert sorted(p.remove_peer("a", {0, 1})) == sorted(got)
    assert p.in_flight("a") == 0
    assert sorted(p.pick("b", None, 5, 1.0)) == sorted(got)


def test_remove_peer_keeps_blocks_other_peers_have_in_flight() -> None:
    p = make(1)
    p.pick("a", None, 4, 0.0)
    p.pick("b", None, 4, 0.0)  # end-game copies
    p.remove_peer("a", None)
    assert p.in_flight("b") == 4
    assert p.pick("c", None, 4, 0.0) == blocks_of(0)  # a's copies are free to take again


def test_a_failed_piece_is_fetched_again_in_full() -> None:
    p = make(1)
    for blk in p.pick("a", None, 4, 0.0):
        p.on_block("a", blk)
    p.on_piece_failed(0)
    assert not p.complete
    assert p.pick("b", None, 4, 1.0) == blocks_of(0)


def test_pieces_we_have_are_never_requested() -> None:
    p = make(6)
    for piece in (0, 2, 3, 5):
        p.mark_have(piece)
    assert sorted(pieces(p.pick("a", None, 100, 0.0))) == [1, 4]
    assert p.pick("b", has(0, 2, 3, 5), 100, 0.0) == []
    assert not p.have[1] and p.have[0]


def test_a_piece_found_elsewhere_needs_no_more_blocks() -> None:
    p = make(2)
    got = p.pick("a", has(0), 4, 0.0)
    p.on_block("a", got[0])
    p.mark_have(0)  # e.g. verified from another source
    assert not p.block_needed(0, got[1][1])
    assert p.on_block("a", got[1]) == (False, [])


def test_mark_have_counts_each_piece_once() -> None:
    p = make(2)
    p.mark_have(0)
    p.mark_have(0)
    assert p.n_have == 1 and not p.complete
    p.on_piece_verified(1)
    assert p.complete


# -- priority --------------------------------------------------------------------------------


def test_priority_pieces_come_first_even_beyond_the_window() -> None:
    p = make(20, sequential=True, window=4)
    p.set_priority([15, 9])
    got = p.pick("a", None, 9, 0.0)
    assert pieces(got) == [15, 9, 0]
    assert got[:8] == blocks_of(15) + blocks_of(9)


def test_priority_pieces_come_before_pieces_already_started() -> None:
    p = make(10, sequential=True)
    assert p.pick("a", None, 2, 0.0) == blocks_of(0)[:2]
    p.set_priority([5])
    assert pieces(p.pick("a", None, 6, 0.0)) == [5, 0]


def test_priority_pieces_come_first_in_rarest_first_mode() -> None:
    p = make(20)
    p.add_peer("a", set(range(20)))
    p.add_peer("b", set(range(1, 20)))  # piece 0 is the rarest
    p.set_priority([15, 9])
    assert pieces(p.pick("a", None, 9, 0.0)) == [15, 9, 0]


def test_priority_skips_pieces_we_have_or_the_peer_lacks() -> None:
    p = make(20, sequential=True, window=4)
    p.mark_have(15)
    p.set_priority([15, 9, 12])
    assert pieces(p.pick("a", has(0, 12, 15), 9, 0.0)) == [12, 0]


def test_a_started_piece_outside_the_window_waits_once_it_is_no_priority() -> None:
    # A player seeks away: the piece it wanted, beyond the window, is not finished first.
    p = make(10, sequential=True, window=2)
    p.set_priority([2])  # cursor + window: just outside
    assert p.pick("a", None, 2, 0.0) == blocks_of(2)[:2]
    p.set_priority([])
    assert pieces(p.pick("a", None, 8, 0.0)) == [0, 1]


def test_strict_priority_requests_nothing_else_while_those_pieces_are_missing() -> None:
    p = make(10, sequential=True, window=4)
    p.strict_priority = True
    p.set_priority([7])
    assert p.pick("a", None, 10, 0.0) == blocks_of(7)  # four blocks, although ten slots
    assert p.pick("b", None, 10, 0.0) == blocks_of(7)  # end-game copies, nothing else
    assert p.pick("c", has(0, 1, 2, 3), 10, 0.0) == []
    for blk in blocks_of(7):
        p.on_block("a", blk)
    p.on_piece_verified(7)
    assert pieces(p.pick("c", has(0, 1, 2, 3), 10, 0.0)) == [0, 1, 2]


def test_in_flight_blocks_lists_what_a_peer_was_asked_for() -> None:
    p = make(2)
    got = p.pick("a", None, 5, 0.0)
    assert sorted(p.in_flight_blocks("a")) == sorted(got)
    p.on_block("a", got[0])
    assert sorted(p.in_flight_blocks("a")) == sorted(got[1:])
    assert p.in_flight_blocks("nobody") == []


# -- simulation ------------------------------------------------------------------------------
#
# The real swarm core (p2pcli.swarm.core) downloading through this picker from scripted
# peers on the in-memory network of tests/helpers/swarm_sim.py: random bitfields, answers
# in random order and after random delays, stalls, rejects, peers leaving and coming back,
# a player seeking, pieces that fail verification. The promises are checked on every
# message the core sends or takes, and after every step of the clock.


class SimPeer(Raw):
    """A peer with some pieces, answering the downloader's requests as its script says."""

    def __init__(self, sim: Sim, name: str, pieces: set[int] | None, *, stall: float,
                 reject: float, latency: float, corrupt: bool = False) -> None:
        super().__init__(sim.net, name, f"10.1.0.{len(sim.peers) + 1}")
        sim.net.endpoints[name] = self
        self.sim = sim
        self.pieces = pieces  # None: it has every piece
        self.stall = stall  # chance a request is never answered
        self.reject = reject  # chance a request is refused
        self.latency = latency  # answers take up to this long; beyond 8 s they time out first
        self.corrupt = corrupt  # flips a byte of each block while the sim has failures left
        self.pending: dict[tuple[int, int, int], int] = {}  # block -> answers scheduled
        self.refusing: set[int] = set()  # pieces it chose to reject on this connection

    def has(self, piece: int) -> bool:
        return self.pieces is None or piece in self.pieces

    @property
    def online(self) -> bool:
        return "d" in self.links

    def opened(self, peer: str, link: Link) -> None:
        w = self.sim.wire
        self.send("d", w.handshake(peer_id=self.name.encode().ljust(16, b"-")))
        self.send("d", wire.encode_have_all() if self.pieces is None else w.bitfield(self.pieces))

    def received(self, peer: str, data: bytes) -> None:
        e = wire.decode(data)
        if isinstance(e, wire.ManifestRequested):
            self.send("d", self.sim.wire.manifest_data(e.offset, e.length))
        elif isinstance(e, wire.BlockRequested):
            blk = (e.piece, e.offset, e.length)
            assert self.has(e.piece), (self.name, e.piece)  # asked only for what it has
            r = self.sim.rng.random()
            if r < self.stall:
                return
            refuse = r < self.stall + self.reject and (
                # Never so often that it counts as lying (that is tested on its own).
                e.piece in self.refusing or len(self.refusing) < wire.MAX_REFUSALS)
            if refuse:
                self.refusing.add(e.piece)
            link = self.links["d"]
            self.pending[blk] = self.pending.get(blk, 0) + 1
            delay = self.sim.rng.uniform(0, self.latency)
            self.net.later(lambda: self.answer(link, blk, refuse), delay)
        elif isinstance(e, wire.BlockCancelled):
            blk = (e.piece, e.offset, e.length)
            if self.pending.get(blk) and self.sim.rng.random() < 0.5:
                self.pending[blk] -= 1  # the cancel came in time: no answer goes out

    def answer(self, link: Link, blk: tuple[int, int, int], refuse: bool) -> None:
        if self.links.get("d") is not link or not self.pending.get(blk):
            return
        self.pending[blk] -= 1
        piece, offset, length = blk
        if refuse:
            self.send("d", wire.encode_reject(*blk))
            return
        msg = bytearray(self.sim.wire.piece(self.sim.data, piece, offset, length))
        if self.corrupt and self.sim.failures_left > 0:
            self.sim.failures_left -= 1
            msg[-1] ^= 0xFF
        self.send("d", bytes(msg))

    def closed(self, peer: str, link: Link) -> None:
        super().closed(peer, link)
        self.pending.clear()

    def come_back(self) -> None:
        self.pending.clear()
        self.refusing.clear()
        self.connect("d")


class Downloader(Node):
    """The downloading node, with the model of what it has in flight checked as it talks."""

    sim: Sim

    def transmit(self, peer: str, data: bytes) -> None:
        e, sim = wire.decode(data), self.sim
        if isinstance(e, wire.BlockRequested):
            blk = (e.piece, e.offset, e.length)
            p = sim.peer(peer)
            assert p.has(e.piece) and e.piece not in sim.refused[peer], (peer, e.piece)
            assert blk in blocks_of(e.piece, sim.lengths[e.piece])
            assert e.offset not in sim.received.get(e.piece, set())
            assert blk not in sim.live[peer]
            if any(blk in v for k, v in sim.live.items() if k != peer):
                # End-game only once nothing fresh is left for this peer.
                assert not sim.fresh_blocks(p), (peer, blk)
            sim.live[peer].add(blk)
            copies = sum(blk in v for v in sim.live.values())
            assert copies <= max(1, sim.copies)
        elif isinstance(e, wire.BlockCancelled):
            sim.live[peer].remove((e.piece, e.offset, e.length))
        super().transmit(peer, data)

    def received(self, peer: str, data: bytes) -> None:
        e, sim, k = wire.decode(data), self.sim, self.core.picker
        new = False
        if isinstance(e, wire.BlockReceived):
            blk = (e.piece, e.offset, len(e.data))
            sim.live[peer].discard(blk)
            new = k is not None and k.block_needed(e.piece, e.offset)
        elif isinstance(e, wire.BlockRejected):
            sim.live[peer].discard((e.piece, e.offset, e.length))
            sim.refused[peer].add(e.piece)
        super().received(peer, data)
        if new:
            assert e.offset not in sim.received.setdefault(e.piece, set())
            sim.received[e.piece].add(e.offset)

    def _do(self, a: act.Action) -> None:
        if isinstance(a, act.Close):
            self.sim.live[a.peer] = set()  # the picker forgot its requests
            self.sim.refused[a.peer] = set()  # and the peer its refusals
        elif isinstance(a, act.Verify):
            got = self.sim.received.pop(a.piece)
            assert got == {b[1] for b in blocks_of(a.piece, self.sim.lengths[a.piece])}
            assert not any(b[0] == a.piece for v in self.sim.live.values() for b in v)
            self.sim.verifying.add(a.piece)
        super()._do(a)

    def _verify(self, a: act.Verify) -> None:
        self.sim.verifying.remove(a.piece)  # verified, or to be fetched again in full
        super()._verify(a)


class Sim:
    """A download by the real swarm core from scripted peers, and a model of its promises."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        n = rng.randint(1, 24)
        lengths = [P] * (n - 1) + [rng.randint(1, P)]
        self.sequential = rng.random() < 0.4
        window = rng.randint(1, 4) if self.sequential and rng.random() < 0.7 else None
        self.copies = rng.randint(1, 3)
        self.lengths = lengths
        self.data = rng.randbytes(sum(lengths))
        m = make_manifest(self.data, P)
        self.wire = Wire(m)
        strict = self.sequential and rng.random() < 0.5
        priority = (rng.sample(range(n), rng.randint(0, min(3, n)))
                    if self.sequential and rng.random() < 0.5 else [])

        def open_picker(m: Manifest) -> Picker:
            k = Picker(lengths, B, sequential=self.sequential, window=window,
                       request_timeout=8.0, endgame_copies=self.copies,
                       rng=random.Random(seed))
            k.strict_priority = strict
            k.set_priority(priority)
            return k

        self.net = Net()
        self.d = Downloader(self.net, "d", "10.0.0.1", m.content_hash, data=None,
                            manifest=None, peer_id=b"downloader-sim!!", max_peers=32,
                            max_peers_per_address=None, picker=open_picker)
        self.d.sim = self
        self.net.endpoints["d"] = self.d
        for piece in range(n):  # resumed from disk
            if rng.random() < 0.15:
                self.d.pieces[piece] = self.data[piece * P : piece * P + lengths[piece]]
        self.peers: list[SimPeer] = []
        for i in range(rng.randint(1, 5)):
            ps = None if rng.random() < 0.25 else {p for p in range(n) if rng.random() < 0.5}
            self.peers.append(SimPeer(self, f"p{i}", ps, stall=rng.choice([0, 0, 0.1, 0.5]),
                                      reject=rng.choice([0, 0, 0.05]),
                                      latency=rng.choice([1, 3, 12, 30])))
        covered = set().union(
            *(set(range(n)) if p.pieces is None else p.pieces for p in self.peers)
        )
        for missing in set(range(n)) - covered:
            rng.choice(self.peers).pieces.add(missing)  # type: ignore[union-attr]
        # Pieces that fail verification: a peer that has everything corrupts a block or
        # two. Two at most: an honest peer that shared both pieces keeps below 3 strikes.
        self.failures_left = rng.randint(0, 2)
        if self.failures_left:
            self.peers.append(SimPeer(self, "liar", None, stall=0, reject=0, latency=3,
                                      corrupt=True))
        self.by_name = {p.name: p for p in self.peers}
        self.live: dict[str, set[tuple[int, int, int]]] = {p.name: set() for p in self.peers}
        self.refused: dict[str, set[int]] = {p.name: set() for p in self.peers}
        "Pieces each peer refused, as far as the downloader knows: never asked again."
        self.received: dict[int, set[int]] = {}  # piece -> offsets accepted as new data
        self.verifying: set[int] = set()  # complete pieces being checked
        self.cursor = 0
        for p in self.peers:
            p.connect("d")

    def peer(self, name: str) -> SimPeer:
        return self.by_name[name]

    @property
    def picker(self) -> Picker:
        k = self.d.core.picker
        assert k is not None
        return k

    def advance_cursor(self) -> None:
        """The pipe's reader takes the pieces in order as they are verified."""
        p = self.picker
        cursor = self.cursor
        while cursor < p.count and p.have[cursor]:
            cursor += 1
        if cursor != self.cursor:
            self.cursor = cursor
            self.d.core.set_cursor(cursor, self.net.now)
            self.net.drain()

    def set_priority(self) -> None:
        """A player seeks: new pieces first; with strict priority, cancel the rest."""
        p, rng = self.picker, self.rng
        self.d.core.set_priority(rng.sample(range(p.count), rng.randint(0, min(3, p.count))),
                                 self.net.now)
        self.net.drain()
        urgent = {x for x in p.priority if not p.have[x]}
        if urgent and p.strict_priority:
            assert all(b[0] in urgent for v in self.live.values() for b in v)

    def eligible(self, peer: SimPeer, piece: int) -> bool:
        p = self.picker
        if (p.have[piece] or piece in self.verifying or not peer.has(piece)
                or piece in self.refused[peer.name]):
            return False
        urgent = [x for x in p.priority if not p.have[x]]
        if urgent and p.strict_priority:
            return piece in urgent
        return p.window is None or piece < p.cursor + p.window or piece in p.priority

    def fresh_blocks(self, peer: SimPeer) -> set[tuple[int, int, int]]:
        """Blocks `peer` could fetch that nobody has in flight or delivered."""
        flying = set().union(*self.live.values())
        return {
            blk
            for piece in range(self.picker.count)
            if self.eligible(peer, piece)
            for blk in blocks_of(piece, self.lengths[piece])
            if blk[1] not in self.received.get(piece, set()) and blk not in flying
        }

    def check_counts(self) -> None:
        k = self.d.core.picker
        if k is None:
            return
        for name, blocks in self.live.items():
            assert k.in_flight(name) == len(blocks), name

    def run(self) -> int:
        """Step the clock until the download completes; returns the number of steps."""
        rng, steps, net = self.rng, 0, self.net
        while not self.d.complete:
            steps += 1
            assert steps < 5000, "the download never completed"
            for peer in self.peers:
                if peer.name == "liar":
                    continue  # it stays until it is caught
                # Even a lone peer leaves now and then: one that refused its only copy of a
                # piece is asked for it again only on a new connection.
                if peer.online and rng.random() < 0.01:
                    peer.hang_up("d")
                elif not peer.online and "d" not in peer.links and rng.random() < 0.1:
                    peer.come_back()
            if self.sequential and self.d.core.picker is not None and rng.random() < 0.03:
                self.set_priority()
            net.run_for(rng.uniform(0.1, 1.5))
            if self.d.core.picker is not None:
                self.advance_cursor()
            self.check_counts()
        return steps


@pytest.mark.parametrize("seed", range(200))
def test_simulated_swarm_completes_and_keeps_every_promise(seed: int) -> None:
    sim = Sim(seed)
    sim.run()
    assert all(sim.picker.have)
    assert sim.d.content() == sim.data
    assert sim.received == {}
    d = sim.d
    # Nobody broke the protocol; the only peers dropped with a warning stopped answering,
    # or sent a bad piece alone (the liar).
    for w in d.warnings():
        assert "stopped answering requests" in w or "dropped peer liar: sent corrupt" in w, w
    for rej in d.events_of(ev.PieceRejected):
        assert "liar" in rej.peers


def test_waiting_for_reader_only_when_the_window_has_nothing_left_to_ask() -> None:
    p = make(8, sequential=True, window=2)
    p.add_peer("s", None)
    assert not p.waiting_for_reader()  # the window's pieces are not asked for yet
    first = p.pick("s", None, 3, 0.0)
    assert pieces(first) == [0]
    assert not p.waiting_for_reader()  # piece 1 is not asked for
    blocks = first + p.pick("s", None, 100, 0.0)
    assert not p.waiting_for_reader()  # every block is in flight: its peer must answer
    for b in blocks:
        p.on_block("s", b)
    assert p.waiting_for_reader()  # pieces 0 and 1 are in, not yet verified
    p.set_cursor(1)
    assert not p.waiting_for_reader()  # the reader moved: piece 2 may be asked for
    assert not make(8).waiting_for_reader()  # no window: never
