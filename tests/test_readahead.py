"""ReadAhead (sans-IO): which pieces a stream asks for first."""

from __future__ import annotations

from p2pcli.readahead import (
    DEFAULT_WINDOW,
    MAX_TAIL,
    MIN_TAIL,
    START_BYTES,
    URGENT_BYTES,
    PlayerState,
    ReadAhead,
    Reader,
)

KIB = 1024
MIB = 1024 * KIB


def test_before_any_read_the_head_then_the_tail():
    ra = ReadAhead(100 * MIB, 256 * KIB)
    prio = ra.priority([])
    head = list(range(URGENT_BYTES // (256 * KIB)))
    tail = list(range(400 - MIN_TAIL // (256 * KIB), 400))
    assert prio == head + tail


def test_a_read_comes_first_then_the_tail_then_its_window():
    ra = ReadAhead(100 * MIB, 256 * KIB)
    r = Reader(pos=0, end=100 * MIB, serial=0)
    prio = ra.priority([r])
    urgent = list(range(URGENT_BYTES // (256 * KIB)))
    tail = list(range(400 - MIN_TAIL // (256 * KIB), 400))
    window = list(range(len(urgent), DEFAULT_WINDOW // (256 * KIB)))
    assert prio == urgent + tail + window


def test_the_tail_is_early_only_while_the_stream_starts():
    # On a slow link a faststart file's read-ahead must not wait behind a tail nobody asked
    # for: once a reader has gone START_BYTES in, the tail is no longer listed, for good.
    ra = ReadAhead(100 * MIB, 256 * KIB)
    r = Reader(pos=START_BYTES, end=100 * MIB, serial=0)
    assert 399 in ra.priority([r])
    r.pos += 1
    assert 399 not in ra.priority([r])
    assert 399 not in ra.priority([])
    r0 = Reader(pos=0, end=100 * MIB, serial=1)
    assert 399 not in ra.priority([r0])


def test_the_tail_grows_with_the_file_within_bounds():
    assert ReadAhead(10 * MIB, 64 * KIB).tail == MIN_TAIL
    assert ReadAhead(400 * MIB, 64 * KIB).tail == 2 * MIB  # 1/200 of the size
    assert ReadAhead(8 * 1024 * MIB, 4 * MIB).tail == MAX_TAIL
    big = ReadAhead(8 * 1024 * MIB, 4 * MIB)
    assert big.priority([])[-2:] == [2046, 2047]


def test_a_file_smaller_than_the_tail_is_listed_once():
    ra = ReadAhead(100 * KIB, 16 * KIB)
    prio = ra.priority([])
    assert sorted(prio) == list(range(7)) and len(set(prio)) == len(prio)


def test_a_read_inside_the_tail_is_not_listed_twice():
    ra = ReadAhead(100 * MIB, 256 * KIB)
    r = Reader(pos=100 * MIB - 100 * KIB, end=100 * MIB, serial=0)
    prio = ra.priority([r], PlayerState())
    assert prio[0] == 399 and len(set(prio)) == len(prio)
    assert set(prio) == {399}  # that read is past the start: no early tail any more
