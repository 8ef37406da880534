"""Time to first byte of `p2p stream magnet:...` against WebTorrent's time to first peer.

Issue 17's closing figure. One WebTorrent 2.8.5 seeder (node, tests/js/wt_timing.mjs) and
the real bittorrent-tracker on loopback; each round runs, one after the other and in
alternating order, against that same seeder:

  p2p          `p2p stream MAGNET --player none --json` in a fresh directory; as soon as
               it prints its URL, a GET of the URL (what a player does). Its time to first
               byte is the `first-byte` event's `seconds` (from the command's start, the
               interpreter's start-up not counted: the stream's own clock), and, "spawn",
               the first body byte's arrival at our GET since our Popen (start-up
               included). The stream is then stopped (SIGTERM).
  WebTorrent   `wt_timing.mjs leech` (a node WebTorrent client adding the magnet): its
               first 'wire' event (a peer past the BitTorrent handshake) from client.add,
               and, "spawn", from node's own start. It downloads the whole file.

Both sides fire the end-of-candidates event a browser fires (--end-of-candidates 1;
without it simple-peer in node waits 5 s per offer and answer: tests/js/wt_timing.mjs).
Prints per round, then medians (min-max) and the ratio of medians, p2p's first byte over
WebTorrent's first peer, with the range of the rounds' own ratios (the run's noise).

    .venv/bin/python benchmarks/magnet_stream.py [--runs 5] [--size 4M] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import P2P, make_file, stop_group  # noqa: E402

JS = ROOT / "tests" / "js"
WT = JS / "wt_timing.mjs"
PIECE = 16 * 1024  # as benchmarks/rendezvous.py: the first piece is the first usable bytes


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def first_json_line(p: subprocess.Popen, timeout: float) -> dict:
    """The first line a server or seeder prints (JSON), within `timeout`."""
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    os.set_blocking(p.stdout.fileno(), False)
    buf = b""
    while b"\n" not in buf:
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError(f"{p.args[:3]} printed nothing within {timeout:g} s")
        buf += p.stdout.read() or b""
        time.sleep(0.05)
    return json.loads(buf.split(b"\n")[0])


def p2p_round(magnet: str, work: Path, timeout: float) -> dict:
    d = Path(tempfile.mkdtemp(dir=work, prefix="p2p-"))
    err = open(d / "stderr", "wb")  # closed below, after the process
    t0 = time.monotonic()
    p = subprocess.Popen([P2P, "stream", magnet, "--player", "none", "--json", "--ice-host",
                          "127.0.0.1", "--timeout", str(timeout)], cwd=d,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                         start_new_session=True)
    try:
        assert p.stdout is not None
        url = p.stdout.readline().decode().strip()
        with urllib.request.urlopen(url, timeout=timeout) as r:
            if not r.read(1):
                raise RuntimeError("the stream URL gave no byte")
            spawn = time.monotonic() - t0
    finally:
        stop_group(p, grace=15)
        err.close()
    events = [json.loads(x) for x in (d / "stderr").read_text().splitlines()
              if x.startswith("{")]
    fb = next(e for e in events if e["event"] == "first-byte")
    peer = next(e for e in events if e["event"] == "peer-joined")
    shutil.rmtree(d, ignore_errors=True)
    return {"first_byte_s": fb["seconds"], "peer_s": peer["t"], "spawn_s": round(spawn, 3)}


def wt_round(magnet: str, work: Path, timeout: float) -> dict:
    out = Path(tempfile.mkdtemp(dir=work, prefix="wt-"))
    run = subprocess.run(["node", str(WT), "leech", "--magnet", magnet, "--out", str(out),
                          "--bind", "127.0.0.1", "--end-of-candidates", "1", "--timeout",
                          str(timeout)], capture_output=True, text=True, timeout=timeout + 30)
    shutil.rmtree(out, ignore_errors=True)
    if run.returncode != 0:
        raise RuntimeError(f"WebTorrent leecher: exit {run.returncode}: {run.stderr[-400:]}")
    r = json.loads(run.stdout.splitlines()[-1])
    return {"wire_s": r["wire_s"], "spawn_s": r["since_start"]["wire_s"],
            "first_block_s": r["first_block_s"]}


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds (each: one of each)")
    ap.add_argument("--size", type=parse_size, default=4 << 20, help="file size (K/M/G)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args(argv)
    if not (JS / "node_modules" / "webtorrent").is_dir():
        ap.error("tests/js has no webtorrent: run `npm ci` in tests/js first")
    work = Path(tempfile.mkdtemp(prefix="p2p-magnet-stream-"))
    procs: list[subprocess.Popen] = []
    rounds: list[dict] = []
    failed: list[str] = []
    try:
        src = make_file(work / "src.bin", args.size)
        tracker = subprocess.Popen(["node", str(JS / "ws_tracker.mjs"), "127.0.0.1"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(tracker)
        url = f"ws://127.0.0.1:{first_json_line(tracker, 30)['port']}"
        seed = subprocess.Popen(["node", str(WT), "seed", "--file", str(src), "--announce",
                                 url, "--piece-length", str(PIECE), "--bind", "127.0.0.1",
                                 "--end-of-candidates", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        procs.append(seed)
        magnet = first_json_line(seed, 60)["magnet"]
        load = [os.getloadavg()[0]]
        i = 0
        while len(rounds) < args.runs and i < 2 * args.runs:
            order = ["p2p", "webtorrent"] if i % 2 == 0 else ["webtorrent", "p2p"]
            i += 1
            r: dict = {"order": order}
            try:
                for who in order:
                    r[who] = (p2p_round if who == "p2p" else wt_round)(magnet, work,
                                                                       args.timeout)
            except (RuntimeError, OSError, StopIteration, subprocess.TimeoutExpired) as e:
                # A failed connection is no time to first byte: the round is counted as
                # failed (reported) and run again, up to twice the rounds asked for.
                failed.append(f"round {i}, {who}: {str(e)[-300:]}")
                if not args.json:
                    print(f"round {i}: {who} failed: {str(e)[-300:]}", flush=True)
                continue
            rounds.append(r)
            if not args.json:
                print(f"round {i}: p2p first byte {r['p2p']['first_byte_s']:.3f} s "
                      f"(spawn {r['p2p']['spawn_s']:.3f}), WebTorrent first peer "
                      f"{r['webtorrent']['wire_s']:.3f} s (spawn "
                      f"{r['webtorrent']['spawn_s']:.3f}); {' then '.join(order)}", flush=True)
        load.append(os.getloadavg()[0])
    finally:
        for p in reversed(procs):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    p_fb = [r["p2p"]["first_byte_s"] for r in rounds]
    w_peer = [r["webtorrent"]["wire_s"] for r in rounds]
    p_sp = [r["p2p"]["spawn_s"] for r in rounds]
    w_sp = [r["webtorrent"]["spawn_s"] for r in rounds]
    summary = {
        "size": args.size, "runs": len(rounds), "load_1min": load, "rounds": rounds,
        "failed": failed,
        "p2p_first_byte_s": statistics.median(p_fb),
        "webtorrent_first_peer_s": statistics.median(w_peer),
        "ratio": statistics.median(p_fb) / statistics.median(w_peer),
        "round_ratios": [a / b for a, b in zip(p_fb, w_peer, strict=True)],
        "p2p_spawn_s": statistics.median(p_sp), "webtorrent_spawn_s": statistics.median(w_sp),
        "spawn_ratio": statistics.median(p_sp) / statistics.median(w_sp),
        "spawn_round_ratios": [a / b for a, b in zip(p_sp, w_sp, strict=True)],
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    ratios, sp = summary["round_ratios"], summary["spawn_round_ratios"]
    print(f"\n{args.size} bytes, {PIECE // 1024} KiB pieces, loopback, one WebTorrent seeder; "
          f"medians (min-max) of {len(rounds)}; 1-min load {load[0]:.2f} -> {load[1]:.2f}; "
          f"{len(failed)} failed rounds run again")
    print(f"  p2p stream first byte      {med(p_fb)}   from spawn {med(p_sp)}")
    print(f"  WebTorrent first peer      {med(w_peer)}   from spawn {med(w_sp)}")
    print(f"  ratio of medians           {summary['ratio']:.2f} (rounds {min(ratios):.2f}-"
          f"{max(ratios):.2f})   from spawn {summary['spawn_ratio']:.2f} (rounds "
          f"{min(sp):.2f}-{max(sp):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
