"""How fast `p2p seed DIR` hashes a folder, against a bare loop that walks the same tree
and hashes every file with hashlib; and what the two piece layouts cost (issue 16).

    python benchmarks/tree_hashing.py [--files 100000] [--big 10G] [--runs 3] [--dir /tmp]
                                      [--only small|big] [--keep-small DIR]

Builds two trees in a temporary folder under --dir:

  small  --files files of 0..8 KiB (uniform, 4 KiB on average) in folders of 1,000
  big    one folder holding one --big file (a 16 MiB random block repeated: hashing does not
         care, and writing it takes seconds rather than minutes)

then reads each once (warm page cache, so both variants start alike) and times, per tree,
`--runs` rounds of these variants, interleaved so drift from other load hits them alike:

  bare       os.walk; for each file: open, read 1 MiB chunks into hashlib.sha256, close.
             The floor any tree hasher pays: a small-file tree is bound by opening files
  hash_tree  p2pcli.tree.hash_tree(use_cache=False) with a progress callback (as the CLI's
             bar): the walk with stat, the name checks, pieces across files, two threads
  1 thread   hash_tree(workers=1)
  cache miss hash_tree as `p2p seed` calls it (use_cache=True) with the manifest cache
             emptied before each round: adds the cache key and writing the manifest

It prints the median wall seconds and median CPU seconds (user+system, all threads of this
process) of each, and the ratios to bare of the same run. Then the layout figures for the
small tree, counted from its real file sizes: manifest bytes and piece count with pieces
across file boundaries (what p2p does) and with pieces aligned per file (each file starts
a new piece), and what that means on the wire (one REQUEST, PIECE header and HAVE per
piece at least), plus the CPU of hashing per file (a hash object per file) measured here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from p2pcli.manifest import piece_size_for
from p2pcli.tree import hash_tree

MiB = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def make_small(root: Path, n: int) -> None:
    rng = random.Random(16)
    blob = rng.randbytes(8192)
    for i in range(n):
        d = root / f"d{i // 1000:03}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        size = rng.randrange(0, 8193)
        at = rng.randrange(0, 8193 - size) if size < 8192 else 0
        (d / f"f{i:06}.txt").write_bytes(blob[at : at + size])


def make_big(root: Path, size: int) -> None:
    root.mkdir(parents=True)
    block = os.urandom(16 * MiB)
    with open(root / "big.bin", "wb") as f:
        left = size
        while left:
            n = f.write(block[: min(left, len(block))])
            left -= n


def bare(root: Path) -> None:
    buf = bytearray(MiB)
    view = memoryview(buf)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            h = hashlib.sha256()
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
            h.digest()


def per_file_pieces(root: Path, piece_size: int) -> int:
    """Hash every file into its own pieces (the per-file layout); returns the piece count."""
    pieces = 0
    buf = bytearray(piece_size)
    view = memoryview(buf)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    hashlib.sha256(view[:n]).digest()
                    pieces += 1
    return pieces


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    c0, t0 = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


def bench(root: Path, runs: int) -> dict[str, list[tuple[float, float]]]:
    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1

    variants: dict[str, Callable[[], object]] = {
        "bare": lambda: bare(root),
        "hash_tree": lambda: hash_tree([str(root)], progress, use_cache=False),
        "1 thread": lambda: hash_tree([str(root)], progress, use_cache=False, workers=1),
        "cache miss": lambda: hash_tree([str(root)], progress),
    }
    bare(root)  # warm the page cache
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            if name == "cache miss":  # untimed: a first seed finds no manifest cached
                shutil.rmtree(os.environ["P2P_CACHE_DIR"], ignore_errors=True)
            out[name].append(timed(fn))
    out["progress calls per run"] = [(calls[0] / (3 * runs), 0.0)]
    return out


def report(title: str, res: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n{title}")
    base_w = statistics.median(w for w, _ in res["bare"])
    base_c = statistics.median(c for _, c in res["bare"])
    print(f"  {'variant':10} {'wall s (median)':>16} {'CPU s (median)':>15} "
          f"{'wall vs bare':>13} {'CPU vs bare':>12}   all runs wall")
    for name, vals in res.items():
        if name.startswith("progress"):
            print(f"  progress callbacks per hash_tree run: {vals[0][0]:.0f}")
            continue
        w = statistics.median(v for v, _ in vals)
        c = statistics.median(v for _, v in vals)
        runs = " ".join(f"{v:.2f}" for v, _ in vals)
        print(f"  {name:10} {w:16.3f} {c:15.3f} {w / base_w:13.2f} {c / base_c:12.2f}   {runs}")


def layout(root: Path) -> None:
    sizes, paths = [], 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            sizes.append(os.path.getsize(p))
            paths += len(os.path.relpath(p, root).encode())
    total = sum(sizes)
    ps = piece_size_for(total)
    entries = 8 + 4 + len(sizes) * (1 + 2 + 8) + paths  # header, count, entries (no root)
    across = -(-total // ps)
    aligned = sum(-(-s // ps) for s in sizes)
    print(f"\nlayout, {len(sizes)} files, {total} bytes, piece size {ps}")
    for name, n in (("across files", across), ("aligned per file", aligned)):
        wire = n * (13 + 9 + 5)  # REQUEST + PIECE header + HAVE, per piece, at least
        print(f"  {name:17} pieces {n:8}   manifest {entries + 32 * n:10} bytes "
              f"(hashes {32 * n})   per-piece wire bytes >= {wire}")
    w, c = timed(lambda: per_file_pieces(root, ps))
    wa, ca = timed(lambda: hash_tree([str(root)], use_cache=False, workers=1))
    print(f"  hashing, one thread, same run: aligned per file {w:.3f} s wall {c:.3f} s CPU; "
          f"across files (hash_tree) {wa:.3f} s wall {ca:.3f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--big", default="10G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--only", choices=["small", "big"], default=None)
    ap.add_argument("--keep-small", metavar="DIR", default=None,
                    help="make the small tree in DIR if it is missing, and keep it for the "
                         "next run (writing 100,000 files took 3-90 s on a shared disk)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p2p-treebench-", dir=args.dir))
    os.environ["P2P_CACHE_DIR"] = str(work / "cache")
    try:
        if args.only in (None, "small"):
            small = Path(args.keep_small) if args.keep_small else work / "small"
            if not small.exists():
                t = time.perf_counter()
                make_small(small, args.files)
                print(f"made {args.files} small files in {time.perf_counter() - t:.1f} s")
            report(f"{sum(len(f) for _, _, f in os.walk(small))} small files",
                   bench(small, args.runs))
            layout(small)
            if not args.keep_small:
                shutil.rmtree(small)
        if args.only in (None, "big"):
            size = parse_size(args.big)
            t = time.perf_counter()
            make_big(work / "big", size)
            print(f"made one {size} byte file in {time.perf_counter() - t:.1f} s")
            report(f"one file of {size} bytes", bench(work / "big", args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
