"""Where pieces live on disk: the file being seeded, the `.part` file of a download, and the
small ring a download to a pipe spools through.

Blocking I/O only; the swarm calls these methods through `asyncio.to_thread`.

What is read is checked before it leaves: a piece is verified against the manifest's
hash (`piece_ok`: SHA-256; a torrent's SHA-1 when btview.TorrentView stands in for the
manifest) the first time it is read (or when it is written), and a CRC-32 of each 16 KiB
sub-block is kept for it then, so a later block request re-checks only the sub-blocks under
it instead of re-hashing its whole piece (up to 16 MiB). A byte changed on disk after it was
verified is never sent: the read raises `SourceChanged`. Work per block served is the
bytes under the block (rounded out to 16 KiB), plus one SHA-256 of each piece whose table
was evicted (the tables are bounded, `MAX_CHECK_BYTES`). A file just hashed for seeding
gets its tables from that hashing (hashing.py), so its first reads need no SHA-256 either.

`read_block_nowait` is the exception to "blocking I/O only": it runs on the event loop
and reads only what the page cache already holds (`RWF_NOWAIT`), else returns None and the
caller reads in a thread. A thread trip per block served cost the seeder ~1/3 of its CPU
(benchmarks/README.md, "Under loss, sixth pass").

A `.part` file is opened without following links and resumed only when it is a regular
file this download made (single link, ours, ending in the trailer `PartFile` writes: its
magic and the content hash, a torrent's info hash);
anything else under that name is left alone unless `--force` replaces it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
import zlib
from array import array
from collections import OrderedDict
from pathlib import Path

from .errors import StorageError, UsageError
from .manifest import Manifest

SUB_BLOCK = 16 * 1024  # what one CRC covers: a default block request is re-checked alone
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+; elsewhere: threads
MAX_CHECK_BYTES = 16 * 1024 * 1024  # CRC tables kept: 4 bytes per 16 KiB, 64 GiB of content
NAME_MAX = 255  # bytes in one file name on every common filesystem
PART_SUFFIX = ".part"
# Written after the last byte of a new `.part` and cut off when it is renamed: it tells a
# later run that this file is a download of this content that p2p started.
PART_MAGIC = b"p2p.part"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# Reads on the event loop (`read_block_nowait`) must not dirty the inode: an atime update
# can wait on the filesystem's journal. It needs the file's owner; others fall back.
_NOATIME = getattr(os, "O_NOATIME", 0)


def _open_noatime(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
    """os.open with O_NOATIME when allowed (we own the file, or may act as its owner)."""
    if _NOATIME:
        try:
            return os.open(path, flags | _NOATIME, mode)
        except PermissionError:
            pass
    return os.open(path, flags, mode)


def _storage_error(path: Path | str, e: OSError, what: str) -> StorageError:
    if e.errno == errno.ENOSPC:
        return StorageError(f"{path}: disk full while {what}; free space and run again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{path}: not writable ({e.strerror}); choose another place with -o")
    return StorageError(f"{path}: {what} failed ({e.strerror})")


# -- names -------------------------------------------------------------------------------


def part_name(name: str) -> str:
    """`NAME.part`, or, when that would exceed 255 bytes, NAME cut at a character boundary
    plus a hash of the whole NAME: the same final name always gives the same part name (so
    resume works) and two long names sharing a prefix do not share a part file."""
    whole = name + PART_SUFFIX
    if len(os.fsencode(whole)) <= NAME_MAX:
        return whole
    suffix = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16] + PART_SUFFIX
    budget = NAME_MAX - len(suffix)
    kept: list[str] = []
    for ch in name:
        budget -= len(os.fsencode(ch))
        if budget < 0:
            break
        kept.append(ch)
    return "".join(kept) + suffix


def part_path(final: Path) -> Path:
    return final.with_name(part_name(final.name))


def check_output(final: Path, *, force: bool) -> None:
    """The rule for the final name: never a directory; anything already there (a dangling
    symlink included) is replaced only with --force. Replacing renames over the entry, so a
    symlink is replaced, never written through."""
    if final.is_dir():
        raise UsageError(f"{final} is a directory; give a file path with -o")
    if os.path.lexists(final) and not force:
        raise UsageError(f"{final} already exists; use --force to overwrite it")


# -- caches ------------------------------------------------------------------------------


class PieceCache:
    """A small LRU of verified pieces: the 'chunk cache' that saves re-reading and
    re-checking a piece for every block request."""

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


class BlockChecks:
    """CRC-32 of each 16 KiB sub-block of verified pieces, least recently used dropped
    beyond `max_bytes`. CRC-32 catches edits and truncation on disk (an accident, a
    careless user); the content itself was proven by SHA-256 when the table was made."""

    def __init__(self, max_bytes: int = MAX_CHECK_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[int, array] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def table_for(data: bytes | bytearray | memoryview) -> array:
        view = memoryview(data)
        return array("I", (zlib.crc32(view[i : i + SUB_BLOCK])
                           for i in range(0, max(len(view), 1), SUB_BLOCK)))

    def get(self, piece: int) -> array | None:
        with self._lock:
            table = self._tables.get(piece)
            if table is not None:
                self._tables.move_to_end(piece)
            return table

    def put(self, piece: int, table: array) -> None:
        with self._lock:
            old = self._tables.pop(piece, None)
            if old is not None:
                self._bytes -= len(old) * old.itemsize
            self._tables[piece] = table
            self._bytes += len(table) * table.itemsize
            while self._bytes > self.max_bytes and len(self._tables) > 1:
                _, gone = self._tables.popitem(last=False)
                self._bytes -= len(gone) * gone.itemsize

    def fill(self, manifest: Manifest, crcs: array) -> int:
        """Take the tables of pieces from `crcs`, the CRC-32 of every 16 KiB sub-block of
        the content in order (as hashing made them), first piece first, while they fit in
        `max_bytes`. Returns how many pieces got one; none if `crcs` has the wrong length."""
        if len(crcs) != self.sub_blocks(manifest.size):
            return 0
        per_piece = manifest.piece_size // SUB_BLOCK
        at = 0
        for piece in range(manifest.piece_count):
            n = min(per_piece, len(crcs) - at)
            if self._bytes + n * crcs.itemsize > self.max_bytes:
                return piece
            self.put(piece, crcs[at : at + n])
            at += n
        return manifest.piece_count

    @staticmethod
    def sub_blocks(size: int) -> int:
        """How many 16 KiB sub-blocks (the last may be short) `size` bytes of content have."""
        return -(-size // SUB_BLOCK)

    def forget(self, piece: int) -> None:
        with self._lock:
            old = self._tables.pop(piece, None)
            if old is not None:
                self._bytes -= len(old) * old.itemsize


class SourceChanged(StorageError):
    """A file being served no longer holds the bytes that were verified."""


class _VerifiedReads:
    """Reads of verified pieces that never return a byte changed since it was verified."""

    path: Path
    manifest: Manifest
    _fd: int
    keeps_pieces = True
    "Pieces once stored stay readable, so they may be offered to peers."
    one_file = True
    "`_pread` reads `_fd` at `_offset`: `read_block_nowait` may read the same way."

    def _init_checks(self, cache: PieceCache | None, checks: BlockChecks | None) -> None:
        self.cache = cache
        self.checks = checks or BlockChecks()
        self._nowait = _RWF_NOWAIT is not None and self.one_file
        self.bytes_hashed = 0
        "Bytes run through SHA-256 or CRC-32 so far: the cost of serving, for tests and stats."
        self._count_lock = threading.Lock()

    def _offset(self, piece: int) -> int:
        return self.manifest.piece_offset(piece)

    def _pread(self, length: int, offset: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def _changed(self, piece: int) -> SourceChanged:
        raise NotImplementedError

    def _hashed(self, n: int) -> None:
        with self._count_lock:
            self.bytes_hashed += n

    def _remember(self, piece: int, data: bytes | bytearray | memoryview) -> None:
        """Keep the sub-block checks of a piece just proven by SHA-256."""
        self.checks.put(piece, BlockChecks.table_for(data))
        self._hashed(len(data))

    def _read_verified(self, piece: int) -> bytes:
        m = self.manifest
        length = m.piece_length(piece)
        data = self._pread(length, self._offset(piece))
        table = self.checks.get(piece)
        self._hashed(len(data))
        if table is not None:
            ok = len(data) == length and BlockChecks.table_for(data) == table
        else:
            ok = m.piece_ok(piece, data)
            if ok:
                self._remember(piece, data)
        if not ok:
            self.checks.forget(piece)
            raise self._changed(piece)
        return data

    def read_piece(self, piece: int) -> bytes:
        if self.cache is not None:
            data = self.cache.get(piece)
            if data is not None:
                return data
        data = self._read_verified(piece)
        if self.cache is not None:
            self.cache.put(piece, data)
        return data

    def read_block(self, piece: int, offset: int, length: int) -> bytes:
        if self.cache is not None:
            data = self.cache.get(piece)
            if data is not None:
                return data[offset : offset + length]
        table = self.checks.get(piece)
        if table is None:  # first read since it was verified, or its table was evicted
            return self.read_piece(piece)[offset : offset + length]
        # Read the 16 KiB sub-blocks under the request and check each one.
        first, start, end = self._span(piece, offset, length)
        raw = self._pread(end - start, self._offset(piece) + start)
        self._hashed(len(raw))
        if len(raw) != end - start or not _sub_blocks_match(raw, table, first):
            self.checks.forget(piece)
            raise self._changed(piece)
        return raw[offset - start : offset - start + length]

    def _span(self, piece: int, offset: int, length: int) -> tuple[int, int, int]:
        """The 16 KiB sub-blocks under a block: the first one's index, and the bytes
        [start, end) of the piece they cover."""
        first = offset // SUB_BLOCK
        end = min(self.manifest.piece_length(piece),
                  -(-(offset + length) // SUB_BLOCK) * SUB_BLOCK)
        return first, first * SUB_BLOCK, end

    def read_block_nowait(self, piece: int, offset: int, length: int) -> bytearray | None:
        """The block, if the page cache holds it and its piece has a CRC table; None to
        mean "read it in a thread" (`read_block`). Safe on the event loop: RWF_NOWAIT
        never waits for a disk read, and the file is open with O_NOATIME where we may
        (`_open_noatime`). A CRC mismatch also returns None: `read_block` then reads again
        and says what changed."""
        table = self.checks.get(piece) if self._nowait else None
        if table is None:
            return None
        first, start, end = self._span(piece, offset, length)
        buf = bytearray(end - start)
        try:
            n = os.preadv(self._fd, [buf], self._offset(piece) + start, _RWF_NOWAIT)
        except BlockingIOError:  # not all in the page cache: a disk read, for a thread
            return None
        except OSError:  # EOPNOTSUPP (a filesystem without it) or a real error: the thread
            self._nowait = False  # path reads and reports; do not try again
            return None
        # Partly cached, the file shrank, or changed: the thread path decides and says.
        if n != len(buf) or not _sub_blocks_match(buf, table, first):
            return None
        self._hashed(n)
        if start == offset and n == length:
            return buf  # the usual case: a block on 16 KiB boundaries, no copy
        return buf[offset - start : offset - start + length]


def _sub_blocks_match(data: bytes | bytearray, table: array, first: int) -> bool:
    """Each 16 KiB sub-block of `data` has the CRC-32 in `table` from index `first` on."""
    view = memoryview(data)
    return all(zlib.crc32(view[at : at + SUB_BLOCK]) == table[first + k]
               for k, at in enumerate(range(0, len(data), SUB_BLOCK)))


class SeedFile(_VerifiedReads):
    """A complete file being seeded. Every read is checked against what was verified."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        cache: PieceCache | None = None,
        checks: BlockChecks | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._init_checks(cache or PieceCache(), checks)
        try:
            self._fd = _open_noatime(path, os.O_RDONLY | _CLOEXEC)
        except OSError as e:
            raise UsageError(f"{path}: cannot open ({e.strerror})") from None

    def has(self, piece: int) -> bool:
        return 0 <= piece < self.manifest.piece_count

    def _changed(self, piece: int) -> SourceChanged:
        return SourceChanged(
            f"{self.path} changed on disk since it was hashed (piece {piece} differs); "
            "run p2p seed again to share the new content"
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


# -- partial downloads -------------------------------------------------------------------


def _trailer(m: Manifest) -> bytes:
    return PART_MAGIC + m.content_hash


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISFIFO(mode):
        return "is a FIFO"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    return "is not a regular file"


def _open_existing_part(path: Path, m: Manifest, size: int | None = None
                        ) -> tuple[int | None, str]:
    """Open a `.part` already there if it is one this download made: (fd, "") or
    (None, why not). Never follows a link, never blocks on a FIFO. `size`: the content's
    size in this file (one file of a folder share), else the whole share's."""
    size = m.size if size is None else size
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, "vanished"
    if stat.S_ISDIR(st.st_mode):
        return None, "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return None, _kind(st.st_mode)
    try:
        fd = _open_noatime(path, os.O_RDWR | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "is a symbolic link"
        raise _storage_error(path, e, "opening the partial download") from None
    try:
        fst = os.fstat(fd)  # what was opened, not what the name pointed to a moment ago
        why = ""
        if not stat.S_ISREG(fst.st_mode):
            why = _kind(fst.st_mode)
        elif fst.st_nlink != 1:
            why = "has other hard links"
        elif hasattr(os, "geteuid") and fst.st_uid != os.geteuid():
            why = "belongs to another user"
        else:
            t = _trailer(m)
            if fst.st_size != size + len(t) or os.pread(fd, len(t), size) != t:
                why = "was not started by p2p for this content"
        if why:
            os.close(fd)
            return None, why
        os.set_blocking(fd, True)
        return fd, ""
    except OSError as e:
        os.close(fd)
        raise _storage_error(path, e, "opening the partial download") from None


def _create_part(path: Path, trailer: tuple[int, bytes] | None, mode: int = 0o644) -> int:
    """Create a new file, never through an existing entry (O_EXCL, O_NOFOLLOW), and write
    `trailer` (offset, bytes) into it."""
    fd = _open_noatime(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    if trailer is not None:
        at, data = trailer
        try:
            if os.pwrite(fd, data, at) != len(data):
                raise OSError(errno.ENOSPC, "short write")
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    return fd


class PartFile(_VerifiedReads):
    """A download in progress: verified pieces written at their offsets into `PATH.part`.

    A piece counts as present only after it is written *and* it hashes right when scanned,
    so a crash at any moment (SIGKILL included) never yields a wrong byte later: resuming
    re-verifies what is on disk, and `finish` renames only a complete, verified file.

    A new `.part` ends with a trailer (`PART_MAGIC` + content hash) after the content's last
    byte; `finish` cuts it off. An existing `.part` is resumed only if it is a regular file
    with one link, owned by us, ending in that trailer. Anything else there is refused, or
    with `force` unlinked and replaced by a new file (never written through).
    """

    def __init__(self, part_path: Path, manifest: Manifest, *, force: bool = False) -> None:
        self.path = part_path
        self.manifest = manifest
        self.present = bytearray(manifest.piece_count)
        self.finished = False
        self._init_checks(None, None)
        self.created = False
        # We made the file just now: nothing to resume. Its trailer makes it full-size
        # (sparse), so a scan would read and hash every piece of nothing.
        self._fd = self._open(force)

    def _open(self, force: bool) -> int:
        path, m = self.path, self.manifest
        trailer = (m.size, _trailer(m))
        try:
            fd = _create_part(path, trailer)
            self.created = True
            return fd
        except FileExistsError:
            pass
        except OSError as e:
            raise _storage_error(path, e, "creating the download file") from None
        fd, why = _open_existing_part(path, m)
        if fd is not None:
            return fd
        if why == "vanished":  # removed between the two calls: start afresh
            force = True
        if why == "is a directory":
            raise UsageError(f"{path} is a directory; remove it or choose another -o")
        if not force:
            raise UsageError(f"{path} already exists and {why}; use --force to replace it")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # the entry goes; whatever it pointed to is untouched
            fd = _create_part(path, trailer)
            self.created = True
            return fd
        except FileExistsError:
            raise UsageError(f"{path} keeps being re-created by something else; "
                             "choose another -o") from None
        except OSError as e:
            raise _storage_error(path, e, "replacing the download file") from None

    def has(self, piece: int) -> bool:
        return 0 <= piece < len(self.present) and bool(self.present[piece])

    def _changed(self, piece: int) -> SourceChanged:
        if self.finished:
            return SourceChanged(
                f"{self.path} changed on disk after it was downloaded (piece {piece} differs; "
                "nothing changed was sent); fetch it again with --force to repair it"
            )
        return SourceChanged(
            f"{self.path} changed on disk during the download (piece {piece} differs; "
            "nothing changed was sent); run the same command again to resume and repair it"
        )

    def scan(self) -> list[int]:
        """Pieces already on disk that verify (resume after an interruption)."""
        if self.created:  # only what was written through us since, all verified
            return [i for i, have in enumerate(self.present) if have]
        m = self.manifest
        size = os.fstat(self._fd).st_size
        found = []
        for i in range(m.piece_count):
            off = self._offset(i)
            length = m.piece_length(i)
            if off + length > size:
                break
            data = os.pread(self._fd, length, off)
            self._hashed(len(data))
            if m.piece_ok(i, data):  # the manifest's hash: SHA-256, or a torrent's SHA-1
                self._remember(i, data)
                self.present[i] = 1
                found.append(i)
        return found

    def write_piece(self, piece: int, data: bytes | bytearray) -> None:
        """Store a piece the caller has verified."""
        try:
            written = os.pwrite(self._fd, data, self._offset(piece))
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            raise _storage_error(self.path, e, "writing") from None
        self._remember(piece, data)
        self.present[piece] = 1

    def finish(self, final: Path | None, *, force: bool) -> None:
        """Trim to size, flush, and move the verified file to its final name."""
        if final is not None:
            check_output(final, force=force)  # before the trailer goes: a refusal keeps it
        try:
            os.ftruncate(self._fd, self.manifest.size)
            os.fsync(self._fd)
        except OSError as e:
            raise _storage_error(self.path, e, "finishing the download") from None
        self.finished = True
        if final is None:
            return
        try:
            os.replace(self.path, final)
        except OSError as e:
            with contextlib.suppress(OSError):  # still resumable as ours
                t = _trailer(self.manifest)
                os.pwrite(self._fd, t, self.manifest.size)
            self.finished = False
            raise _storage_error(final, e, "renaming the finished download") from None
        self.path = final

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class SpoolRing(PartFile):
    """The spool of a download to a pipe: `slots` pieces in a ring, piece i at slot i % slots.

    Nothing written to a pipe can be resumed, so only the read-ahead window is kept: the
    file never exceeds `slots` pieces. A piece is readable until the writer `release`s it;
    a consumed piece is gone, so a pipe download does not offer pieces to other peers
    (`keeps_pieces` is False).
    """

    keeps_pieces = False
    "Consumed pieces are gone: offer none to peers."

    def __init__(self, path: Path, manifest: Manifest, slots: int) -> None:
        self.path = path
        self.manifest = manifest
        self.slots = max(1, slots)
        self.present = bytearray(manifest.piece_count)
        self.finished = False
        self.low = 0  # the first piece not yet released
        self._init_checks(None, BlockChecks())
        try:
            self._fd = _create_part(path, None, 0o600)
        except OSError as e:
            raise _storage_error(path, e, "creating the spool file") from None

    def _offset(self, piece: int) -> int:
        return (piece % self.slots) * self.manifest.piece_size

    def scan(self) -> list[int]:
        return []  # a new spool holds nothing

    def write_piece(self, piece: int, data: bytes | bytearray) -> None:
        if not self.low <= piece < self.low + self.slots:
            # The picker's window keeps requests inside the ring; this would be a bug.
            raise RuntimeError(f"piece {piece} outside the spool window at {self.low}")
        super().write_piece(piece, data)

    def release(self, piece: int) -> None:
        """The writer is done with every piece up to `piece`: their slots may be reused."""
        while self.low <= piece:
            self.present[self.low] = 0
            self.checks.forget(self.low)
            self.low += 1

    def finish(self, final: Path | None, *, force: bool) -> None:
        self.finished = True  # nothing to rename: the content went to the pipe

    def _changed(self, piece: int) -> SourceChanged:
        return SourceChanged(
            f"the spool file {self.path} changed on disk (piece {piece} differs; nothing "
            "changed was written); run the command again"
        )


