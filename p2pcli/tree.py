"""Sharing a folder or several files: walk them, read them as one byte stream, hash them.

A version-2 manifest (manifest.py, docs/PROTOCOL.md 1.2.1) lists the files in canonical
order; the pieces run over their bytes concatenated in that order. `TreeReader` is that
concatenation as a `pread`; `hash_tree` builds the manifest with the same hashing code as
a single file (hashing.py), progress and on-disk cache included.

Symbolic links follow today's rule for a single file: a link to a file is shared by
content under the link's name. A link to a folder, a dangling link and anything that is
not a regular file or folder (FIFO, socket, device) are refused with the path: following
folder links could loop or pull in a whole other tree unnoticed.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError, UsageError
from .hashing import (
    _READ_CHUNK,
    _RUN,
    _WORKERS,
    Progress,
    _hash_parallel,
    _hash_span,
    cache_dir,
    hash_file,
)
from .manifest import (
    MAX_ENTRIES,
    Manifest,
    check_name,
    decode,
    path_key,
    piece_size_for,
)

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Item:
    """One entry found on disk: its path in the share, where it is, and its stat."""

    rel: str
    path: Path
    size: int
    folder: bool
    mtime_ns: int = 0
    ino: int = 0
    dev: int = 0


def _refuse_name(shown: str, e: ManifestError) -> UsageError:
    return UsageError(
        f"{shown}: cannot be shared: {e.message.removeprefix('manifest ')}, so some "
        "receivers could not save it; rename it"
    )


def _checked(name: str, shown: str) -> str:
    try:
        check_name(name)
    except ManifestError as e:
        raise _refuse_name(shown, e) from None
    return name


def _walk(top: Path, prefix: str, out: list[Item]) -> None:
    """Append the files and empty folders under the folder `top` as `prefix/...`."""
    try:
        with os.scandir(top) as it:
            found = list(it)
    except PermissionError:
        raise UsageError(f"{top}: permission denied; check the folder's permissions") from None
    except OSError as e:
        raise UsageError(f"{top}: cannot list ({e.strerror})") from None
    if not found:
        out.append(Item(prefix, top, 0, True))
        return
    for d in found:
        shown = str(top / d.name)
        rel = f"{prefix}/{_checked(d.name, shown)}"
        try:
            link = d.is_symlink()
            st = d.stat()  # follows a link: a link to a file is shared by content
        except FileNotFoundError:
            raise UsageError(f"{shown} is a dangling symbolic link; remove it or fix it") from None
        except OSError as e:
            raise UsageError(f"{shown}: cannot open ({e.strerror})") from None
        if stat.S_ISDIR(st.st_mode):
            if link:
                raise UsageError(f"{shown} is a symbolic link to a folder; p2p shares linked "
                                 "files by content but does not follow linked folders")
            _walk(Path(d.path), rel, out)
        elif stat.S_ISREG(st.st_mode):
            out.append(Item(rel, Path(d.path), st.st_size, False, st.st_mtime_ns,
                            st.st_ino, st.st_dev))
        else:
            raise UsageError(f"{shown} is not a regular file (a FIFO, socket or device)")
        if len(out) > MAX_ENTRIES:
            raise UsageError(f"too many files: a share holds at most {MAX_ENTRIES}")


def collect(paths: list[str]) -> tuple[str, list[Item]]:
    """What `p2p seed PATH...` shares: (root name, entries in canonical order).

    One folder: the folder, under its own name. Several paths: each file (or folder) at the
    top, with no root folder.
    """
    items: list[Item] = []
    roots: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        name = p.name or p.resolve().name  # `seed .` shares the folder under its name
        try:
            st = p.stat()
        except FileNotFoundError:
            raise UsageError(f"{raw}: no such file or folder; check the path") from None
        except OSError as e:
            raise UsageError(f"{raw}: cannot open ({e.strerror})") from None
        _checked(name, raw)
        if stat.S_ISDIR(st.st_mode):
            if p.is_symlink():
                p = p.resolve()
            roots.append(p)
            _walk(p, name, items)
        elif stat.S_ISREG(st.st_mode):
            items.append(Item(name, p, st.st_size, False, st.st_mtime_ns, st.st_ino, st.st_dev))
        else:
            raise UsageError(f"{raw} is not a regular file or folder")
    root = ""
    if len(paths) == 1 and roots:
        # One folder: its name is the root, paths inside are relative to it.
        root = items[0].rel.split("/", 1)[0]
        items = [Item(i.rel.split("/", 1)[1] if "/" in i.rel else "", i.path, i.size,
                      i.folder, i.mtime_ns, i.ino, i.dev) for i in items]
        if items == [Item("", roots[0], 0, True)]:
            items = []  # an empty folder: a share with no entries
    items.sort(key=lambda i: path_key(i.rel))
    for a, b in itertools.pairwise(items):
        if a.rel == b.rel:
            raise UsageError(f"{a.path} and {b.path} would both be {a.rel!r} in the share; "
                             "give only one of them")
    return root, items


class TreeReader:
    """The files' bytes, concatenated in manifest order, as one positioned read.

    Each call opens the files it touches and closes them again: a share may hold more
    files than a process may keep open, and an open costs microseconds next to a read.
    A file that is shorter than listed raises `short(path)`.
    """

    def __init__(self, files: list[tuple[Path, int]], short=None) -> None:
        self.files = [(p, n) for p, n in files if n]
        self.starts: list[int] = []
        at = 0
        for _, n in self.files:
            self.starts.append(at)
            at += n
        self.size = at
        self.short = short or (lambda path: UsageError(
            f"{path} shrank while it was being read; seed it again"))

    def segments(self, pos: int, length: int):
        """(file index, offset in file, length) covering [pos, pos + length)."""
        i = bisect.bisect_right(self.starts, pos) - 1
        end = min(pos + length, self.size)
        while pos < end and i < len(self.files):
            off = pos - self.starts[i]
            take = min(self.files[i][1] - off, end - pos)
            yield i, off, take
            pos += take
            i += 1

    def pread(self, buf: memoryview, pos: int) -> int:
        done = 0
        for i, off, take in self.segments(pos, len(buf)):
            path = self.files[i][0]
            try:
                fd = os.open(path, os.O_RDONLY | _CLOEXEC)
            except OSError as e:
                raise UsageError(f"{path}: cannot open ({e.strerror})") from None
            try:
                got = os.preadv(fd, [buf[done : done + take]], off)
            finally:
                os.close(fd)
            if got != take:
                raise self.short(path)
            done += take
        return done

    def read(self, pos: int, length: int) -> bytes:
        buf = bytearray(length)
        n = self.pread(memoryview(buf), pos)
        return bytes(buf[:n])


def _cache_key(root: str, items: list[Item]) -> str:
    h = hashlib.sha256(f"tree\0{root}\0".encode("utf-8", "surrogateescape"))
    for i in items:
        h.update(f"{i.rel}\0{i.path}\0{i.size}\0{i.folder}\0{i.mtime_ns}\0{i.ino}\0{i.dev}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def hash_tree(paths: list[str], progress: Progress | None = None, *,
              use_cache: bool = True, workers: int = _WORKERS) -> tuple[Manifest, list[Item]]:
    """The manifest of what `p2p seed PATH...` shares, and where its files are.

    A single file keeps today's version-1 manifest, byte for byte.
    """
    if len(paths) == 1 and not Path(paths[0]).expanduser().is_dir():
        m = hash_file(paths[0], progress, use_cache=use_cache)
        return m, [Item(m.name, Path(paths[0]).expanduser(), m.size, False)]
    root, items = collect(paths)
    total = sum(i.size for i in items)
    piece_size = piece_size_for(total)
    entries = [(i.rel, i.size, i.folder) for i in items]
    cache_file = cache_dir() / (_cache_key(root, items) + ".manifest")
    if use_cache:
        with contextlib.suppress(OSError, ManifestError):
            m = decode(cache_file.read_bytes())
            if m.root == root and m.piece_size == piece_size and m.entries is not None and [
                    (e.path, e.size, e.folder) for e in m.entries] == entries:
                if progress:
                    progress(total, total)
                return m, items
    reader = TreeReader([(i.path, i.size) for i in items if not i.folder])
    workers = min(workers, os.cpu_count() or 1)
    if workers > 1 and total > _RUN:
        hashes = _hash_parallel(reader.pread, 0, total, piece_size, progress, workers)
    else:
        pos = 0

        def read(buf: memoryview) -> int:
            nonlocal pos
            n = reader.pread(buf, pos)
            pos += n
            return n

        hashes = _hash_span(read, total, piece_size,
                            memoryview(bytearray(max(1, min(total, _READ_CHUNK)))), progress)
    if progress:
        progress(total, total)
    _check_unchanged(items)
    try:
        m = Manifest.create_tree(root, entries, piece_size, hashes)
    except ManifestError as e:
        raise UsageError(f"cannot be shared: {e}") from None
    if len(m.encoded) > MAX_MANIFEST:
        raise UsageError(f"the file list is too long: its manifest would be {len(m.encoded)} "
                         f"bytes, more than {MAX_MANIFEST}; share fewer files or an archive")
    if use_cache:
        with contextlib.suppress(OSError):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(m.encode())
            os.replace(tmp, cache_file)
    return m, items


MAX_MANIFEST = 16 * 1024 * 1024  # wire.MAX_MANIFEST: a peer refuses a larger one


def _check_unchanged(items: list[Item]) -> None:
    for i in items:
        if i.folder:
            continue
        try:
            st = os.stat(i.path)
        except OSError:
            st = None
        if st is None or (st.st_size, st.st_mtime_ns) != (i.size, i.mtime_ns):
            raise UsageError(f"{i.path} changed while it was being hashed; wait until it is "
                             "written completely, then seed it again")



