"""Memory of a download to a pipe: `p2p fetch -o -` of a large file, peak RSS and spool.

One seeder and one `p2p fetch LINK -o -` on loopback. The content is generated (a 1 MiB
random block repeated with each MiB's index stamped in, so every piece differs) and hashed
by the seeder first. The fetcher's stdout goes to a reader that is fast (discards at once)
or slow (`--reader-rate`, bytes/s: the download runs ahead until its read-ahead window is
full, the case that would fill memory or disk if anything were unbounded). Sampled every
0.1 s: the fetch process's RSS (and its peak, VmHWM, at the end) and the disk use of its
private temp directory (TMPDIR), where the spool ring lives.

    python benchmarks/pipe_memory.py --size 4G [--reader-rate 200M] [--json]

Compared with, in the same run: the seeder's RSS (the same stack, no spool), and the
README's bound for the spool (the read-ahead window: 32 MiB, or 8 pieces when pieces are
larger than 4 MiB). Every process is stopped and the generated file removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

P2P = str(Path(sys.executable).parent / "p2p")
LOOP = ["--ice-host", "127.0.0.1"]
MIB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in units else ""
    return int(float(t[: len(t) - len(unit)]) * units[unit])


def make_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as f:
        for i in range(-(-size // MIB)):
            block[:8] = i.to_bytes(8, "big")
            f.write(block[: min(MIB, size - i * MIB)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def disk_use(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # the ring may go meanwhile
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def read_all(stream, rate: float | None, out: dict) -> None:
    n, t0 = 0, time.monotonic()
    while chunk := stream.read(MIB):
        n += len(chunk)
        if rate:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    out["bytes"] = n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="4G")
    ap.add_argument("--reader-rate", default=None, help="bytes/s the reader takes (default: "
                    "as fast as it comes)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    size = parse_size(args.size)
    rate = parse_size(args.reader_rate) if args.reader_rate else None
    work = Path(tempfile.mkdtemp(prefix="p2p-pipemem-"))
    tmp = work / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "P2P_CACHE_DIR": str(work / "cache"), "P2P_LAN": "0"}  # no mDNS
    procs: list[subprocess.Popen] = []
    try:
        src = work / "big.bin"
        make_file(src, size)
        port = free_port()
        sig = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen(
            [P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
            cwd=work, env=env, start_new_session=True, stdin=subprocess.DEVNULL))
        time.sleep(1.0)
        seed = subprocess.Popen([P2P, "seed", str(src), "--signal", sig, *LOOP, "--quiet"],
                                cwd=work, env=env, stdout=subprocess.PIPE,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        procs.append(seed)
        assert seed.stdout is not None
        link = seed.stdout.readline().decode().strip()  # after hashing
        t0 = time.monotonic()
        fetch = subprocess.Popen(
            [P2P, "fetch", link, *LOOP, "-o", "-", "--quiet", "--timeout", "30"],
            cwd=work, env={**env, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, stdin=subprocess.DEVNULL)
        procs.append(fetch)
        got: dict = {}
        reader = threading.Thread(target=read_all, args=(fetch.stdout, rate, got), daemon=True)
        reader.start()
        fp, sp = psutil.Process(fetch.pid), psutil.Process(seed.pid)
        rss_max = seed_rss_max = spool_max = 0
        hwm = 0
        while fetch.poll() is None:
            try:
                rss_max = max(rss_max, fp.memory_info().rss)
                with open(f"/proc/{fetch.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = int(line.split()[1]) * 1024
                seed_rss_max = max(seed_rss_max, sp.memory_info().rss)
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                break
            spool_max = max(spool_max, disk_use(tmp))
            time.sleep(0.1)
        code = fetch.wait(60)
        seconds = time.monotonic() - t0
        reader.join(60)
        err = fetch.stderr.read().decode() if fetch.stderr else ""
        left = list(tmp.iterdir())
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    piece = 1 << max(14, min(24, (-(-size // 1024) - 1).bit_length()))
    window = max(8, 32 * MIB // piece) * piece
    result = {
        "size": size, "piece_size": piece, "reader_rate": rate, "exit": code,
        "bytes_read": got.get("bytes"), "seconds": round(seconds, 1),
        "fetch_peak_rss_mb": round(max(hwm, rss_max) / 1e6, 1),
        "seeder_peak_rss_mb": round(seed_rss_max / 1e6, 1),
        "spool_peak_mb": round(spool_max / 1e6, 1),
        "spool_bound_mb": round(window / 1e6, 1), "temp_left": len(left),
    }
    if code != 0 or got.get("bytes") != size:
        result["stderr"] = err[-2000:]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:20} {v}")


if __name__ == "__main__":
    main()
