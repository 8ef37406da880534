"""Hash a file into a Manifest, with an on-disk cache so re-seeding starts at once.

Blocking I/O: callers on an event loop run `hash_file` in a thread (`asyncio.to_thread`).
hashlib and os.preadv release the GIL, so the loop stays responsive meanwhile, and two
threads hashing different pieces run in parallel.

Given a `BlockChecks`, hashing also fills in the CRC-32 of every 16 KiB sub-block while
the bytes are in cache (+~0.15 s of CPU per GiB, against 2,000 MB/s SHA-256 here), and
the manifest cache keeps them beside the manifest: a seeder's first read of each piece is
then a CRC check that can run on the event loop, not a second SHA-256 in a thread.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from platformdirs import user_cache_path

from . import manifestcache
from .errors import ManifestError, UsageError
from .manifest import Manifest, check_name, decode, piece_size_for
from .store import SUB_BLOCK, BlockChecks

Progress = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while hashing."""

_READ_CHUNK = 1 << 20  # amortises syscalls, and stays in L2 cache between read and hash
_PROGRESS_EVERY = 8 << 20  # ~200 calls/s at 1.6 GB/s: smooth for a 10 Hz bar, ~free to make
_WORKERS = 2  # 3.1 vs 1.65 GB/s for one thread on two idle cores, warm or cold (benchmarks/)
_RUN = 4 << 20  # bytes a worker hashes per task: few tasks, and neighbouring reads


def cache_dir() -> Path:
    """Where manifests of seeded files are cached (P2P_CACHE_DIR overrides)."""
    override = os.environ.get("P2P_CACHE_DIR")
    return Path(override) if override else user_cache_path("p2p") / "manifests"


def _cache_key(path: Path, st: os.stat_result) -> str:
    ident = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()


def open_for_seeding(path: str | os.PathLike[str]) -> tuple[Path, os.stat_result]:
    """Resolve and stat a file a user asked to seed, with errors they can act on."""
    p = Path(path).expanduser()
    try:
        p = p.resolve(strict=True)
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot open ({e.strerror})") from None
    if p.is_dir():
        raise UsageError(f"{path} is a directory; p2p shares single files (make an archive first)")
    if not p.is_file():
        raise UsageError(f"{path} is not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{path}: permission denied; check the file's permissions")
    return p, st


def hash_pieces(
    fileobj,
    size: int,
    piece_size: int,
    progress: Progress | None = None,
    *,
    workers: int = _WORKERS,
    crcs: array | None = None,
) -> list[bytes]:
    """SHA-256 of each piece of the next `size` bytes of an open binary file.

    Files with a descriptor are hashed by `workers` threads, each taking runs of whole
    pieces with positioned reads; other file objects, and small files, in this thread.
    `crcs`, if given, gets the CRC-32 of each 16 KiB sub-block appended, in order.
    Progress is reported every `_PROGRESS_EVERY` bytes and always once at the end, even
    for an empty file. Raises UsageError if the file ends before `size` bytes.
    """
    workers = min(workers, os.cpu_count() or 1)
    fd = _fileno(fileobj)
    if workers > 1 and fd is not None and hasattr(os, "preadv") and size > _RUN:
        start = fileobj.tell()
        hashes = _hash_parallel(_fd_reader(fd), start, size, piece_size, progress, workers,
                                crcs)
        fileobj.seek(start + size)  # where a sequential reader would have left it
    else:
        view = memoryview(bytearray(min(size, _READ_CHUNK)))
        hashes = _hash_span(fileobj.readinto, size, piece_size, view, progress, crcs)
    if progress:
        progress(size, size)
    return hashes


def _fileno(fileobj) -> int | None:
    """The descriptor of a seekable file, or None (BytesIO, pipes, wrappers)."""
    try:
        return fileobj.fileno() if fileobj.seekable() else None
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None


def _hash_span(
    read: Callable[[memoryview], int],
    length: int,
    piece_size: int,
    view: memoryview,
    progress: Progress | None = None,
    crcs: array | None = None,
) -> list[bytes]:
    """Hash `length` bytes, got by `read(buffer) -> n`, into pieces of `piece_size`, and
    into the CRC-32 of each 16 KiB sub-block if `crcs` is given (appended to it).

    Reads fill `view` whatever the piece size: small pieces share one read (a read per
    16 KiB piece cost ~10% more CPU), large ones are hashed incrementally (a whole 16 MiB
    piece would fall out of cache between read and hash).
    """
    hashes: list[bytes] = []
    h = hashlib.sha256()
    filled = 0  # bytes of the current piece already fed to h
    crc = crc_filled = 0  # the same for the current sub-block (reads may be short)
    done = reported = 0
    while done < length:
        n = read(view[: min(len(view), length - done)])
        if not n:
            raise UsageError("file shrank while it was being hashed; try again")
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
        pos = 0
        while crcs is not None and pos < n:
            # Pieces are whole sub-blocks (16 KiB .. 16 MiB, powers of two), so sub-blocks
            # never straddle a piece: only the content's last one may be short.
            take = min(SUB_BLOCK - crc_filled, n - pos)
            crc = zlib.crc32(view[pos : pos + take], crc)
            pos += take
            crc_filled += take
            if crc_filled == SUB_BLOCK:
                crcs.append(crc)
                crc = crc_filled = 0
        done += n
        if progress and done - reported >= _PROGRESS_EVERY and done < length:
            progress(done, length)
            reported = done
    if filled:
        hashes.append(h.digest())
    if crcs is not None and crc_filled:
        crcs.append(crc)
    return hashes


_buffers = threading.local()


PRead = Callable[[memoryview, int], int]
"""pread(buffer, offset) -> bytes read: a file's, or a tree's concatenated bytes."""


def _fd_reader(fd: int) -> PRead:
    return lambda buf, pos: os.preadv(fd, [buf], pos)


def _hash_run(pread: PRead, start: int, end: int, piece_size: int, crcs: bool
              ) -> tuple[list[bytes], array | None]:
    """Hash the bytes [start, end), which hold whole pieces (the last may be short), with
    their sub-blocks' CRC-32 if `crcs`."""
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(_READ_CHUNK))
    pos = start

    def read(buf: memoryview) -> int:
        nonlocal pos
        n = pread(buf, pos)
        pos += n
        return n

    out = array("I") if crcs else None
    return _hash_span(read, end - start, piece_size, view, None, out), out


def _hash_parallel(
    pread: PRead, start: int, size: int, piece_size: int, progress: Progress | None, workers: int,
    crcs: array | None = None,
) -> list[bytes]:
    run = max(_RUN, piece_size)  # a multiple of the piece size, so runs hold whole pieces
    hashes: list[bytes] = []
    pending: deque[Future[tuple[list[bytes], array | None]]] = deque()

    def take(f: Future[tuple[list[bytes], array | None]]) -> None:
        got, part = f.result()
        hashes.extend(got)
        if crcs is not None and part is not None:
            crcs.extend(part)

    reported = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="p2p-hash") as pool:
        try:
            for offset in range(0, size, run):
                end = min(offset + run, size)
                pending.append(pool.submit(_hash_run, pread, start + offset, start + end,
                                           piece_size, crcs is not None))
                # A bounded window: a 1 TiB file must not queue 250,000 tasks up front.
                if len(pending) > 2 * workers:
                    take(pending.popleft())
                    done = min(len(hashes) * piece_size, size)
                    if progress and done - reported >= _PROGRESS_EVERY and done < size:
                        progress(done, size)
                        reported = done
            while pending:
                take(pending.popleft())
        finally:
            for f in pending:
                f.cancel()
    return hashes


def hash_file(
    path: str | os.PathLike[str],
    progress: Progress | None = None,
    *,
    use_cache: bool = True,
    name: str | None = None,
    checks: BlockChecks | None = None,
) -> Manifest:
    """Build the manifest of a file, reusing a cached one if the file is unchanged.

    The cache is keyed by absolute path, size, mtime, inode and device, so touching or
    replacing the file hashes it again. `checks`, if given, gets the CRC tables of the
    pieces (from the hashing, or from the cache beside the manifest) as far as they fit.
    """
    p, st = open_for_seeding(path)
    # The name the user gave, not the symlink's target: `latest.mkv -> v3.mkv` is shared
    # as latest.mkv.
    display_name = name or Path(path).expanduser().name or p.name
    try:
        # Before hashing: a name no receiver may create should not cost a read of the file.
        check_name(display_name)
    except ManifestError as e:
        raise UsageError(
            f"{path}: cannot be shared: {e.message.removeprefix('manifest ')}, so some "
            "receivers could not save it; rename it, or seed a symlink to it with a safe name"
        ) from None
    cache_file = cache_dir() / (_cache_key(p, st) + ".manifest")
    if use_cache:
        try:
            m = decode(manifestcache.read(cache_file))
            # The piece-size check keeps old entries out should the size rule ever change.
            if (
                m.size == st.st_size
                and m.name == display_name
                and m.piece_size == piece_size_for(st.st_size)
            ):
                if progress:
                    progress(st.st_size, st.st_size)
                if checks is not None:
                    _load_checks(cache_file.with_suffix(manifestcache.CHECKS_SUFFIX), m, checks)
                return m
        except (OSError, ManifestError):
            pass
    piece_size = piece_size_for(st.st_size)
    # Tables beyond what `checks` keeps (a file over 64 GiB) would be made and dropped.
    fits = checks is not None and BlockChecks.sub_blocks(st.st_size) * 4 <= checks.max_bytes
    crcs = array("I") if fits else None
    try:
        with open(p, "rb", buffering=0) as f:
            hashes = hash_pieces(f, st.st_size, piece_size, progress, crcs=crcs)
    except OSError as e:
        raise UsageError(f"{path}: read failed ({e.strerror})") from None
    after = os.stat(p)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise UsageError(f"{path} changed while it was being hashed; wait until it is "
                         "written completely, then seed it again")
    try:
        m = Manifest.create(display_name, st.st_size, piece_size, hashes)
    except ManifestError as e:
        raise UsageError(f"{path}: cannot be shared: {e}") from None
    if crcs is not None and checks is not None:
        checks.fill(m, crcs)
    if use_cache:
        manifestcache.write(cache_file, m.encode(), time.time())
        if crcs is not None:
            manifestcache.write(cache_file.with_suffix(manifestcache.CHECKS_SUFFIX),
                                _checks_entry(m, crcs), time.time())
    return m



def _checks_entry(m: Manifest, crcs: array) -> bytes:
    """A cache entry for a file's CRC tables: SHA-256 of (content hash, tables), then the
    tables (little-endian). The digest ties them to this content and catches a damaged
    entry, which would otherwise read as a file changed on disk."""
    data = _little_endian(crcs).tobytes()
    return hashlib.sha256(m.content_hash + data).digest() + data


def _load_checks(path: Path, m: Manifest, checks: BlockChecks) -> None:
    """Fill `checks` from a cache entry `_checks_entry` wrote, if it is there and sound;
    without one the seeder makes each table on the piece's first read, as before."""
    try:
        entry = manifestcache.read(path)
    except OSError:
        return
    digest, data = entry[:32], entry[32:]
    if len(data) != BlockChecks.sub_blocks(m.size) * 4 or (
            hashlib.sha256(m.content_hash + data).digest() != digest):
        return
    crcs = array("I")
    crcs.frombytes(data)
    checks.fill(m, _little_endian(crcs))


def _little_endian(crcs: array) -> array:
    """The cache stores CRCs little-endian; swap on a big-endian machine (self-inverse)."""
    if sys.byteorder == "big":
        crcs = array("I", crcs)
        crcs.byteswap()
    return crcs
