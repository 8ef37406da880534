"""Issue 17's closing figures: one torrent (256 MiB by default) fetched from one WebTorrent
seeder by `p2p fetch magnet:` and by WebTorrent's own leecher, with a bare aiortc channel
moving the same bytes beside them, all in one run.

One WebTorrent 2.8.5 seeder (tests/js/wt_timing.mjs seed, node) announces to the real
bittorrent-tracker (tests/js/ws_tracker.mjs) on loopback. Each round runs, one after the
other (never at once: 2 cores), in this order: `p2p fetch MAGNET -o FILE --json`, then
`node wt_timing.mjs leech`, then benchmarks/bare_channel.py's `run()` (two processes, one
channel, the same byte count, 64 KiB messages). Rounds alternate the first two's order, so
neither always runs on a machine warmed (or loaded) by the other.

Per download:
  end_s        the process's start -> its exit, by this script's clock (start-up, the
               tracker, ICE, metadata, the transfer, the finish)
  connected_s  first peer connected -> the whole file verified, by the process's own clock:
               p2p's first `peer-joined` event -> its `done` event; WebTorrent's first
               'wire' event -> 'done'. The bare channel: its transfer_s (first send -> ack)
  cpu_s_per_gib  user+sys CPU of the downloading process (os.wait4; its whole life,
               start-up included) per GiB; the bare channel: its receiver's whole life too
               (and transfer_cpu_s_per_gib: its transfer phase alone)
Printed: one JSON line per download, then the medians and the ratios p2p / WebTorrent and
p2p / bare. The seeder's CPU is not counted. Every downloaded file is compared to the source.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/magnet_256.py [--mib 256] [--rounds 3]

Needs node and `npm ci` in tests/js. Loopback only; no root, no namespace.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
GIB = 2**30


def _node_json(proc: subprocess.Popen, what: str, timeout: float = 60) -> dict:
    """The first stdout line of a node helper, as JSON."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        raise RuntimeError(f"{what} printed nothing")
    return json.loads(line)


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Exit status and user+sys CPU seconds of a child (os.wait4), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{proc.args[:2]} still running after {timeout} s")
        time.sleep(0.05)


def fetch_p2p(magnet: str, out: Path, size: int) -> dict:
    p2p = [str(Path(sys.executable).parent / "p2p")]  # the venv's script
    err = out.with_suffix(".err")
    t0 = time.monotonic()
    with open(err, "wb") as e:
        proc = subprocess.Popen([*p2p, "fetch", magnet, "-o", str(out), "--ice-host",
                                 "127.0.0.1", "--json", "--timeout", "60"], stderr=e,
                                stdout=subprocess.DEVNULL)
        code, cpu = _wait(proc, 600)
    end = time.monotonic() - t0
    if code:
        raise RuntimeError(f"p2p fetch exited {code}: {err.read_text()[-2000:]}")
    events = [json.loads(x) for x in err.read_text().splitlines() if x.startswith("{")]
    joined = min(e["t"] for e in events if e["event"] == "peer-joined")
    done = next(e["t"] for e in events if e["event"] == "done")
    return {"who": "p2p", "end_s": round(end, 3), "connected_s": round(done - joined, 3),
            "cpu_s": round(cpu, 3), "cpu_s_per_gib": round(cpu * GIB / size, 2)}


def fetch_wt(magnet: str, out: Path, size: int) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen(["node", str(JS / "wt_timing.mjs"), "leech", "--magnet", magnet,
                             "--out", str(out), "--bind", "127.0.0.1", "--end-of-candidates",
                             "1", "--timeout", "500"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    code, cpu = _wait(proc, 600)
    end = time.monotonic() - t0
    if code:
        raise RuntimeError(f"WebTorrent's leecher exited {code}")
    r = json.loads(text.splitlines()[-1])
    return {"who": "webtorrent", "end_s": round(end, 3),
            "connected_s": round(r["done_s"] - r["wire_s"], 3),
            "first_block_to_done_s": round(r["done_s"] - r["first_block_s"], 3),
            "cpu_s": round(cpu, 3), "cpu_s_per_gib": round(cpu * GIB / size, 2)}


def bare(size: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from benchmarks.bare_channel import run

    r = run(size, msg_size=65536)
    # cpu_s_per_gib over the receiver's whole life, as for the two downloaders
    return {"who": "bare", "connected_s": round(r["transfer_s"], 3),
            "cpu_s_per_gib": round(r["receiver"]["cpu_whole_s"] * GIB / size, 2),
            "transfer_cpu_s_per_gib": round(r["receiver"]["cpu_s_per_gib"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-bare", action="store_true", help="skip the bare aiortc channel")
    args = ap.parse_args()
    size = args.mib * 2**20
    work = Path(tempfile.mkdtemp(prefix="magnet256-"))
    procs: list[subprocess.Popen] = []
    rows: list[dict] = []
    try:
        src = work / "src.bin"
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(2**20))
        tracker = subprocess.Popen(["node", str(JS / "ws_tracker.mjs"), "127.0.0.1"],
                                   stdout=subprocess.PIPE, text=True)
        procs.append(tracker)
        url = f"ws://127.0.0.1:{_node_json(tracker, 'the tracker')['port']}"
        seeder = subprocess.Popen(["node", str(JS / "wt_timing.mjs"), "seed", "--file", str(src),
                                   "--announce", url, "--bind", "127.0.0.1",
                                   "--end-of-candidates", "1"], stdout=subprocess.PIPE,
                                  text=True)
        procs.append(seeder)
        magnet = _node_json(seeder, "the seeder", 300)["magnet"]
        print(json.dumps({"mib": args.mib, "loadavg": os.getloadavg()}), flush=True)
        for i in range(args.rounds):
            order = ["p2p", "webtorrent"] if i % 2 == 0 else ["webtorrent", "p2p"]
            for who in order:
                out = work / f"{who}{i}"
                if who == "p2p":
                    row = fetch_p2p(magnet, out, size)
                    got = out
                else:
                    row = fetch_wt(magnet, out, size)
                    got = out / "src.bin"
                if not filecmp.cmp(got, src, shallow=False):
                    raise RuntimeError(f"{who}'s copy differs from the source")
                shutil.rmtree(out) if out.is_dir() else out.unlink()
                row["round"] = i
                rows.append(row)
                print(json.dumps(row), flush=True)
            if not args.no_bare:
                row = bare(size) | {"round": i}
                rows.append(row)
                print(json.dumps(row), flush=True)
        med = {}
        for who in ("p2p", "webtorrent", "bare"):
            mine = [r for r in rows if r["who"] == who]
            if mine:
                med[who] = {k: statistics.median(r[k] for r in mine)
                            for k in mine[0] if k not in ("who", "round")}
        ratios = {f"p2p/{other}": {k: round(med["p2p"][k] / med[other][k], 2)
                                   for k in ("end_s", "connected_s", "cpu_s_per_gib")
                                   if k in med[other]}
                  for other in ("webtorrent", "bare") if other in med}
        print(json.dumps({"medians": med, "ratios": ratios, "loadavg": os.getloadavg()}))
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
