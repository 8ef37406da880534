"""Rate limits and caps (p2pcli/signaling/limits.py, rooms.py), without any I/O.

Time is an input here: every check passes `now` explicitly.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.signaling.limits import AddressCounter, ConnectionMeter, Limits, TokenBucket
from p2pcli.signaling.rooms import Rooms, sample_in_order


def test_a_bucket_allows_its_burst_then_its_rate():
    b = TokenBucket(rate=10, burst=3)
    assert [b.take(0.0) for _ in range(3)] == [0, 0, 0]
    wait = b.take(0.0)
    assert abs(wait - 0.1) < 1e-9  # one token comes back every 1/rate seconds
    assert b.take(0.05) > 0
    assert b.take(0.1) == 0
    assert b.take(10.0) == 0  # refilled, but never beyond the burst:
    assert [b.take(10.0) for _ in range(3)][-1] > 0


def test_a_zero_rate_is_no_limit():
    b = TokenBucket(rate=0, burst=0)
    assert all(b.take(0.0) == 0 for _ in range(10_000))


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1000),
    burst=st.floats(1, 100),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
)
def test_a_bucket_never_admits_more_than_burst_plus_rate_times_time(
    rate: float, burst: float, gaps: list[float]
):
    b = TokenBucket(rate, burst)
    now = admitted = 0.0
    for gap in gaps:
        now += gap
        if b.take(now) == 0:
            admitted += 1
        assert admitted <= burst + rate * now + 1e-6


def test_announces_count_against_both_rates():
    meter = ConnectionMeter.for_limits(Limits(message_rate=100, announce_rate=1, burst_seconds=2))
    assert [meter.admit("announce", 0.0) for _ in range(2)] == [0, 0]
    assert meter.admit("announce", 0.0) > 0
    # A refused announce does not use up a message token: relays still go through.
    assert all(meter.admit("offer", 0.0) == 0 for _ in range(198))
    assert meter.admit("offer", 0.0) > 0


def test_addresses_are_counted_and_released():
    c = AddressCounter(limit=2)
    assert c.acquire("1.2.3.4") and c.acquire("1.2.3.4")
    assert not c.acquire("1.2.3.4")
    assert c.acquire("5.6.7.8")
    c.release("1.2.3.4")
    assert c.acquire("1.2.3.4")
    c.release("1.2.3.4")
    c.release("1.2.3.4")
    assert c.open == {"5.6.7.8": 1}
    assert all(AddressCounter(limit=0).acquire("x") for _ in range(1000))


def test_a_crowded_room_lists_a_random_sample_in_join_order():
    r = Rooms(max_peer_list=5, rng=random.Random(7))
    ids = [f"p{i:02d}" for i in range(20)]
    for p in [*ids, "new"]:
        r.connect(p, "ws")
        joined = r.announce(p, "h")
    assert len(joined.peers) == 5
    assert joined.peers == sorted(joined.peers)  # join order (the ids sort the same way)
    assert set(joined.peers) <= set(ids)
    assert joined.notify == ids  # everyone is still told about the newcomer
    # Different newcomers get different samples, so the first members are not favoured.
    seen = set()
    for i in range(30):
        r.connect(f"late{i}", "ws")
        seen.update(r.announce(f"late{i}", "h").peers)
    assert set(ids) <= seen


@given(st.lists(st.integers(), max_size=50, unique=True), st.integers(0, 60))
def test_sample_in_order(values: list[int], limit: int):
    peers = [str(v) for v in values]
    out = sample_in_order(peers, limit, random.Random(1))
    assert len(out) == (len(peers) if limit == 0 else min(limit, len(peers)))
    positions = [peers.index(p) for p in out]
    assert positions == sorted(positions) and len(set(out)) == len(out)
