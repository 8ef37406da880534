"""Measure how long peer exchange takes to bring a newcomer to a peer it was told about.

Not a test (tests never assert times): run it by hand for the figures in the pex report.
The scenario of tests/test_pex_e2e.py, over loopback: seeder A and fetcher B
(`--seed-after`) meet on a signaling server, which is killed; fetcher C knows only the
tracker B announced to (A never did). From C's events:

- `tracker join`: C's start (its reporter's clock, the `t` of its events) to its
  `peer-joined` for B: the baseline, from the same run. A tracker carries offers made in
  advance, so this is the tracker round trip, B's answer and ICE;
- `pex join`: C's `peer-joined` for B to its `peer-joined` for A (B's PEX, C making its
  offer, B relaying it, A's answer relayed back, ICE): what peer exchange adds;
- and the share of C's bytes that came from A.

    PYTHONPATH=$PWD python tests/helpers/pex_timing.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent.parent
P2P = str(Path(sys.executable).parent / "p2p")
ICE = ["--ice-host", "127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_line(p: subprocess.Popen, stream: str, what: str, timeout: float = 60) -> str:
    """The first line of `stream` (stdout/stderr) that contains `what`."""
    f = getattr(p, stream)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = f.readline().decode()
        if what in line:
            return line
        if not line and p.poll() is not None:
            break
    raise RuntimeError(f"no {what!r} from {p.args[:3]}")


def one_run(work: Path, tracker: str, size: int, env: dict) -> tuple[float, float, float]:
    procs: list[subprocess.Popen] = []

    def start(*args: str, out=subprocess.PIPE, err=subprocess.PIPE) -> subprocess.Popen:
        p = subprocess.Popen(list(args), stdout=out, stderr=err, env=env, cwd=work,
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        src = work / "src.bin"
        src.write_bytes(os.urandom(size))
        port = free_port()
        server = start(P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port),
                       out=subprocess.DEVNULL, err=subprocess.DEVNULL)
        time.sleep(1.5)
        a = start(P2P, "seed", str(src), *ICE, "--json", "--signal",
                  f"http://127.0.0.1:{port}", err=subprocess.DEVNULL)
        link = a.stdout.readline().decode().strip()  # type: ignore[union-attr]
        b = start(P2P, "fetch", link, *ICE, "--json", "-o", "b.bin", "--seed-after",
                  "--tracker", tracker, out=subprocess.DEVNULL)
        wait_line(b, "stderr", '"seeding"')
        server.kill()
        server.wait()
        content = link.split("://", 1)[1].split("?", 1)[0]
        c = start(P2P, "fetch", f"p2p://{content}?tr={quote(tracker, safe='')}", *ICE,
                  "--json", "-o", "c.bin", out=subprocess.DEVNULL)
        _, err = c.communicate(timeout=120)
        assert c.returncode == 0, err[-2000:]
        events = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
        joined = {e["peer"][:3]: e["t"] for e in events if e["event"] == "peer-joined"}
        done = next(e for e in events if e["event"] == "done")
        from_a = sum(n for p, n in done["peers"].items() if p.startswith("px:"))
        return joined["wt0"], joined["px:"] - joined["wt0"], from_a / done["received"]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=3_000_000)
    args = ap.parse_args()
    base = Path(f"/tmp/pex_timing_{os.getpid()}")
    env = {**os.environ, "P2P_LAN": "0", "PYTHONUNBUFFERED": "1",
           "P2P_CACHE_DIR": str(base / "cache")}
    node = shutil.which("node")
    assert node, "node is needed for the tracker (tests/js)"
    base.mkdir()
    tr = subprocess.Popen([node, str(ROOT / "tests/js/ws_tracker.mjs"), "127.0.0.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    try:
        port = json.loads(tr.stdout.readline())["port"]  # type: ignore[union-attr]
        tracker = f"ws://127.0.0.1:{port}"
        rows = []
        for i in range(args.runs):
            work = base / f"run{i}"
            work.mkdir()
            rows.append(one_run(work, tracker, args.size, env))
            print(f"run {i}: tracker join {rows[-1][0]:.3f}s  pex join +{rows[-1][1]:.3f}s  "
                  f"from A {rows[-1][2]:.0%}", flush=True)
        t, x, share = (list(c) for c in zip(*rows, strict=True))
        print(f"tracker join (baseline): median {statistics.median(t):.3f}s  "
              f"all {[round(v, 3) for v in t]}")
        print(f"pex join after it:       median {statistics.median(x):.3f}s  "
              f"all {[round(v, 3) for v in x]}")
        print(f"ratio pex/tracker: {statistics.median(x) / statistics.median(t):.2f}; "
              f"share of C's bytes from A: {[f'{s:.0%}' for s in share]}")
    finally:
        os.killpg(tr.pid, signal.SIGTERM)
        tr.wait(10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
