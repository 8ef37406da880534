"""Where pieces live on disk: the file being seeded, and the `.part` file of a download.

Blocking I/O only; the swarm calls these methods through `asyncio.to_thread`. Pieces are
verified against the manifest before they are written and again when a seeded file is
read, so a changed file on disk is never sent as if it were the shared content.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from .errors import StorageError, UsageError
from .manifest import Manifest


def _storage_error(path: Path | str, e: OSError, what: str) -> StorageError:
    if e.errno == errno.ENOSPC:
        return StorageError(f"{path}: disk full while {what}; free space and run again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{path}: not writable ({e.strerror}); choose another place with -o")
    return StorageError(f"{path}: {what} failed ({e.strerror})")


class PieceCache:
    """A small LRU of verified pieces: the 'chunk cache' that saves re-reading and
    re-hashing a piece for every block request."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, piece: int) -> bytes | None:
        with self._lock:
            data = self._items.get(piece)
            if data is not None:
                self._items.move_to_end(piece)
            return data

    def put(self, piece: int, data: bytes) -> None:
        with self._lock:
            if piece in self._items:
                return
            self._items[piece] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


class SourceChanged(StorageError):
    """The seeded file no longer matches the manifest being served."""


class SeedFile:
    """A complete file being seeded. Every piece is re-verified when read from disk."""

    def __init__(self, path: Path, manifest: Manifest, cache: PieceCache | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.cache = cache or PieceCache()
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise UsageError(f"{path}: cannot open ({e.strerror})") from None

    def has(self, piece: int) -> bool:
        return 0 <= piece < self.manifest.piece_count

    def read_piece(self, piece: int) -> bytes:
        data = self.cache.get(piece)
        if data is not None:
            return data
        length = self.manifest.piece_length(piece)
        data = os.pread(self._fd, length, self.manifest.piece_offset(piece))
        if not self.manifest.piece_ok(piece, data):
            raise SourceChanged(
                f"{self.path} changed on disk since it was hashed (piece {piece} differs); "
                "run p2p seed again to share the new content"
            )
        self.cache.put(piece, data)
        return data

    def read_block(self, piece: int, offset: int, length: int) -> bytes:
        return self.read_piece(piece)[offset : offset + length]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class PartFile:
    """A download in progress: verified pieces written at their offsets into `PATH.part`.

    A piece counts as present only after it is written *and* it hashes right when scanned,
    so a crash at any moment (SIGKILL included) never yields a wrong byte later: resuming
    re-verifies what is on disk, and `finish` renames only a complete, verified file.
    """

    def __init__(self, part_path: Path, manifest: Manifest) -> None:
        self.path = part_path
        self.manifest = manifest
        try:
            self._fd = os.open(part_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _storage_error(part_path, e, "creating the download file") from None

    def scan(self) -> list[int]:
        """Pieces already on disk that verify (resume after an interruption)."""
        m = self.manifest
        size = os.fstat(self._fd).st_size
        found = []
        for i in range(m.piece_count):
            off = m.piece_offset(i)
            length = m.piece_length(i)
            if off + length > size:
                break
            data = os.pread(self._fd, length, off)
            if hashlib.sha256(data).digest() == m.piece_hashes[i]:
                found.append(i)
        return found

    def write_piece(self, piece: int, data: bytes) -> None:
        try:
            written = os.pwrite(self._fd, data, self.manifest.piece_offset(piece))
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            raise _storage_error(self.path, e, "writing") from None

    def read_piece(self, piece: int) -> bytes:
        m = self.manifest
        return os.pread(self._fd, m.piece_length(piece), m.piece_offset(piece))

    def read_block(self, piece: int, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, self.manifest.piece_offset(piece) + offset)

    def finish(self, final: Path | None, *, force: bool) -> None:
        """Trim to size, flush, and move the verified file to its final name."""
        try:
            os.ftruncate(self._fd, self.manifest.size)
            os.fsync(self._fd)
        except OSError as e:
            raise _storage_error(self.path, e, "finishing the download") from None
        if final is None:
            return
        if final.exists() and not force:
            raise UsageError(f"{final} already exists; use --force to overwrite it")
        try:
            os.replace(self.path, final)
        except OSError as e:
            raise _storage_error(final, e, "renaming the finished download") from None
        self.path = final

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
