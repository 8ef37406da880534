"""How fast `p2p seed` hashes a file, against a bare hashlib loop over the same file.

    python benchmarks/hashing.py [--size 512M] [--runs 3] [--dir /tmp]

Writes a temporary file of random bytes, reads it once so every variant starts from a warm
page cache, then times each variant `--runs` times, interleaved (so drift from other load on
the machine hits every variant alike), and reports the median:

  bare      the minimal implementation: 1 MiB reads, one hashlib.sha256 per piece
  hash_file p2pcli.hashing.hash_file(path, use_cache=False): two threads when there are
            two CPUs, each hashing 4 MiB runs of whole pieces (hashlib releases the GIL)
  1 thread  hash_file's single-threaded path (hash_pieces with workers=1)
  +rich     hash_file with a rich progress bar on a stderr Console as its callback, as the CLI
  cached    hash_file on a file whose manifest is already cached (what re-seeding costs)

MB/s is 10^6 bytes per second of wall time (median, and best of the runs); CPU is the
median user+system seconds of this process, all threads. "vs bare" compares medians.
On a shared machine wall time is noisy; CPU seconds are the steadier comparison.
The cache lives in a temporary P2P_CACHE_DIR, never the user's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from p2pcli.hashing import hash_file, hash_pieces
from p2pcli.manifest import piece_size_for

MiB = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MiB):
            pass


def bare_loop(path: Path, piece_size: int) -> list[bytes]:
    """What anyone would write first: 1 MiB reads, a fresh sha256 at each piece boundary."""
    hashes: list[bytes] = []
    buf = bytearray(MiB)
    view = memoryview(buf)
    h = hashlib.sha256()
    filled = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            pos = 0
            while pos < n:
                take = min(piece_size - filled, n - pos)
                h.update(view[pos : pos + take])
                pos += take
                filled += take
                if filled == piece_size:
                    hashes.append(h.digest())
                    h = hashlib.sha256()
                    filled = 0
    if filled:
        hashes.append(h.digest())
    return hashes


def single_thread(path: Path, piece_size: int) -> list[bytes]:
    with open(path, "rb", buffering=0) as f:
        return hash_pieces(f, path.stat().st_size, piece_size, workers=1)


@dataclass
class Sample:
    wall: float
    cpu: float


def timed(fn: Callable[[], object]) -> tuple[Sample, object]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return Sample(time.perf_counter() - t0, time.process_time() - cpu0), result


def rich_hash(path: Path) -> object:
    """hash_file with the progress bar the CLI shows while seeding (cli/output.py)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("hashing", total=path.stat().st_size)
        calls = 0

        def progress(done: int, total: int) -> None:
            nonlocal calls
            calls += 1
            bar.update(task, completed=done)

        m = hash_file(path, progress, use_cache=False)
    rich_hash.calls = calls  # type: ignore[attr-defined]
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512M", help="test file size, e.g. 512M, 2G (default 512M)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per variant (median taken)")
    ap.add_argument("--dir", default=None, help="where to put the temp file (default: $TMPDIR)")
    args = ap.parse_args()
    size = parse_size(args.size)
    piece_size = piece_size_for(size)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="p2p-bench-") as tmp:
        os.environ["P2P_CACHE_DIR"] = str(Path(tmp) / "cache")
        path = Path(tmp) / "data.bin"
        print(f"writing {size / 1e6:.0f} MB of random bytes to {path} ...", file=sys.stderr)
        write_random_file(path, size)
        warm(path)
        expected = bare_loop(path, piece_size)

        hash_file(path)  # fills the cache for the "cached" variant
        variants: dict[str, Callable[[], object]] = {
            "bare": lambda: bare_loop(path, piece_size),
            "hash_file": lambda: hash_file(path, use_cache=False),
            "1 thread": lambda: single_thread(path, piece_size),
            "+rich": lambda: rich_hash(path),
            "cached": lambda: hash_file(path),
        }
        samples: dict[str, list[Sample]] = {k: [] for k in variants}
        for _ in range(args.runs):
            for name, fn in variants.items():
                s, result = timed(fn)
                got = result if isinstance(result, list) else list(result.piece_hashes)
                assert got == expected, f"{name} computed different piece hashes"
                samples[name].append(s)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"file {size / 1e6:.0f} MB, piece size {piece_size // 1024} KiB, "
        f"{len(expected)} pieces, {args.runs} runs each, {os.cpu_count()} CPUs "
        f"(load average {load:.2f}), Python {sys.version.split()[0]}"
    )
    print(f"{'variant':<10} {'MB/s':>9} {'best':>9} {'vs bare':>8} {'wall s':>8} {'CPU s':>7}")
    bare_wall = statistics.median(s.wall for s in samples["bare"])
    for name, ss in samples.items():
        wall = statistics.median(s.wall for s in ss)
        best = min(s.wall for s in ss)
        cpu = statistics.median(s.cpu for s in ss)
        print(
            f"{name:<10} {size / wall / 1e6:>9.0f} {size / best / 1e6:>9.0f} "
            f"{bare_wall / wall:>8.0%} {wall:>8.3f} {cpu:>7.3f}"
        )
    print(f"progress callbacks per rich run: {getattr(rich_hash, 'calls', 0)}")


if __name__ == "__main__":
    main()
