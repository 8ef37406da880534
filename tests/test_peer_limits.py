"""What one peer may take from another: connection slots and manifest answers (issue 12, 7-8).

The slot policy (`p2pcli.slots`) and the manifest request budget (`wire.PeerProtocol`) are
sans-IO and tested with plain calls (test_wire.py has the budget's unit tests); the rest
runs real `p2p` processes and hostile peers over loopback WebRTC.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import LOOPBACK, ROOT, Procs, make_file, one_line_error, sha256
from hypothesis import given
from hypothesis import strategies as st

from p2pcli.errors import ExitCode
from p2pcli.slots import (
    BUSY,
    COOLDOWN,
    IDLE_AFTER,
    RESERVE_AFTER,
    Admit,
    Refuse,
    Slots,
    address_key,
    default_per_address,
    retry_delay,
)

HOSTILE = str(ROOT / "tests" / "helpers" / "hostile_peer.py")
MiB = 1 << 20


# -- the slot policy, sans-IO --------------------------------------------------------------


def opened(slots: Slots, peer: str, address: str | None, now: float) -> Admit | Refuse:
    slots.add(peer, now)
    return slots.opened(peer, address, now)


def full_of_idle_peers(n: int = 4, now: float = 0.0, address: str = "a") -> Slots:
    slots = Slots(n, per_address=n)
    for i in range(n):
        assert opened(slots, f"p{i}", address, now + i * 0.1) == Admit()
    return slots


def test_there_is_room_until_every_slot_is_taken() -> None:
    slots = Slots(3)
    for i in range(3):
        assert slots.offer(f"p{i}", 0.0) == Admit()
        slots.add(f"p{i}", 0.0)
    assert slots.full


def test_a_full_swarm_of_useful_peers_says_busy() -> None:
    slots = full_of_idle_peers()
    for i in range(4):
        slots.useful(f"p{i}", IDLE_AFTER)
    verdict = slots.offer("new", IDLE_AFTER + 1)
    assert isinstance(verdict, Refuse) and verdict.reason.startswith(BUSY)


def test_the_longest_idle_peer_gives_its_slot_to_a_newcomer() -> None:
    slots = full_of_idle_peers()
    slots.useful("p0", 1.0)  # p1 is now the one idle the longest
    assert slots.offer("new", 0.1 + IDLE_AFTER) == Admit(evict="p1")


def test_nobody_is_evicted_before_idle_after() -> None:
    slots = full_of_idle_peers()
    assert isinstance(slots.offer("new", IDLE_AFTER - 0.01), Refuse)


def test_peers_still_connecting_are_never_judged_idle() -> None:
    slots = Slots(2)
    slots.add("a", 0.0)
    slots.add("b", 0.0)
    assert isinstance(slots.offer("new", 100.0), Refuse)
    assert slots.to_drop(1000.0) is None


def test_a_full_swarm_keeps_a_slot_of_room_even_with_nobody_knocking() -> None:
    slots = full_of_idle_peers()
    assert slots.to_drop(IDLE_AFTER + 1) is None  # nobody waits: idle is fine for now
    assert slots.to_drop(RESERVE_AFTER + 1) == "p0"


def test_after_a_knock_the_tick_frees_a_slot_for_the_retry() -> None:
    slots = full_of_idle_peers()
    assert isinstance(slots.offer("new", 1.0), Refuse)  # the knock
    assert slots.to_drop(2.0) is None
    assert slots.to_drop(IDLE_AFTER + 0.5) == "p0"


def test_a_swarm_with_room_drops_nobody() -> None:
    slots = Slots(5)
    assert opened(slots, "a", "x", 0.0) == Admit()
    assert slots.to_drop(1e9) is None


def test_an_evicted_idle_peer_gets_no_slot_back_while_the_swarm_is_full() -> None:
    slots = full_of_idle_peers()
    assert slots.offer("new", IDLE_AFTER + 1) == Admit(evict="p0")
    slots.remove("p0")
    slots.add("new", IDLE_AFTER + 1)
    assert isinstance(slots.offer("p0", IDLE_AFTER * 3), Refuse)  # p1.. are idle, p0 cools
    assert slots.offer("other", IDLE_AFTER * 3) == Admit(evict="p1")
    slots.remove("p1")
    assert slots.offer("p0", IDLE_AFTER * 3) == Admit()  # not full: no one waits for it
    assert slots.offer("p0", IDLE_AFTER + 1 + COOLDOWN) == Admit()


def test_one_address_gets_at_most_its_share_of_the_slots() -> None:
    slots = Slots(8, per_address=2)
    assert opened(slots, "a1", "10.0.0.1", 0.0) == Admit()
    assert opened(slots, "a2", "10.0.0.1", 0.0) == Admit()
    slots.useful("a1", 100.0)
    slots.useful("a2", 100.0)
    verdict = opened(slots, "a3", "10.0.0.1", 100.0)
    assert isinstance(verdict, Refuse)
    assert verdict.reason.startswith(BUSY) and "10.0.0.1" in verdict.reason
    slots.remove("a3")
    assert opened(slots, "b1", "10.0.0.2", 100.0) == Admit()


def test_a_newcomer_over_its_address_cap_replaces_an_idle_peer_of_that_address_only() -> None:
    slots = Slots(8, per_address=2)
    opened(slots, "other", "10.0.0.9", 0.0)  # idle longest, but another address
    opened(slots, "a1", "10.0.0.1", 1.0)
    opened(slots, "a2", "10.0.0.1", 2.0)
    assert opened(slots, "a3", "10.0.0.1", 2.0 + IDLE_AFTER) == Admit(evict="a1")


def test_relayed_peers_count_per_allocation_not_per_relay() -> None:
    keys = {address_key(("relay", "203.0.113.5", port)) for port in (50000, 50001)}
    assert len(keys) == 2
    assert address_key(("srflx", "198.51.100.7", 1)) == address_key(("host", "198.51.100.7", 2))
    assert address_key(None) is None


def test_an_unknown_address_counts_against_no_cap() -> None:
    slots = Slots(8, per_address=1)
    assert opened(slots, "a", None, 0.0) == Admit()
    assert opened(slots, "b", None, 0.0) == Admit()


@pytest.mark.parametrize("max_peers", [1, 2, 4, 7, 8, 32, 128, 1000])
def test_the_default_address_cap_leaves_room_for_other_addresses(max_peers: int) -> None:
    cap = default_per_address(max_peers)
    assert cap >= 2
    assert max_peers < 4 or cap <= max_peers // 2  # one address never takes every slot


def test_busy_retries_start_soon_then_back_off_to_a_bound() -> None:
    delays = [retry_delay(n) for n in range(1, 20)]
    assert delays[0] < IDLE_AFTER  # the retry lands right after an idle peer is due
    assert delays == sorted(delays)
    assert max(delays) <= 30.0


_ops = st.lists(
    st.tuples(
        st.sampled_from(["offer", "open", "useful", "remove", "tick"]),
        st.integers(0, 11),  # peer
        st.integers(0, 2),  # address
        st.floats(0, 3),  # time step
    ),
    max_size=200,
)


@given(st.integers(1, 6), st.integers(1, 3), _ops)
def test_whatever_happens_slots_and_address_caps_hold(max_peers: int, cap: int, ops) -> None:
    """A swarm that follows every verdict never holds more than `max_peers` connections
    nor more than `cap` open ones from one address."""
    slots = Slots(max_peers, per_address=cap)
    now = 0.0
    addr_of: dict[str, str] = {}
    for op, n, a, dt in ops:
        now += dt
        peer = f"p{n}"
        if op == "offer" and peer not in slots:
            verdict = slots.offer(peer, now)
            if isinstance(verdict, Admit):
                if verdict.evict:
                    slots.remove(verdict.evict)
                    addr_of.pop(verdict.evict, None)
                slots.add(peer, now)
        elif op == "open" and peer in slots and peer not in addr_of:
            verdict = slots.opened(peer, f"10.0.0.{a}", now)
            if isinstance(verdict, Refuse):
                slots.remove(peer)
            else:
                addr_of[peer] = f"10.0.0.{a}"
                if verdict.evict:
                    slots.remove(verdict.evict)
                    addr_of.pop(verdict.evict, None)
        elif op == "useful":
            slots.useful(peer, now)
        elif op == "remove":
            slots.remove(peer)
            addr_of.pop(peer, None)
        elif op == "tick":
            victim = slots.to_drop(now)
            if victim is not None:
                slots.remove(victim)
                addr_of.pop(victim, None)
        assert len(slots) <= max_peers
        for address in set(addr_of.values()):
            assert sum(v == address for v in addr_of.values()) <= cap


# -- real peers ----------------------------------------------------------------------------


def hostile(procs: Procs, url: str, src: Path, mode: str, name: str):
    p = procs.start([sys.executable, HOSTILE, url, str(src), mode], name)
    p.wait_for(lambda p: p.stdout.strip(), 30, f"{name} to announce")
    return p, p.stdout.strip()


def own_id(seeder) -> str:
    return seeder.wait_for(
        lambda p: next((e["peer"] for e in p.events() if e["event"] == "signaling-connected"),
                       None), 30, "the seeder's signaling id")


def seen(seeder, peers: set[str]) -> set[str]:
    """Peers the seeder has decided about: joined, refused or dropped."""
    kinds = {"peer-joined", "peer-refused", "peer-left"}
    return {e["peer"] for e in seeder.events() if e["event"] in kinds} & peers


def received_by(proc, peer: str) -> int | None:
    """Bytes a hostile peer received on its finished connection to `peer`."""
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if r.get("peer") == peer:
                return r["received"]
    return None


def left_reason(proc, peer: str) -> str | None:
    for e in proc.events():
        if e["event"] == "peer-left" and e["peer"] == peer and e.get("reason"):
            return e["reason"]
    return None


def fetch(procs: Procs, link: str, *extra: str, json_mode: bool, name: str = "fetch"):
    out = ["--json"] if json_mode else []
    return procs.p2p("fetch", link, *LOOPBACK, *out, "-o", f"{name}.bin", *extra, name=name)


@pytest.mark.parametrize(
    ("mode", "json_modes", "extra"),
    [
        # Both output modes at once, against one seeder (one seeder each took 2 x 8 s).
        ("idle", (True, False), ()),
        # Idle peers that rejoin as soon as they are dropped: each gets its slot back only
        # once per cooldown, so the fetch gets in after a few idle bounds, not never.
        ("idle-rejoin", (True,), ("--timeout", "40")),
    ],
)
def test_idle_peers_filling_every_slot_cannot_keep_a_fetch_out(
    procs: Procs, signal_url: str, tmp_path: Path, mode: str, json_modes: tuple, extra: tuple
):
    src = make_file(tmp_path / "src.bin", 2 * MiB)
    seeder, link = procs.seed(src, signal_url, "--max-peers", "4")
    idle = {hostile(procs, signal_url, src, mode, f"idle{i}")[1] for i in range(4)}
    seeder.wait_for(lambda p: seen(p, idle) == idle, 60, "every idle peer to connect")
    fs = [fetch(procs, link, *extra, json_mode=j, name=f"fetch-{'json' if j else 'human'}")
          for j in json_modes]
    for f in fs:
        assert f.wait(120) == 0, f.stderr[-3000:]
        assert sha256(tmp_path / f"{f.name}.bin") == sha256(src)
        assert "TURN" not in f.stderr
    # The seeder made room by dropping idle peers (or turning them away): never the fetch.
    reasons = [left_reason(seeder, p) or "" for p in idle]
    refused = [e for e in seeder.events() if e["event"] == "peer-refused" and e["peer"] in idle]
    assert any("idle" in r for r in reasons) or refused, seeder.stderr[-3000:]
    assert seeder.p.poll() is None


@pytest.mark.parametrize(
    "limit", [("--max-peers", "1"), ("--max-peers-per-address", "1")], ids=["slots", "address"]
)
def test_a_fetch_turned_away_by_a_full_seeder_says_so_not_unreachable(
    procs: Procs, signal_url: str, tmp_path: Path, limit: tuple[str, str]
):
    src = make_file(tmp_path / "src.bin", 2 * MiB)
    seeder, link = procs.seed(src, signal_url, *limit, "--max-upload-rate", "256k")
    # A peer that keeps downloading holds the one slot (or its address's one), and being
    # useful it keeps it; it has nothing to give the fetch.
    _, leech_id = hostile(procs, signal_url, src, "leech", "leech")
    seeder.wait_for(lambda p: any(e["event"] == "status" and e["sent"] for e in p.events()),
                    60, "the seeder to serve the leech")
    # And a peer that handshakes, gives nothing, and rejoins a second after each drop: when
    # a handshake counted as help, it (or a busy swarm's stream of newcomers) put the fetch's
    # --timeout off for ever; the wait below is far shorter than its manifest timeout alone.
    hostile(procs, signal_url, src, "idle-rejoin", "rejoiner")
    # Both output modes at once (they were two runs of the same seeder, 2 x 19 s): each
    # fetch is turned away on its own, from the same loopback address as the leech.
    fs = {json_mode: fetch(procs, link, "--timeout", "6", json_mode=json_mode,
                           name="fetch-json" if json_mode else "fetch-human")
          for json_mode in (True, False)}
    for json_mode, f in fs.items():
        assert f.wait(40) == ExitCode.NO_PEERS, f.stderr[-3000:]
        err = f.stderr
        assert "no free connection slot" in err and "TURN" not in err, err[-3000:]
        assert "reachable, but none served us for 6s" in err, err[-3000:]
        # The rejoiner: gone again, or still connected with our manifest request unanswered.
        assert "hung up or gave nothing" in err or "has not sent the manifest yet" in err, \
            err[-3000:]
        if not json_mode:
            assert "Traceback" not in err
            assert one_line_error(f, ExitCode.NO_PEERS)
    assert left_reason(seeder, leech_id) is None  # the useful peer kept its slot
    assert seeder.p.poll() is None


@pytest.mark.parametrize("mode", ["manifestflood", "manifestloop"])
def test_a_peer_asking_for_the_manifest_again_and_again_is_dropped_with_bounded_bytes(
    procs: Procs, signal_url: str, tmp_path: Path, mode: str
):
    # 16 MiB in 1024 pieces: a 32 KiB manifest. 3000 answers would be 96 MiB.
    src = make_file(tmp_path / "src.bin", 16 * MiB)
    seeder, link = procs.seed(src, signal_url)
    seeder_id = own_id(seeder)
    bad, bad_id = hostile(procs, signal_url, src, mode, mode)
    why = seeder.wait_for(lambda p: left_reason(p, bad_id), 60, "the seeder to drop it")
    assert "manifest" in why, why
    got = bad.wait_for(lambda p: received_by(p, seeder_id), 30, "its connection to end")
    assert got <= 1 * MiB, got
    f = fetch(procs, link, json_mode=True)
    assert f.wait(120) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "fetch.bin") == sha256(src)
