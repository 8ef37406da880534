"""The seeding choker (p2pcli/btchoke.py): 4 regular slots by bytes taken per 10 s period,
1 optimistic slot rotated round robin every 30 s, free slots filled at once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.btchoke import Choker, Rechoke


def swarm(n: int, now: float = 0.0, **kw: float) -> Choker:
    c = Choker(**kw)
    for i in range(n):
        c.connected(f"p{i}", now + i * 0.001)  # p0 waited longest
    return c


def test_interested_peers_are_unchoked_at_once_while_slots_are_free() -> None:
    c = swarm(6)
    got = [c.interested(f"p{i}", 1.0) for i in range(6)]
    assert [r.unchoke for r in got[:5]] == [("p0",), ("p1",), ("p2",), ("p3",), ("p4",)]
    assert not got[5]  # 4 regular + 1 optimistic: p5 waits
    assert c.optimistic == "p4"
    assert not c.is_unchoked("p5")


def test_an_uninterested_peer_gets_no_slot_and_losing_interest_frees_one() -> None:
    c = swarm(6)
    assert not c.interested("nobody", 1.0)
    for i in range(6):
        c.interested(f"p{i}", 1.0)
    r = c.not_interested("p1", 2.0)
    assert r == Rechoke(unchoke=("p5",), choke=("p1",))
    r = c.disconnected("p0", 3.0)
    assert r == Rechoke()  # nobody waiting
    assert c.interested("p1", 3.0) == Rechoke(unchoke=("p1",))  # a free slot: at once


def test_rechoose_keeps_the_fastest_takers() -> None:
    c = swarm(7, idle=float("inf"))  # the re-ranking alone
    for i in range(7):
        c.interested(f"p{i}", 0.0)
    # p0..p3 regular, p4 optimistic; p5, p6 wait.
    for peer, n in [("p0", 10), ("p1", 500), ("p2", 400), ("p3", 300), ("p4", 900)]:
        c.sent(peer, n)
    r = c.on_timer(10.0)
    # p0 took least: its regular slot goes to the longest-waiting choked peer (p5: choked
    # peers could show no rate, and they go before an unchoked peer on a tie at 0... but
    # p0 took 10 bytes, more than 0, so it stays). Nothing changes.
    assert r == Rechoke()
    c.sent("p1", 1)
    r = c.on_timer(20.0)
    # This period p0, p2, p3 took nothing, like the waiting p5 and p6, who go first on
    # that tie; p0 then (connected first, unchoked as early as p2 and p3).
    assert set(r.unchoke) == {"p5", "p6"}
    assert set(r.choke) == {"p2", "p3"}
    assert c.is_unchoked("p1") and c.is_unchoked("p4")


def test_the_optimistic_slot_rotates_round_robin() -> None:
    c = swarm(7)
    for i in range(7):
        c.interested(f"p{i}", 0.0)
    holders = [c.optimistic]
    for t in range(10, 100, 10):
        for i in range(7):  # the regulars take the most: none changes hands
            if c.is_unchoked(f"p{i}"):
                c.sent(f"p{i}", 100 if c.optimistic != f"p{i}" else 10)
        c.on_timer(float(t))
        if t % 30 == 0:
            holders.append(c.optimistic)
    assert holders == ["p4", "p5", "p6", "p4"]


def test_rotation_with_nobody_waiting_changes_nothing() -> None:
    c = swarm(3)
    for i in range(3):
        c.interested(f"p{i}", 0.0)
    assert c.on_timer(30.0) == Rechoke()
    assert all(c.is_unchoked(f"p{i}") for i in range(3))


def test_an_idle_peer_gives_its_slot_to_one_waiting() -> None:
    c = swarm(6)
    for i in range(6):
        c.interested(f"p{i}", 0.0)
    for t in (1.0, 2.0):
        for i in range(5):
            if i != 2:  # p2 stops asking (or is gone without a goodbye)
                c.sent(f"p{i}", 100)
        assert c.on_timer(t) == Rechoke()
    for i in range(5):
        if i != 2:
            c.sent(f"p{i}", 100)
    assert c.on_timer(3.0) == Rechoke(unchoke=("p5",), choke=("p2",))


def test_idle_peers_keep_their_slots_while_nobody_waits() -> None:
    c = swarm(3)
    for i in range(3):
        c.interested(f"p{i}", 0.0)
    assert c.on_timer(9.0) == Rechoke()
    assert all(c.is_unchoked(f"p{i}") for i in range(3))


def test_timer_is_none_before_anyone_connects() -> None:
    c = Choker()
    assert c.timer() is None and c.on_timer(100.0) == Rechoke()
    c.connected("a", 5.0)
    assert c.timer() == 15.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("cinxst"), st.integers(0, 9),
                          st.integers(0, 5000)), max_size=120))
def test_invariants_under_any_schedule(ops: list[tuple[str, int, int]]) -> None:
    """At most 4 + 1 unchoked, all interested; nobody interested waits while a slot is free;
    every change is reported exactly once."""
    c = Choker()
    seen: set[str] = set()  # unchoked, as told by the Rechokes
    now = 0.0
    for op, i, n in ops:
        peer = f"p{i}"
        now += n / 1000
        r = Rechoke()
        if op == "c" and peer not in c.peers:
            c.connected(peer, now)
        elif op == "x":
            r = c.disconnected(peer, now)
            seen.discard(peer)
        elif op == "i":
            r = c.interested(peer, now)
        elif op == "n":
            r = c.not_interested(peer, now)
        elif op == "s":
            c.sent(peer, n)
        elif op == "t":
            r = c.on_timer(now)
        assert not set(r.unchoke) & set(r.choke)
        assert not set(r.unchoke) & seen, "unchoked twice"
        assert set(r.choke) <= seen, "choked while choked"
        seen = (seen | set(r.unchoke)) - set(r.choke)
        unchoked = {k for k in c.peers if c.is_unchoked(k)}
        assert seen == unchoked
        assert len(unchoked) <= 5
        assert all(c.peers[k].interested for k in unchoked)
        waiting = [k for k, p in c.peers.items() if p.interested and not p.unchoked]
        assert not waiting or len(unchoked) == 5
        assert c.optimistic is None or c.optimistic in unchoked
