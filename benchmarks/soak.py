"""Soak: 2 seeders of one file, 20 fetchers joining and leaving at random for a few minutes.

Real processes on loopback: `p2p serve-signal`, two `p2p seed` of the same file, and 20
fetcher identities (each its own `-o` path) started and stopped at random while the soak
lasts. At each start a fetcher's fate is drawn: run to the end, or be stopped after a random
0.3-4 s by SIGTERM (it leaves cleanly, exit 130) or SIGKILL; a stopped fetcher is started
again later with the same `-o`, so it resumes from its `.part`; one that finished is started
again from scratch (its file deleted) and joins as a new peer. At most `--concurrent` run at
once (default 6: each is a Python process running aiortc, and this is sized for 2 cores).
When the time is up, the fetchers still running are sent SIGTERM, and the seeders are
watched until they have let go of every fetcher.

Checked: every completed output is byte-identical to the source (bytes lost must be 0), no
final file is ever left by an interrupted fetch, no fetch exits with an unexpected code,
the seeders are alive at the end. Reported: the seeders' RSS sampled every `--sample` s
(psutil), its growth over the soak (max - idle before the first fetcher) against `--bound`
MB, and what it is once every fetcher has left; starts, completions, resumes, interruptions;
why peers were dropped, on both sides.

The default bound is the piece cache's (min(file size, 64 MiB)) plus 48 MB of per-peer working
memory and freed heap the allocator keeps. With `--probe` the seeders run under
benchmarks/memprobe.py, and once every fetcher has left the soak also checks that they let
go of everything: peer objects, tasks and `Swarm` containers back to idle, caches within
their bounds, heap in use grown by no more than the caches hold.

    python benchmarks/soak.py [--minutes 3] [--fetchers 20] [--concurrent 6] [--size 8M]
                              [--rate 1M] [--bound MB] [--seed 1] [--probe] [--json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from conftest import LOOPBACK, Proc, Procs, make_file  # noqa: E402
from faults import bytes_lost, parse_size  # noqa: E402

from p2pcli.store import PieceCache  # noqa: E402

MB = 1e6
# Per-peer working memory (aiortc buffers, DTLS, queued blocks) at the soak's peak number of
# peers, plus what glibc keeps of freed heap for reuse instead of returning it: measured at
# 35 MB over 15 minutes (benchmarks/README.md), with room to spare.
WORKING_ALLOWANCE_MB = 48.0
# What one peer connection is made of in the seeder: all of it must go when the peer goes.
PEER_OBJECTS = ("Peer", "PeerLink", "PeerProtocol", "RTCPeerConnection",
                "RTCDataChannel", "RTCIceTransport", "RTCIceGatherer", "StunProtocol")
# Swarm containers that grow on purpose: peers that misbehaved are never talked to again.
KEPT_BY_DESIGN = {"Admission.banned", "Admission.banned_ids"}
HEAP_SLACK_MB = 4.0  # heap in use after the soak beyond idle + caches: noise, not a leak


@dataclass
class Slot:
    """One fetcher identity: its output path and its current process, if any."""

    index: int
    out: Path
    proc: Proc | None = None
    stop_at: float | None = None  # when to interrupt it (None: let it finish)
    how: signal.Signals | None = None
    runs: int = 0


@dataclass
class Tally:
    starts: int = 0
    completed: int = 0
    identical: int = 0
    lost: int = 0
    resumes: int = 0
    resumed_pieces: int = 0
    terms: int = 0
    kills: int = 0
    stopped_at_end: int = 0
    finished_before_signal: int = 0
    finished_at_signal: int = 0  # interrupted after its final file was complete
    leftover_final: int = 0  # an interrupted fetch left a final file that is not whole


def rss(proc: Proc) -> int | None:
    try:
        return psutil.Process(proc.p.pid).memory_info().rss
    except psutil.Error:
        return None


def seeder_peers(proc: Proc) -> int | None:
    """Peers in the seeder's latest status event."""
    for e in reversed(proc.events()):
        if e["event"] == "status":
            return e["peers"]
    return None


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="p2p-soak-"))
    env = dict(os.environ, P2P_CACHE_DIR=str(base / "cache"), PYTHONUNBUFFERED="1",
               P2P_LAN="0")  # no mDNS: not in the CPU figures, no multicast out
    env.pop("P2P_SIGNAL", None)
    procs = Procs(base, env)
    src = make_file(base / "src.bin", args.size)
    tally = Tally()
    unexpected: list[str] = []
    samples: list[dict] = []
    dropped_by_seeders: collections.Counter[str] = collections.Counter()
    dropped_by_fetchers: collections.Counter[str] = collections.Counter()
    completion_s: list[float] = []
    try:
        url = procs.serve_signal()
        seeders = []
        probes: list[Path] = []
        for i in (1, 2):
            if args.probe:
                # Same seeder, run under benchmarks/memprobe.py: it answers SIGUSR1.
                probes.append(base / f"seed{i}.probe.jsonl")
                p = procs.start([sys.executable, str(HERE / "memprobe.py"), str(probes[-1]),
                                 "seed", str(src), *LOOPBACK, "--json", "--signal", url,
                                 "--max-upload-rate", args.rate], name=f"seed{i}")
                link = p.wait_for(lambda p: p.stdout.strip().splitlines()[0]
                                  if p.stdout.strip() else None, 60, "the link")
            else:
                p, link = procs.seed(src, url, "--max-upload-rate", args.rate, name=f"seed{i}")
            seeders.append(p)
        slots = [Slot(i, base / f"f{i:02d}" / "out.bin") for i in range(args.fetchers)]
        for s in slots:
            s.out.parent.mkdir()
        time.sleep(2)  # let the seeders settle: the first sample is their idle RSS
        t0 = time.monotonic()
        deadline = t0 + args.minutes * 60
        next_start = t0
        next_sample = t0
        next_probe = t0

        def sample(phase: str) -> None:
            running = sum(s.proc is not None for s in slots)
            row = {"t": round(time.monotonic() - t0, 1), "phase": phase, "running": running,
                   "completed": tally.completed,
                   "rss": [rss(p) for p in seeders], "peers": [seeder_peers(p) for p in seeders]}
            samples.append(row)
            nonlocal next_probe
            if args.probe and (time.monotonic() >= next_probe or phase == "after"):
                next_probe = time.monotonic() + args.probe_every
                for sp in seeders:
                    with contextlib.suppress(ProcessLookupError):
                        sp.signal(signal.SIGUSR1)
            print(f"  t={row['t']:6.1f}s running={running} completed={tally.completed} "
                  f"seeder RSS MB={[round((r or 0) / MB, 1) for r in row['rss']]} "
                  f"peers={row['peers']}", file=sys.stderr, flush=True)

        def reap(s: Slot) -> None:
            assert s.proc is not None
            p, rc = s.proc, s.proc.p.returncode
            evs = p.events()
            p.kill()  # closes its log files
            for e in evs:
                if e["event"] == "resume":
                    tally.resumes += 1
                    tally.resumed_pieces += e["pieces"]
                if e["event"] == "peer-left" and e.get("reason"):
                    dropped_by_fetchers[_kind(e["reason"])] += 1
            if rc == 0:
                tally.completed += 1
                if s.how is not None:
                    tally.finished_before_signal += 1
                lost = bytes_lost(src, s.out) if s.out.exists() else args.size
                tally.lost += lost
                tally.identical += lost == 0
                done = next((e for e in evs if e["event"] == "done"), None)
                if done:
                    completion_s.append(done["seconds"])
            elif (s.how is not None and rc in (130, -signal.SIGTERM, -signal.SIGKILL)):
                if s.out.exists():  # it finished just as the signal came: must be whole
                    lost = bytes_lost(src, s.out)
                    tally.lost += lost
                    tally.leftover_final += lost > 0
                    tally.finished_at_signal += lost == 0
            else:
                last = p.stderr.strip().splitlines()[-1:] or [""]
                unexpected.append(f"{p.name}: exit {rc}: {last[0][:200]}")
            s.proc, s.stop_at, s.how = None, None, None

        while True:
            now = time.monotonic()
            for s in slots:
                if s.proc is not None and s.proc.p.poll() is not None:
                    reap(s)
            for s in slots:
                if s.proc is not None and s.stop_at is not None and now >= s.stop_at:
                    s.proc.signal(s.how)
                    s.stop_at = None
            if now < deadline:
                idle = [s for s in slots if s.proc is None]
                running = len(slots) - len(idle)
                if idle and running < args.concurrent and now >= next_start:
                    # Mostly bring back one that was interrupted: it resumes from .part.
                    partial = [s for s in idle if s.out.with_name("out.bin.part").exists()]
                    s = rng.choice(partial if partial and rng.random() < 0.7 else idle)
                    if s.out.exists():
                        s.out.unlink()  # it finished before: join again as a new peer
                    s.runs += 1
                    s.proc = procs.fetch(link, "-o", str(s.out), "--timeout", "30",
                                         name=f"f{s.index:02d}-{s.runs}")
                    tally.starts += 1
                    fate = rng.random()
                    if fate < 0.3:
                        s.how, s.stop_at = signal.SIGTERM, now + rng.uniform(0.3, 4)
                        tally.terms += 1
                    elif fate < 0.6:
                        s.how, s.stop_at = signal.SIGKILL, now + rng.uniform(0.3, 4)
                        tally.kills += 1
                    next_start = now + rng.uniform(0.2, 1.5)
            else:
                for s in slots:
                    if s.proc is not None and s.how is None:
                        s.how, s.stop_at = signal.SIGTERM, now  # time is up: leave
                        tally.stopped_at_end += 1
                if all(s.proc is None for s in slots):
                    break
                if now > deadline + 60:
                    for s in slots:
                        if s.proc is not None:
                            unexpected.append(f"{s.proc.name}: still running 60 s after SIGTERM")
                            s.proc.kill()
                            s.proc = None
                    break
            if now >= next_sample:
                sample("soak" if now < deadline else "stopping")
                next_sample += args.sample
            time.sleep(0.1)

        # Every fetcher is gone: the seeders should let go of them (each still has the other).
        settle_deadline = time.monotonic() + 60
        released_after = None
        while time.monotonic() < settle_deadline:
            peers = [seeder_peers(p) for p in seeders]
            if all(n is not None and n <= 1 for n in peers):
                released_after = round(time.monotonic() - (deadline if deadline else t0), 1)
                break
            time.sleep(1)
        time.sleep(2)
        sample("after")
        if args.probe:
            # aiortc finishes closing a connection a moment after the seeder forgets the
            # peer: probe again a little later (the last plain probe is the one checked),
            # then once more trimming the heap.
            time.sleep(8)
            for sp in seeders:
                sp.signal(signal.SIGUSR1)
            time.sleep(4)
            for sp in seeders:
                sp.signal(signal.SIGUSR2)
            time.sleep(4)
        alive = [p.p.poll() is None for p in seeders]
        for p in seeders:
            for e in p.events():
                if e["event"] == "peer-left" and e.get("reason"):
                    dropped_by_seeders[_kind(e["reason"])] += 1
    finally:
        procs.stop_all()

    idle = samples[0]["rss"]
    per_seeder = []
    for i in range(2):
        series = [s["rss"][i] for s in samples if s["rss"][i] is not None]
        during = [s["rss"][i] for s in samples if s["phase"] != "after" and s["rss"][i]]
        per_seeder.append({
            "idle_mb": round(idle[i] / MB, 1),
            "max_mb": round(max(during) / MB, 1),
            "final_mb": round(series[-1] / MB, 1),
            "growth_mb": round((max(during) - idle[i]) / MB, 1),
        })
    growth = max(s["growth_mb"] for s in per_seeder)
    result = {
        "minutes": args.minutes, "fetchers": args.fetchers, "concurrent": args.concurrent,
        "size": args.size, "rate": args.rate, "seed": args.seed,
        "tally": tally.__dict__, "unexpected": unexpected,
        "completion_s": {
            "median": round(sorted(completion_s)[len(completion_s) // 2], 2)
            if completion_s else None,
            "max": round(max(completion_s), 2) if completion_s else None,
        },
        "seeders": per_seeder, "seeders_alive": alive,
        "seeders_released_fetchers_s": released_after,
        "rss_growth_mb": growth, "bound_mb": args.bound, "growth_ok": growth <= args.bound,
        "dropped_by_seeders": dict(dropped_by_seeders),
        "dropped_by_fetchers": dict(dropped_by_fetchers),
        "samples": samples,
    }
    if args.probe:
        result["probes"] = [_probe_summary(pf) for pf in probes]
        result["released"] = [_released(pf) for pf in probes]
    if not unexpected and tally.lost == 0 and not args.probe:  # --probe: keep its logs
        shutil.rmtree(base, ignore_errors=True)
    else:
        result["kept"] = str(base)
    return result


def _probe_summary(path: Path) -> dict:
    """First, peak and last rows of a seeder's memprobe log, and the trimmed one."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if not rows:
        return {}

    def brief(r: dict) -> dict:
        m = r.get("malloc") or {}
        return {"rss_mb": round(r["rss"] / MB, 1),
                "heap_in_use_mb": round(m.get("in_use", 0) / MB, 1),
                "heap_free_mb": round(m.get("free", 0) / MB, 1),
                "mmapped_mb": round(m.get("mmapped", 0) / MB, 1),
                "traced_mb": round(r["traced"] / MB, 1) if "traced" in r else None,
                "tasks": r["tasks"], "objects": r["objects"]}

    plain = [r for r in rows if "rss_after_trim" not in r]
    trimmed = [r for r in rows if "rss_after_trim" in r]
    out = {"first": brief(plain[0]), "peak": brief(max(plain, key=lambda r: r["rss"])),
           "last": brief(plain[-1]), "log": str(path)}
    if trimmed:
        out["after_trim_mb"] = round(trimmed[-1]["rss_after_trim"] / MB, 1)
    if "top_growth" in plain[-1]:
        out["top_growth"] = plain[-1]["top_growth"][:8]
    return out


def _released(path: Path) -> dict:
    """Did the seeder let go of everything the fetchers left behind? Compares its probe
    after every fetcher left with its idle one: peer objects, tasks and `Swarm` containers
    back to idle, the caches within their bounds, and heap in use grown by no more than the
    caches hold (a leak of anything, Python or C, shows up as heap in use)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    plain = [r for r in rows if "rss_after_trim" not in r]
    if len(plain) < 2:
        return {"ok": False, "why": ["no probe"]}
    idle, after = plain[0], plain[-1]
    why = []
    for k in PEER_OBJECTS:
        if after["objects"].get(k, 0) > idle["objects"].get(k, 0):
            why.append(f"{k}: {idle['objects'].get(k, 0)} -> {after['objects'][k]}")
    if after["tasks"] > idle["tasks"]:
        why.append(f"tasks: {idle['tasks']} -> {after['tasks']}")
    for k, v in after["swarm"].items():
        if k not in KEPT_BY_DESIGN and v > idle["swarm"].get(k, 0):
            why.append(f"Swarm.{k}: {idle['swarm'].get(k, 0)} -> {v}")
    caches = after["piece_cache"]
    held = 0
    for name in ("PieceCache", "BlockChecks"):
        n, bound = caches.get(f"{name}.bytes", 0), caches.get(f"{name}.max_bytes", 0)
        held += n
        if n > bound + (16 << 20):  # the newest piece (up to 16 MiB) is always kept
            why.append(f"{name}: {n} bytes over its bound {bound}")
    heap = None
    if idle.get("malloc") and after.get("malloc"):
        heap = (after["malloc"]["in_use"] - idle["malloc"]["in_use"] - held) / MB
        if heap > HEAP_SLACK_MB:
            why.append(f"heap in use grew {heap:.1f} MB beyond what the caches hold")
    trimmed = [r for r in rows if "rss_after_trim" in r]
    return {"ok": not why, "why": why, "caches_mb": round(held / MB, 1),
            "heap_beyond_caches_mb": None if heap is None else round(heap, 1),
            "free_heap_held_mb": round(after["malloc"]["free"] / MB, 1)
            if after.get("malloc") else None,
            "rss_after_trim_mb": round(trimmed[-1]["rss_after_trim"] / MB, 1)
            if trimmed else None}


def _kind(reason: str) -> str:
    """A drop reason without the piece number, to count alike ones together."""
    return reason.split(" for piece ")[0]


def report(r: dict) -> str:
    t = r["tally"]
    lines = [
        f"soak: {r['minutes']:g} min, {r['fetchers']} fetchers (at most {r['concurrent']} at "
        f"once) against 2 seeders at {r['rate']}/s each, {r['size'] / 2**20:g} MiB file",
        f"fetches started {t['starts']}: completed {t['completed']} "
        f"(byte-identical {t['identical']}), SIGTERM {t['terms']}, SIGKILL {t['kills']} "
        f"({t['finished_before_signal']} finished before their signal, "
        f"{t['finished_at_signal']} just as it came), "
        f"stopped at the end {t['stopped_at_end']}",
        f"resumes {t['resumes']} ({t['resumed_pieces']} pieces found in .part files); "
        f"bytes lost {t['lost']}; broken final files left by interrupted fetches "
        f"{t['leftover_final']}",
        f"completion time median {r['completion_s']['median']} s, "
        f"max {r['completion_s']['max']} s",
        f"unexpected exits: {len(r['unexpected'])}"
        + "".join(f"\n  {u}" for u in r["unexpected"][:10]),
        f"seeders alive at the end: {r['seeders_alive']}; let go of every fetcher "
        + (f"{r['seeders_released_fetchers_s']} s after the end"
           if r["seeders_released_fetchers_s"] is not None else "NOT within 60 s"),
        f"peers dropped by the seeders: {r['dropped_by_seeders'] or 'none'}",
        f"peers dropped by the fetchers: {r['dropped_by_fetchers'] or 'none'}",
        "",
        "seeder RSS (MB) over time:",
        "     t s  phase     running  done  seed1 RSS  seed2 RSS  seed1 peers  seed2 peers",
    ]
    for s in r["samples"]:
        rs = [f"{x / MB:9.1f}" if x else "        -" for x in s["rss"]]
        ps = [f"{x!s:>11}" for x in s["peers"]]
        lines.append(f"  {s['t']:6.1f}  {s['phase']:<8} {s['running']:8} {s['completed']:5}  "
                     f"{rs[0]}  {rs[1]}  {ps[0]}  {ps[1]}")
    lines.append("")
    for i, s in enumerate(r["seeders"], 1):
        lines.append(f"seed{i}: idle {s['idle_mb']} MB, max {s['max_mb']} MB during the soak "
                     f"(+{s['growth_mb']} MB), {s['final_mb']} MB after every fetcher left")
    verdict = "within" if r["growth_ok"] else "EXCEEDS"
    lines.append(f"max RSS growth {r['rss_growth_mb']} MB: {verdict} the {r['bound_mb']:g} MB "
                 "bound")
    for i, pr in enumerate(r.get("probes", []), 1):
        for k in ("first", "peak", "last"):
            if k in pr:
                b = pr[k]
                lines.append(
                    f"seed{i} probe {k}: RSS {b['rss_mb']} MB, heap in use {b['heap_in_use_mb']}"
                    f" MB, free but held {b['heap_free_mb']} MB, mmapped {b['mmapped_mb']} MB, "
                    f"traced {b['traced_mb']} MB, tasks {b['tasks']}, objects {b['objects']}")
        if "after_trim_mb" in pr:
            lines.append(f"seed{i} probe: {pr['after_trim_mb']} MB after malloc_trim(0)")
        for g in pr.get("top_growth", []):
            lines.append(f"    {g['diff'] / MB:+7.2f} MB {g['where']}")
    for i, rel in enumerate(r.get("released", []), 1):
        lines.append(
            f"seed{i} after every fetcher left: caches hold {rel.get('caches_mb')} MB, heap in "
            f"use beyond idle + caches {rel.get('heap_beyond_caches_mb')} MB, free heap kept "
            f"by the allocator {rel.get('free_heap_held_mb')} MB, RSS after malloc_trim "
            f"{rel.get('rss_after_trim_mb')} MB: "
            + ("all released" if rel["ok"] else "NOT RELEASED: " + "; ".join(rel["why"])))
    if "kept" in r:
        lines.append(f"(kept {r['kept']} for inspection)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="how long fetchers churn")
    ap.add_argument("--fetchers", type=int, default=20, help="fetcher identities")
    ap.add_argument("--concurrent", type=int, default=6, help="most fetchers at once")
    ap.add_argument("--size", type=parse_size, default=8 << 20, help="file size (K/M/G)")
    ap.add_argument("--rate", default="1M", help="each seeder's --max-upload-rate")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--bound", type=float, default=None,
                    help="allowed RSS growth, MB (default: the piece cache's bound for this "
                    f"file, min(size, 64 MiB), plus {WORKING_ALLOWANCE_MB:g} MB)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the schedule")
    ap.add_argument("--probe", action="store_true",
                    help="run the seeders under benchmarks/memprobe.py and report what holds "
                    "their memory (live peer objects, tasks, heap in use vs free)")
    ap.add_argument("--probe-every", type=float, default=30.0,
                    help="seconds between probes (a probe pauses the seeder for a moment)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args(argv)
    if args.bound is None:
        args.bound = round(min(args.size, PieceCache().max_bytes) / MB + WORKING_ALLOWANCE_MB, 1)
    r = run(args)
    print(json.dumps(r, indent=2) if args.json else report(r))
    ok = (not r["unexpected"] and r["tally"]["lost"] == 0 and r["growth_ok"]
          and all(rel["ok"] for rel in r.get("released", []))
          and all(r["seeders_alive"]) and r["tally"]["leftover_final"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
