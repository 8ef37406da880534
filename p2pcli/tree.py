"""Sharing a folder or several files: walk them, read them as one byte stream, hash them.

A version-2 manifest (manifest.py, docs/PROTOCOL.md 1.2.1) lists the files in canonical
order; the pieces run over their bytes concatenated in that order. `TreeReader` is that
concatenation as a `pread`; `hash_tree` builds the manifest with the same hashing code as
a single file (hashing.py), progress and on-disk cache included.

Symbolic links follow today's rule for a single file: a link to a file is shared by
content under the link's name. A link to a folder, a dangling link and anything that is
not a regular file or folder (FIFO, socket, device) are refused with the path: following
folder links could loop or pull in a whole other tree unnoticed.

A file that changes size while the tree is hashed is caught by the read (one byte more is
asked at each file's end); unlike a single file, the files are not stat'ed again after
hashing (100,000 more system calls): a same-size rewrite meanwhile is caught when the
piece is served (store.py checks every piece before it leaves).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import gc
import hashlib
import itertools
import marshal
import operator
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, overload

from . import manifestcache
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
    TREE_VERSION,
    Entry,
    Manifest,
    check_entries,
    check_name,
    decode,
    path_key,
    piece_size_for,
    tree_title,
)
from .wire import MAX_MANIFEST  # a peer refuses a larger manifest

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Per-file hot paths build their tuples with tuple.__new__: a NamedTuple's own __new__ is a
# Python function, a frame per file (~0.06 s of a 100,000-file tree, three tuples each).
_new = tuple.__new__
_by_name = operator.attrgetter("name")


class Item(NamedTuple):
    """One entry found on disk: its path in the share, where it is, and its stat.
    (A tuple: a folder share makes one per file, and a frozen dataclass costs 3x more.)"""

    rel: str
    path: str
    size: int
    folder: bool
    mtime_ns: int = 0
    ino: int = 0
    dev: int = 0


class _Columns:
    """A walk's findings as one list per `Item` field, not a tuple per file: plain strings
    and integers, which the cyclic garbage collector does not track, so the walk can run
    with it on (a tuple per file made during the walk would set off full collections: see
    `_gc_paused`), and the reader, the entries and the cache key take whole lists."""

    __slots__ = ("dev", "folder", "ino", "mtime", "path", "rel", "size")

    def __init__(self) -> None:
        self.rel: list[str] = []
        self.path: list[str] = []
        self.size: list[int] = []
        self.folder: list[bool] = []
        self.mtime: list[int] = []
        self.ino: list[int] = []
        self.dev: list[int] = []

    def __len__(self) -> int:
        return len(self.rel)

    def add(self, rel: str, path: str, size: int, folder: bool, mtime: int = 0, ino: int = 0,
            dev: int = 0) -> None:
        self.rel.append(rel)
        self.path.append(path)
        self.size.append(size)
        self.folder.append(folder)
        self.mtime.append(mtime)
        self.ino.append(ino)
        self.dev.append(dev)

    def fields(self) -> tuple[list, ...]:
        return (self.rel, self.path, self.size, self.folder, self.mtime, self.ino, self.dev)

    def items(self) -> Iterator[Item]:
        return map(_new, itertools.repeat(Item), zip(*self.fields(), strict=True))

    @classmethod
    def of_items(cls, items: list[Item]) -> _Columns:
        self = cls()
        for column, values in zip(self.fields(), zip(*items, strict=True), strict=False):
            column += values
        return self


class Items(Sequence[Item]):
    """What `hash_tree` found, as a sequence of `Item`s made when asked for: a tuple per file
    kept for the seeder's whole life costs ~0.035 s of a 100,000-file tree to make and for
    the garbage collector to scan (tuple subclasses are never untracked), and what a
    seeder reads needs only `files()`."""

    __slots__ = ("_cols",)

    def __init__(self, cols: _Columns) -> None:
        self._cols = cols

    def __len__(self) -> int:
        return len(self._cols)

    def __iter__(self) -> Iterator[Item]:
        return self._cols.items()

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return list(self)[index]
        return _new(Item, [column[index] for column in self._cols.fields()])

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a mutable sequence's rule: equal to a list

    def __repr__(self) -> str:
        return f"Items({list(self)!r})"

    def files(self) -> list[tuple[str, int]]:
        """(path on disk, size) of each file, folders left out: what a `SeedTree` reads."""
        cols = self._cols
        files = list(map(operator.not_, cols.folder))
        return list(zip(itertools.compress(cols.path, files),
                        itertools.compress(cols.size, files), strict=True))


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


# Listing a folder through a descriptor makes each entry's stat an fstatat() relative to
# it, not a lookup of the whole path again: ~0.03 s of a 100,000-file tree (Linux, macOS).
_SCANDIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _walk(top: str, prefix: str, out: _Columns) -> None:
    """Append the files and empty folders under the folder `top` as `prefix/...` (no
    prefix: at the top). Plain strings, not Paths, and as little as possible per file: this
    loop runs once per file, and on a tree of small files it is what hashing costs beyond
    the reads (benchmarks/README.md, "Hashing a folder share")."""
    dfd = None
    try:
        if _SCANDIR_FD:
            dfd = os.open(top, os.O_RDONLY | _O_DIRECTORY | _CLOEXEC)
        with os.scandir(top if dfd is None else dfd) as it:
            found = list(it)
    except PermissionError:
        _close(dfd)
        raise UsageError(f"{top}: permission denied; check the folder's permissions") from None
    except OSError as e:
        _close(dfd)
        raise UsageError(f"{top}: cannot list ({e.strerror})") from None
    try:
        _walk_entries(top, prefix, found, out)
    finally:
        _close(dfd)  # after the entries' stat calls, which are relative to it


_STAT = os.DirEntry.stat
_MODE, _SIZE, _MTIME, _INO, _DEV = map(operator.attrgetter, (
    "st_mode", "st_size", "st_mtime_ns", "st_ino", "st_dev"))


def _plain_files(base: str, at: str, found: list[os.DirEntry[str]], out: _Columns) -> bool:
    """The usual folder, only regular files (or links to them), in C loops: map() stats
    them and extends the columns, where the loop in `_walk_entries` runs bytecode per file
    (~0.06 s of a 100,000-file tree). False, with `out` unchanged, for anything else
    (a subfolder, a FIFO, a stat that fails): that loop then decides, with its errors."""
    try:
        stats = list(map(_STAT, found))  # follows links: a link to a file is shared
    except OSError:
        return False
    if not all(map(stat.S_ISREG, map(_MODE, stats))):
        return False
    names = list(map(_by_name, found))
    out.rel += map(base.__add__, names)
    out.path += map(at.__add__, names)
    out.size += map(_SIZE, stats)
    out.folder += itertools.repeat(False, len(names))
    out.mtime += map(_MTIME, stats)
    out.ino += map(_INO, stats)
    out.dev += map(_DEV, stats)
    return True


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _walk_entries(top: str, prefix: str, found: list[os.DirEntry[str]],
                  out: _Columns) -> None:
    if not found:
        if prefix:
            out.add(prefix, top, 0, True)
        return
    # Each entry adds at least one item (a folder: its files, or itself if empty), so this
    # refuses before the loop what would be too many after it; the check after the loop
    # catches what subfolders add. Not once per file: this loop is the walk's hot path.
    if len(out) + len(found) > MAX_ENTRIES:
        raise UsageError(f"too many files: a share holds at most {MAX_ENTRIES}")
    # Names in code-point order, which is UTF-8 byte order: the walk yields the canonical
    # order (manifest.path_key) with no sort of the whole list afterwards.
    found.sort(key=_by_name)
    base = prefix + "/" if prefix else ""
    at = os.path.join(top, "")  # top and a separator: an entry's path is at + its name
    if _plain_files(base, at, found, out):
        return
    add, is_reg, is_dir = out.add, stat.S_ISREG, stat.S_ISDIR
    for d in found:
        # Names are checked once the list is complete (`_check`), with the rest of the rules.
        name = d.name
        try:
            st = d.stat()  # follows a link: a link to a file is shared by content
        except FileNotFoundError:
            raise UsageError(f"{at}{name} is a dangling symbolic link; remove it or fix "
                             "it") from None
        except OSError as e:
            raise UsageError(f"{at}{name}: cannot open ({e.strerror})") from None
        mode = st.st_mode
        if is_reg(mode):
            add(base + name, at + name, st.st_size, False, st.st_mtime_ns, st.st_ino,
                st.st_dev)
        elif is_dir(mode):
            try:
                link = d.is_symlink()  # only a folder needs asking: linked files are fine
            except OSError as e:
                raise UsageError(f"{at}{name}: cannot open ({e.strerror})") from None
            if link:
                raise UsageError(f"{at}{name} is a symbolic link to a folder; p2p shares "
                                 "linked files by content but does not follow linked folders")
            _walk(at + name, base + name, out)
        else:
            raise UsageError(f"{at}{name} is not a regular file (a FIFO, socket or device)")
    if len(out) > MAX_ENTRIES:
        raise UsageError(f"too many files: a share holds at most {MAX_ENTRIES}")


def collect(paths: list[str]) -> tuple[str, list[Item]]:
    """What `p2p seed PATH...` shares: (root name, entries in canonical order).

    One folder: the folder, under its own name. Several paths: each file (or folder) at the
    top, with no root folder.
    """
    root, cols = _collect(paths)
    with _gc_paused():
        items = list(cols.items())
        _check(root, cols)
    return root, items


def _collect(paths: list[str]) -> tuple[str, _Columns]:
    """What `collect` finds, as columns, not yet checked against the manifest's rules."""
    cols = _Columns()
    root = ""
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
            # One folder: its name is the root and paths inside are relative to it.
            # Among several paths, a folder is an entry at the top.
            _walk(str(p.resolve() if p.is_symlink() else p),
                  "" if len(paths) == 1 else name, cols)
            if len(paths) == 1:
                root = name
        elif stat.S_ISREG(st.st_mode):
            cols.add(name, str(p), st.st_size, False, st.st_mtime_ns, st.st_ino, st.st_dev)
        else:
            raise UsageError(f"{raw} is not a regular file or folder")
    if len(paths) > 1:  # one folder's walk is in order already, and has no duplicates
        items = sorted(cols.items(), key=lambda i: path_key(i.rel))
        for a, b in itertools.pairwise(items):
            if a.rel == b.rel:
                raise UsageError(f"{a.path} and {b.path} would both be {a.rel!r} in the "
                                 "share; give only one of them")
        cols = _Columns.of_items(items)
    return root, cols


# Whole files per round of _read_whole, so descriptors held at once by one read. Hashing
# (one or two threads) takes 64; a seeder serves pieces from up to 32 threads at a time
# (asyncio's default executor), so its reads hold 8 each (256 at most, not 2,048).
_HASH_BATCH = 64
_SERVE_BATCH = 8


def _read_whole(buf: memoryview, base: int, extra: memoryview, paths: list[str],
                sizes: list[int], starts: list[int], ends: list[int], short) -> None:
    """Read whole files into `buf` (whose first byte is at `base` in the concatenation),
    each with one byte more asked at its end, as `TreeReader.pread` does per file."""
    views = map(buf.__getitem__, map(slice, map(base.__rsub__, starts), map(base.__rsub__, ends)))
    fds: list[int] = []
    try:
        # list += map(): on an error the descriptors opened so far are in `fds`, and closed.
        fds += map(os.open, paths, itertools.repeat(os.O_RDONLY | _CLOEXEC))
        got = list(map(os.preadv, fds, zip(views, itertools.repeat(extra)),
                       itertools.repeat(0)))
    except OSError as e:
        if len(fds) < len(paths):  # an open failed, as `pread` words it
            raise UsageError(f"{paths[len(fds)]}: cannot open ({e.strerror})") from None
        raise
    finally:
        collections.deque(map(os.close, fds), 0)
    if got != sizes:
        raise short(next(p for p, g, s in zip(paths, got, sizes, strict=True) if g != s))


class TreeReader:
    """The files' bytes, concatenated in manifest order, as one positioned read.

    Each call opens the files it touches and closes them again: a share may hold more
    files than a process may keep open, and an open costs microseconds next to a read.
    A file whose size differs from the listed one raises `short(path)`.
    """

    batch = _SERVE_BATCH  # whole files one read holds open at once

    def __init__(self, files: Iterable[tuple[str, int]], short=None) -> None:
        # Two flat lists rather than a tuple per file: 100,000 fewer objects for the
        # garbage collector to track (and, in `hash_tree`, for its collections to scan).
        self.paths: list[str] = []
        self.sizes: list[int] = []
        add_path, add_size = self.paths.append, self.sizes.append
        for path, size in files:
            if size:
                add_path(path)
                add_size(size)
        self._index(short)

    @classmethod
    def _of_columns(cls, cols: _Columns, short=None) -> TreeReader:
        """The reader of a walk's columns, its lists made with C loops (compress, filter)."""
        self = cls.__new__(cls)
        self.batch = _HASH_BATCH  # hash_tree's reader
        self.paths = list(itertools.compress(cols.path, cols.size))  # size > 0 only
        self.sizes = list(filter(None, cols.size))
        self._index(short)
        return self

    def _index(self, short) -> None:
        self.ends = list(itertools.accumulate(self.sizes))  # where each file's bytes end
        self.starts = [0, *self.ends]
        self.size = self.starts.pop()
        self.short = short or (lambda path: UsageError(
            f"{path} changed while it was being hashed; wait until it is written "
            "completely, then seed it again"))

    def pread(self, buf: memoryview, pos: int) -> int:
        base = pos  # the offset in the concatenation of buf[0]
        extra = memoryview(bytearray(1))
        paths, sizes, starts, ends = self.paths, self.sizes, self.starts, self.ends
        count = len(sizes)
        i = bisect.bisect_right(starts, pos) - 1
        end = min(pos + len(buf), self.size)
        open_, preadv, close, flags = os.open, os.preadv, os.close, os.O_RDONLY | _CLOEXEC
        while pos < end:
            if pos == starts[i]:
                # Whole files from here on: up to `batch` of them are opened, read and closed
                # by map(), C loops where this loop would run bytecode per file (~0.04 s of
                # a 100,000-file tree).
                k = bisect.bisect_right(ends, end, i, min(i + self.batch, count))
                if k > i:
                    pos = ends[k - 1]
                    _read_whole(buf, base, extra, paths[i:k], sizes[i:k], starts[i:k],
                                ends[i:k], self.short)
                    i = k
                    continue
            # A file that the read starts or ends inside of.
            path, size = paths[i], sizes[i]
            off = pos - starts[i]
            take = size - off
            if take > end - pos:
                take = end - pos
            at = pos - base
            pos += take
            i += 1
            try:
                fd = open_(path, flags)
            except OSError as e:
                raise UsageError(f"{path}: cannot open ({e.strerror})") from None
            try:
                # Up to the file's end, one byte more: a file that grew since it was listed
                # is caught without a stat of every file (what a small-file tree costs).
                got = preadv(fd, [buf[at : at + take], extra] if off + take == size else [
                    buf[at : at + take]], off)
            finally:
                close(fd)
            if got != take:
                raise self.short(path)
        return end - base if end > base else 0

    def read(self, pos: int, length: int) -> bytes:
        buf = bytearray(length)
        n = self.pread(memoryview(buf), pos)
        return bytes(buf[:n])


def _entries(cols: _Columns) -> tuple[Entry, ...]:
    """The manifest entries of a walk (manifest.make_entries), made by C loops (map, zip,
    accumulate over the columns): no Python bytecode per entry."""
    # strict=False: the offsets run one longer (the total comes last).
    fields = zip(cols.rel, cols.size, itertools.accumulate(cols.size, initial=0), cols.folder,
                 strict=False)
    return tuple(map(_new, itertools.repeat(Entry), fields))


def _check(root: str, cols: _Columns) -> tuple[Entry, ...]:
    """Every rule a receiver applies to the list (manifest.check_entries), before any file
    is read: a name no receiver may create should not cost a read of the tree. Returns the
    entries checked."""
    entries = _entries(cols)
    try:
        check_entries(entries)
    except ManifestError as e:
        for rel, path in zip(cols.rel, cols.path, strict=True):  # which file: the error
            for name in rel.split("/"):  # names its path in the share only
                with contextlib.suppress(ManifestError):
                    check_name(name)
                    continue
                _checked(name, path)
        raise UsageError(f"cannot be shared: {e.message.removeprefix('manifest ')}, so some "
                         "receivers could not save it; rename one of the files") from None
    return entries


def _cache_key(root: str, cols: _Columns) -> str:
    # marshal of the walk's columns: C code throughout, no tuple per file (a tuple per file
    # cost 0.06 s of a 100,000-file tree, these lists 0.02). Version 2 (no back-references:
    # their bookkeeping made version 4 twice as slow here); another Python's format, or
    # this layout replacing the tuples', only costs a cache miss.
    data = marshal.dumps(("tree", root, *cols.fields()), 2)
    return hashlib.sha256(data).hexdigest()


_gc_lock = threading.Lock()
_gc_pausers = 0  # calls inside _gc_paused, in any thread
_gc_was_enabled = False  # as the first of them found it


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the manifest's entries, a tuple per file, are
    made and checked: they are instances of a tuple subclass, which the collector never
    stops tracking, so young collections among them lead on to full ones, scans of the whole
    heap (without the pause, hashing a 100,000-file tree in a process with aiortc loaded set
    off two, and took 1.09 CPU s against 1.01-1.03). They hold no cycles: nothing is lost.
    The walk runs before, with the collector on (`_Columns`), and `Items` makes no tuple
    per file: the pause is ~0.13 s of a 100,000-file tree, where it once held the whole
    walk (~0.4 s). Process-wide, so counted: two threads hashing at once re-enable it only
    when both are done, and only if it was on when the first began."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if not _gc_pausers:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if not _gc_pausers and _gc_was_enabled:
                gc.enable()


def hash_tree(paths: list[str], progress: Progress | None = None, *,
              use_cache: bool = True, workers: int = _WORKERS) -> tuple[Manifest, Items]:
    """The manifest of what `p2p seed PATH...` shares, and where its files are.

    A single file keeps today's version-1 manifest, byte for byte.
    """
    if len(paths) == 1 and not Path(paths[0]).expanduser().is_dir():
        m = hash_file(paths[0], progress, use_cache=use_cache)
        one = _Columns()
        one.add(m.name, str(Path(paths[0]).expanduser()), m.size, False)
        return m, Items(one)
    root, cols = _collect(paths)  # no tuple per file yet: the collector may run meanwhile
    items = Items(cols)
    with _gc_paused():  # the entries, a tuple per file, and their check (`_gc_paused`)
        entries = _check(root, cols)
        key = _cache_key(root, cols) if use_cache else None
    total = entries[-1].end if entries else 0
    piece_size = piece_size_for(total)
    cache_file = cache_dir() / (key + ".manifest") if key else None
    if cache_file:
        with contextlib.suppress(OSError, ManifestError):
            m = decode(manifestcache.read(cache_file))
            # Same paths, sizes and kinds in the same order: the same entries, offsets too.
            if m.root == root and m.piece_size == piece_size and m.entries == entries:
                if progress:
                    progress(total, total)
                return m, items
    reader = TreeReader._of_columns(cols)
    workers = min(workers, os.cpu_count() or 1)
    # Two threads pay off when reading and hashing dominate; on a tree of small files the
    # Python work per file holds the GIL, and a second thread only adds contention.
    if workers > 1 and total > _RUN and total >= _RUN * max(1, len(items)) // 4:
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
    try:
        # Manifest.create_tree(checked=True) from the entries `_check` made and checked.
        m = Manifest(name=tree_title(root, entries), size=total, piece_size=piece_size,
                     piece_hashes=tuple(hashes), version=TREE_VERSION, root=root,
                     entries=entries)
        m.validate_geometry()
    except ManifestError as e:
        raise UsageError(f"cannot be shared: {e}") from None
    if len(m.encoded) > MAX_MANIFEST:
        raise UsageError(f"the file list is too long: its manifest would be {len(m.encoded)} "
                         f"bytes, more than {MAX_MANIFEST}; share fewer files or an archive")
    if cache_file:
        manifestcache.write(cache_file, m.encode(), time.time())
    return m, items


