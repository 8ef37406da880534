"""A seeder's memory is bounded: nothing a peer leaves behind outlives it.

A seeder runs for days while peers come and go, so any per-peer state kept after the peer
leaves is a leak however small each entry is. The seeder here is the real `p2p seed` run
under benchmarks/memprobe.py, which on SIGUSR1 reports its live aiortc/aioice objects, its
asyncio tasks, the size of every container its `Swarm` holds, and its piece cache. Real
fetchers leave it every way a peer can (finishing, Ctrl-C mid-transfer, killed
mid-transfer); once it has let go of them all, each of those must be back at its baseline
and the piece cache within its byte bound.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import LOOPBACK, ROOT, Proc, Procs, make_file

from p2pcli.store import PieceCache

pytestmark = pytest.mark.timeout(240)

MEMPROBE = ROOT / "benchmarks" / "memprobe.py"
# What one peer connection is made of on the seeder's side: all must go when it goes.
PEER_OBJECTS = ("Peer", "PeerLink", "PeerProtocol", "RTCPeerConnection",
                "RTCDataChannel", "RTCIceTransport", "RTCIceGatherer", "RTCDtlsTransport",
                "RTCSctpTransport", "StunProtocol")
# Peers that misbehave are remembered on purpose (never talk to them again); none here do.
BY_DESIGN = {"Admission.banned", "Admission.banned_ids"}


def probe(seeder: Proc, log: Path) -> dict:
    before = len(log.read_text().splitlines()) if log.exists() else 0
    seeder.signal(signal.SIGUSR1)
    rows = seeder.wait_for(
        lambda _: (log.exists() and len(lines := log.read_text().splitlines()) > before
                   and lines), 30, "the memory probe")
    return json.loads(rows[-1])


def probe_until_alone(seeder: Proc, log: Path, timeout: float) -> dict:
    """Probe until the seeder holds no session: a killed peer says nothing, the seeder
    notices when ICE consent fails (6 checks; about 6 s at the 0.5 s interval set below,
    30 s at aioice's own 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        row = probe(seeder, log)
        alone = not row["swarm"].get("SwarmCore.peers") and not row["swarm"].get("Swarm.links")
        if alone or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def test_every_peer_state_returns_to_baseline_after_peers_leave_every_way(
    procs: Procs, signal_url: str, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "src.bin", 3 << 20)
    log = tmp_path / "seed.probe.jsonl"
    # Slow enough that an interrupted fetcher is cut off mid-transfer.
    seeder = procs.start([sys.executable, str(MEMPROBE), str(log), "seed", str(src), *LOOPBACK,
                          "--json", "--signal", signal_url, "--max-upload-rate", "1M"],
                         name="seed", env={**procs.env, "P2P_PROBE_CONSENT_INTERVAL": "0.5"})
    link = seeder.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip()
                           else None, 60, "the link")
    base = probe_until_alone(seeder, log, 30)

    fates = ["finish", "finish", signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    fetchers = []
    for i, fate in enumerate(fates):
        out = tmp_path / f"f{i}" / "out.bin"
        out.parent.mkdir()
        fetchers.append((fate, procs.fetch(link, "-o", str(out), "--timeout", "60",
                                           name=f"fetch{i}")))
    for fate, f in fetchers:
        if fate != "finish":
            # Interrupted once data flows: its requests are queued at the seeder.
            f.wait_for(lambda p: any(e["event"] == "piece-verified" for e in p.events()),
                       90, "a first piece")
            f.signal(fate)
    for fate, f in fetchers:
        rc = f.wait(90)
        # 0 too for an interrupted one: under load it may finish before its signal comes.
        assert rc in (0, {"finish": 0, signal.SIGKILL: -9}.get(fate, 130)), (
            fate, rc, f.stderr[-2000:])
    after = probe_until_alone(seeder, log, 90)

    left = {k: (base["objects"].get(k, 0), after["objects"].get(k, 0)) for k in PEER_OBJECTS}
    assert all(a <= b for b, a in left.values()), f"peer objects outlived their peers: {left}"
    assert after["tasks"] <= base["tasks"], (base["tasks"], after["tasks"])
    grown = {k: (base["swarm"].get(k, 0), v) for k, v in after["swarm"].items()
             if k not in BY_DESIGN and v > base["swarm"].get(k, 0)}
    assert not grown, f"per-peer state kept after the peers left (before, after): {grown}"
    caches = after["piece_cache"]
    for name in ("PieceCache", "BlockChecks"):
        # One piece over the bound at most: the newest piece is always kept.
        assert caches.get(f"{name}.bytes", 0) <= caches.get(f"{name}.max_bytes", 0) + (
            3 << 20), caches


@pytest.mark.parametrize("piece", [16 << 10, 256 << 10, 4 << 20])
def test_piece_cache_never_holds_more_than_its_bound_plus_one_piece(piece: int) -> None:
    # The bound the seeder's RSS rests on: max_bytes, or one piece when a piece is larger.
    cache = PieceCache(max_bytes=1 << 20)
    for i in range(64):
        cache.put(i, bytes(piece))
        held = sum(len(cache.get(j) or b"") for j in range(i + 1))
        assert held <= max(cache.max_bytes, piece)
    assert cache.get(63) is not None  # the newest piece is always kept
