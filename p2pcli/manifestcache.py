"""The on-disk manifest cache, bounded: least recently used entries go first.

Seeding a file caches its manifest (hashing.py, tree.py) so seeding it again starts at once.
Each entry is keyed by path, size, mtime, inode and device, so every edited, moved or
deleted file leaves one behind that nothing will read again: the cache only grew. Now an
entry used is touched (its mtime is its last use), and each write prunes the least
recently used entries beyond MAX_ENTRIES or MAX_BYTES, and temporary files a crashed
writer left behind. A file's CRC tables (`CHECKS_SUFFIX`) live beside its manifest, with
a byte budget of their own, and go with it. `prune_plan` is the policy, on plain (name,
size, mtime) tuples.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_ENTRIES = 1000
"Manifests kept at most (one per file or folder seeded; a re-seed of each is instant)."
MAX_BYTES = 256 << 20
"""Bytes kept at most: a manifest is ~32 bytes a piece, 200 kB for a 64 GiB file at 1 MiB
pieces, so this holds the last thousand shares of any ordinary size."""
MAX_CHECKS_BYTES = 256 << 20
"""Bytes of CRC tables kept at most, apart from the manifests' budget: 4 bytes per 16 KiB,
so the tables of 1 TiB of content. Losing a table costs a SHA-256 per piece when serving;
losing a manifest costs hashing the whole file again, so tables never push one out."""
STALE_TMP = 3600.0
"Seconds after which a writer's temporary file is surely abandoned."

SUFFIX = ".manifest"
CHECKS_SUFFIX = ".checks"
"A file's CRC tables (hashing.py), kept and pruned like the manifests."
_KEPT = (SUFFIX, CHECKS_SUFFIX)


def prune_plan(entries: list[tuple[str, int, float]], now: float, *,
               max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES,
               max_checks_bytes: int = MAX_CHECKS_BYTES) -> list[str]:
    """Names to delete from (name, size, mtime) entries: stale temporaries, the least
    recently used manifests until at most `max_entries` and `max_bytes` remain, CRC tables
    whose manifest is gone, and the least recently used tables beyond `max_checks_bytes`."""
    doomed = [n for n, _, t in entries if not n.endswith(_KEPT) and now - t > STALE_TMP]
    manifests = [e for e in entries if e[0].endswith(SUFFIX)]
    doomed += _beyond(manifests, max_entries, max_bytes)
    kept = {n.removesuffix(SUFFIX) for n, _, _ in manifests} - {
        n.removesuffix(SUFFIX) for n in doomed}
    checks = [e for e in entries if e[0].endswith(CHECKS_SUFFIX)]
    # A table without its manifest is never read: a re-seed hashes and writes both again.
    doomed += [n for n, _, _ in checks if n.removesuffix(CHECKS_SUFFIX) not in kept]
    doomed += _beyond([e for e in checks if e[0].removesuffix(CHECKS_SUFFIX) in kept],
                      max_entries, max_checks_bytes)
    return doomed


def _beyond(entries: list[tuple[str, int, float]], max_entries: int, max_bytes: int
            ) -> list[str]:
    """The least recently used of `entries` beyond `max_entries` or `max_bytes`."""
    out = []
    total = 0
    for i, (name, size, _) in enumerate(sorted(entries, key=lambda e: -e[2])):
        total += size
        if i >= max_entries or total > max_bytes:
            out.append(name)
    return out


def read(path: Path) -> bytes:
    """An entry's bytes, marking it used (OSError when missing)."""
    data = path.read_bytes()
    with contextlib.suppress(OSError):
        os.utime(path)
    return data


def write(path: Path, data: bytes, now: float) -> None:
    """Store an entry atomically, then prune. A cache we cannot write only costs time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        prune(path.parent, now)


def prune(folder: Path, now: float) -> None:
    entries = []
    with os.scandir(folder) as it:
        for e in it:
            with contextlib.suppress(OSError):
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    entries.append((e.name, st.st_size, st.st_mtime))
    for name in prune_plan(entries, now, max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES,
                           max_checks_bytes=MAX_CHECKS_BYTES):
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
