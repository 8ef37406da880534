"""p2p seed -> fetch throughput on loopback, beside a bare aiortc data channel in the same run.

The bare channel (benchmarks/bare_channel.py) is the stack's ceiling on this machine; the
ratio p2p / bare is the figure that means something on a noisy machine.

Scenarios (each over the same file, real `p2p` processes, real signaling server):
  bare     one aiortc data channel, 64 KiB messages (the ceiling)
  1to1     1 seeder  -> 1 fetcher
  2to1     2 seeders -> 1 fetcher
  1to3     1 seeder  -> 3 fetchers started together (time until all are done)

Per scenario: MB/s (file size / time; for 1to3, total bytes delivered / time until the last
is done), wall seconds from fetch start to exit and from manifest to done, CPU seconds per
GiB on the seeding and fetching sides, peak RSS. Every process is stopped at the end.

    python benchmarks/transfer.py [--size 256M] [--scenarios bare,1to1,2to1,1to3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bare_channel import run as run_bare  # noqa: E402

P2P = str(Path(sys.executable).parent / "p2p")
GIB = 1 << 30


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "P2P_CACHE_DIR": str(workdir / "cache")}

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        p = subprocess.Popen(
            args,
            stdout=open(self.workdir / f"{name}.out", "wb"),
            stderr=open(self.workdir / f"{name}.err", "wb"),
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def wait_line(self, name: str, timeout: float = 120) -> str:
        path = self.workdir / f"{name}.out"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text() if path.exists() else ""
            if text.strip():
                return text.strip().splitlines()[0]
            time.sleep(0.05)
        raise TimeoutError(f"{name} printed nothing: {(self.workdir / f'{name}.err').read_text()}")

    def events(self, name: str) -> list[dict]:
        out = []
        for line in (self.workdir / f"{name}.err").read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with _quiet():
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def p2p_scenario(workdir: Path, src: Path, seeders: int, fetchers: int) -> dict:
    r = Runner(workdir)
    size = src.stat().st_size
    try:
        port = free_port()
        r.start([P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                "signal")
        url = f"http://127.0.0.1:{port}"
        time.sleep(1.0)
        seed_ps = []
        link = ""
        for i in range(seeders):
            p = r.start([P2P, "seed", str(src), "--signal", url, "--ice-host", "127.0.0.1",
                         "--quiet"], f"seed{i}")
            link = r.wait_line(f"seed{i}", 600)  # first seeder hashes (cached after)
            seed_ps.append(psutil.Process(p.pid))
        seed_cpu0 = [cpu(p) for p in seed_ps]
        t0 = time.monotonic()
        fetch_ps = [
            r.start([P2P, "fetch", link, "--ice-host", "127.0.0.1", "-o", f"out{i}.bin",
                     "--json", "--timeout", "30"], f"fetch{i}")
            for i in range(fetchers)
        ]
        ps = [psutil.Process(p.pid) for p in fetch_ps]
        fetch_cpu = [0.0] * fetchers
        fetch_rss = [0] * fetchers
        pending = set(range(fetchers))
        while pending:
            for i in list(pending):
                try:
                    fetch_cpu[i] = cpu(ps[i])
                    fetch_rss[i] = max(fetch_rss[i], ps[i].memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
                if fetch_ps[i].poll() is not None:
                    pending.discard(i)
            if time.monotonic() - t0 > 900:
                raise TimeoutError("fetch took over 900 s")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        for i, p in enumerate(fetch_ps):
            if p.returncode != 0:
                raise RuntimeError(f"fetch{i} exited {p.returncode}: "
                                   f"{(workdir / f'fetch{i}.err').read_text()[-2000:]}")
        seed_cpu = sum(cpu(p) - c0 for p, c0 in zip(seed_ps, seed_cpu0, strict=True))
        seed_rss = max(p.memory_info().rss for p in seed_ps)
        transfer = []
        for i in range(fetchers):
            ev = r.events(f"fetch{i}")
            t_manifest = next(e["t"] for e in ev if e["event"] == "manifest")
            t_done = next(e["t"] for e in ev if e["event"] == "done")
            transfer.append(t_done - t_manifest)
            if (workdir / f"out{i}.bin").stat().st_size != size:
                raise RuntimeError("output size differs")
        delivered = size * fetchers
        return {
            "mb_per_s": round(delivered / wall / 1e6, 2),
            "mb_per_s_connected": round(delivered / max(transfer) / 1e6, 2),
            "wall_s": round(wall, 2),
            "transfer_s": round(max(transfer), 2),
            "seed_cpu_s_per_gib": round(seed_cpu / (delivered / GIB), 2),
            "fetch_cpu_s_per_gib": round(sum(fetch_cpu) / (delivered / GIB), 2),
            "seed_peak_rss_mb": round(seed_rss / 1e6, 1),
            "fetch_peak_rss_mb": round(max(fetch_rss) / 1e6, 1),
        }
    finally:
        r.stop_all()
        for f in workdir.glob("out*.bin"):
            f.unlink()


def bare_scenario(size: int) -> dict:
    res = run_bare(size, msg_size=65536, use_uvloop=None)
    s, rcv = res["sender"], res["receiver"]
    return {
        "mb_per_s": round(res["mb_per_s"], 2),
        "mb_per_s_connected": round(res["mb_per_s"], 2),
        "wall_s": round(res["transfer_s"], 2),
        "transfer_s": round(res["transfer_s"], 2),
        "seed_cpu_s_per_gib": round(s["cpu_s_per_gib"], 2),
        "fetch_cpu_s_per_gib": round(rcv["cpu_s_per_gib"], 2),
        "seed_peak_rss_mb": round(s["peak_rss_bytes"] / 1e6, 1),
        "fetch_peak_rss_mb": round(rcv["peak_rss_bytes"] / 1e6, 1),
    }


SCENARIOS = {"1to1": (1, 1), "2to1": (2, 1), "1to3": (1, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="256M", help="file size (K/M/G suffixes)")
    ap.add_argument("--scenarios", default="bare,1to1,2to1,1to3")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    size = parse_size(args.size)
    workdir = Path(tempfile.mkdtemp(prefix="p2p-bench-"))
    results: dict[str, dict] = {}
    try:
        src = workdir / "src.bin"
        with open(src, "wb") as f:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
            f.write(os.urandom(size % (1 << 20)))
        for name in args.scenarios.split(","):
            if name == "bare":
                results[name] = bare_scenario(size)
            else:
                results[name] = p2p_scenario(workdir, src, *SCENARIOS[name])
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = results.get("bare", {}).get("mb_per_s")
    if bare:
        for res in results.values():
            res["ratio_to_bare"] = round(res["mb_per_s"] / bare, 2)
    if args.json:
        print(json.dumps({"size": size, "results": results}, indent=2))
        return
    cols = ["mb_per_s", "ratio_to_bare", "mb_per_s_connected", "wall_s", "seed_cpu_s_per_gib",
            "fetch_cpu_s_per_gib", "seed_peak_rss_mb", "fetch_peak_rss_mb"]
    print(f"transfer of {size / 2**20:.0f} MiB on loopback")
    print("scenario  " + "  ".join(f"{c:>20}" for c in cols))
    for name, res in results.items():
        print(f"{name:<9} " + "  ".join(f"{res.get(c, ''):>20}" for c in cols))


if __name__ == "__main__":
    main()
