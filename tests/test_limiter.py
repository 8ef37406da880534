"""The upload limit's token bucket (p2pcli/swarm/limiter.py), replayed with time as an
input: whatever the schedule, no more leaves than the rate has earned."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.swarm.limiter import ByteBucket

RATE = 100_000.0


def releases(schedule: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """(release time, bytes) for takes made one after another (as RateLimiter's lock makes
    them), each `gap` seconds after the previous one's release."""
    bucket = ByteBucket(RATE, start=0.0)
    now, out = 0.0, []
    for gap, n in schedule:
        now += gap
        now += bucket.take(n, now)
        out.append((now, n))
    return out


schedules = st.lists(st.tuples(st.floats(0, 2), st.integers(1, 128 * 1024)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(schedules)
def test_never_more_than_the_rate_has_earned_since_the_start(schedule) -> None:
    total = 0
    for t, n in releases(schedule):
        total += n
        assert total <= RATE * t + 1e-6 * total


@settings(max_examples=300, deadline=None)
@given(schedules)
def test_any_window_holds_at_most_a_burst_over_the_rate(schedule) -> None:
    rel = releases(schedule)
    biggest = max((n for _, n in rel), default=0)
    burst = max(RATE / 4, biggest)
    for i, (t1, _) in enumerate(rel):
        sent = 0
        for t2, n in rel[i + 1 :]:
            sent += n
            assert sent <= RATE * (t2 - t1) + burst + 1e-6 * sent


def test_a_steady_sender_gets_the_rate() -> None:
    rel = releases([(0.0, 10_000)] * 100)  # 1 MB asked for at once, 10 kB at a time
    assert rel[-1][0] == 10.0  # earned at 100 kB/s from the start: exactly 10 s
