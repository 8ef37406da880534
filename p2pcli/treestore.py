"""Pieces of a folder share on disk: the files being seeded, and a download's `.part` files.

The pieces run over the files' bytes concatenated in manifest order (manifest.py), so a
piece may span several files; reads and writes split it at file boundaries. Blocking I/O,
called through `asyncio.to_thread` like store.py, whose checks (SHA-256 once, CRC-32 of
16 KiB sub-blocks after) apply unchanged.

Downloading writes each selected file as `PATH.part` next to where it goes, with the same
trailer and resume rules as a single file (store.PartFile), and renames it when every
piece is in. Nothing is written outside the target folder: every path component was
checked when the manifest was parsed (no `..`, no absolute path, no unsafe name), and
folders are created one component at a time, refusing any that is a symbolic link or not
a folder, so a link planted inside the target cannot redirect a write.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path

from .errors import UsageError
from .manifest import Entry, Manifest
from .store import (
    _CLOEXEC,
    _NOFOLLOW,
    PartFile,
    PieceCache,
    SourceChanged,
    _create_part,
    _open_existing_part,
    _storage_error,
    _trailer,
    _VerifiedReads,
    check_output,
    part_path,
)
from .tree import TreeReader

MAX_OPEN = 64  # descriptors a download keeps open: a share may hold 100,000 files


class SeedTree(_VerifiedReads):
    """The files of a folder share, being seeded. Every read is checked as for one file."""

    one_file = False  # its reads span files (TreeReader): always in a thread

    def __init__(self, root: str, manifest: Manifest, files: list[tuple[str, int]],
                 cache: PieceCache | None = None) -> None:
        self.path = Path(root)
        self.manifest = manifest
        self._init_checks(cache or PieceCache(), None)
        self._reader = TreeReader(files, short=lambda p: SourceChanged(
            f"{p} shrank since it was hashed; run p2p seed again to share the new content"))

    def _pread(self, length: int, offset: int) -> bytes:
        return self._reader.read(offset, length)

    def has(self, piece: int) -> bool:
        return 0 <= piece < self.manifest.piece_count

    def _changed(self, piece: int) -> SourceChanged:
        return SourceChanged(
            f"a file under {self.path} changed on disk since it was hashed (piece {piece} "
            "differs); run p2p seed again to share the new content"
        )

    def close(self) -> None:
        pass


def _safe_dir(base: Path, parts: tuple[str, ...]) -> Path:
    """`base/parts...` as a folder, creating what is missing, through no symbolic link."""
    cur = base
    for part in parts:
        cur = cur / part
        try:
            os.mkdir(cur)
            continue
        except FileExistsError:
            pass
        except OSError as e:
            raise _storage_error(cur, e, "creating a folder") from None
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise UsageError(f"{cur} is a symbolic link; p2p does not write through links "
                             "inside the target folder: remove it or choose another -o")
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{cur} exists and is not a folder; remove it or choose another -o")
    return cur


class TreePart(PartFile):  # a PartFile to the swarm, which stores verified pieces in one
    """A folder download in progress: the selected files as `.part` files under `base`
    (in `base/ROOT` when the share has a root folder).

    With a selection, a piece shared with an unselected file is verified whole and only
    the selected bytes are written; such a piece cannot be re-read, so it is fetched again
    on resume, and a partial download offers no pieces to peers (`keeps_pieces` False).
    """

    one_file = False  # its reads span the selected files: always in a thread

    def __init__(self, base: Path, manifest: Manifest, selected: list[int], *,
                 force: bool = False, hold_shared: bool = False) -> None:
        root = _safe_dir(base, (manifest.root,)) if manifest.root else base
        self.path = root
        self.manifest = manifest
        self.present = bytearray(manifest.piece_count)
        self.finished = False
        self._init_checks(None, None)
        files = manifest.files
        self.selected = set(selected)
        self.keeps_pieces = len(self.selected) == len(files)
        self.force = force
        # A stream reads back what it wrote: pieces shared with unselected files are kept
        # in memory, whole (its one file has two at most), as they are not on disk whole.
        self.hold_shared = hold_shared
        self._held: dict[int, bytes] = {}
        self._files: list[Entry] = []  # non-empty files, in order: the byte stream
        self._index: list[int] = []  # their index in manifest.files
        for i, f in enumerate(files):
            if f.size:
                self._files.append(f)
                self._index.append(i)
        self._starts = [f.offset for f in self._files]
        self._finals = {i: root.joinpath(*files[i].parts) for i in self.selected}
        self._fds: OrderedDict[int, int] = OrderedDict()
        # Pieces are written and read from several threads: one at a time here, or a
        # descriptor one thread uses could be closed by another's eviction, and its number
        # reused for another file.
        self._io = threading.Lock()
        self._renamed: set[int] = set()
        self.created = True
        self.resumed: set[int] = set()  # files whose `.part` was already there
        for i in sorted(self.selected):
            final = self._finals[i]
            _safe_dir(root, files[i].parts[:-1])
            check_output(final, force=force)
            if files[i].size:
                self._prepare(i, final, force)

    # -- the .part files -------------------------------------------------------------------

    def _prepare(self, i: int, final: Path, force: bool) -> None:
        """Create the file's `.part`, or check that the one there is ours to resume."""
        f, m = self.manifest.files[i], self.manifest
        part = part_path(final)
        try:
            os.close(_create_part(part, (f.size, _trailer(m))))
            return
        except FileExistsError:
            pass
        except OSError as e:
            raise _storage_error(part, e, "creating the download file") from None
        fd, why = _open_existing_part(part, m, f.size)
        if fd is not None:
            os.close(fd)
            self.resumed.add(i)
            self.created = False
            return
        if why == "is a directory":
            raise UsageError(f"{part} is a directory; remove it or choose another -o")
        if not force and why != "vanished":
            raise UsageError(f"{part} already exists and {why}; use --force to replace it")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        try:
            os.close(_create_part(part, (f.size, _trailer(m))))
        except OSError as e:
            raise _storage_error(part, e, "replacing the download file") from None

    def _file_fd(self, i: int) -> int:
        fd = self._fds.get(i)
        if fd is not None:
            self._fds.move_to_end(i)
            return fd
        # Once renamed (finished, or seeding after the fetch), a file has its final name.
        part = self._finals[i] if i in self._renamed else part_path(self._finals[i])
        try:
            fd = os.open(part, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
        except OSError as e:
            raise _storage_error(part, e, "opening the partial download") from None
        self._fds[i] = fd
        while len(self._fds) > MAX_OPEN:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _segments(self, pos: int, length: int):
        """(file index, offset in the file, offset in the piece data, length)."""
        k = bisect.bisect_right(self._starts, pos) - 1
        end, at = pos + length, 0
        while pos < end and 0 <= k < len(self._files):
            f = self._files[k]
            take = min(f.end - pos, end - pos)
            yield self._index[k], pos - f.offset, at, take
            pos += take
            at += take
            k += 1

    def _whole(self, piece: int, files: set[int] | None = None) -> bool:
        """Every byte of `piece` is in a selected (or, with `files`, a listed) file."""
        if files is None and self.keeps_pieces:
            return True  # every file selected: no piece touches an unselected one
        ok = self.selected if files is None else files
        m = self.manifest
        return all(i in ok for i, *_ in self._segments(m.piece_offset(piece),
                                                       m.piece_length(piece)))

    def _pread(self, length: int, offset: int) -> bytes:
        out = bytearray()
        with self._io:
            for i, off, _at, take in self._segments(offset, length):
                if i not in self.selected:
                    break  # not on disk: the caller's check fails and the piece is fetched
                out += os.pread(self._file_fd(i), take, off)
        return bytes(out)

    # -- the store interface (store.PartFile) ---------------------------------------------

    def has(self, piece: int) -> bool:
        return (0 <= piece < len(self.present) and bool(self.present[piece])
                and self._whole(piece))

    def _changed(self, piece: int) -> SourceChanged:
        return SourceChanged(
            f"a file under {self.path} changed on disk during the download (piece {piece} "
            "differs; nothing changed was sent); run the same command again to resume"
        )

    def scan(self) -> list[int]:
        """Pieces already on disk that verify: those lying wholly in resumed files."""
        if self.created:
            return [i for i, have in enumerate(self.present) if have]
        m, found = self.manifest, []
        for piece in range(m.piece_count):
            if not self._whole(piece, self.resumed):
                continue
            data = self._pread(m.piece_length(piece), m.piece_offset(piece))
            self._hashed(len(data))
            if m.piece_ok(piece, data):  # SHA-256, or SHA-1 for a torrent (btstore.py)
                self._remember(piece, data)
                self.present[piece] = 1
                found.append(piece)
        return found

    def write_piece(self, piece: int, data: bytes | bytearray) -> None:
        """Store the selected bytes of a piece the caller has verified."""
        view = memoryview(data)
        with self._io:
            for i, off, at, take in self._segments(self.manifest.piece_offset(piece),
                                                   len(data)):
                if i not in self.selected:
                    continue
                try:
                    if os.pwrite(self._file_fd(i), view[at : at + take], off) != take:
                        raise OSError(errno.ENOSPC, "short write")
                except OSError as e:
                    raise _storage_error(self._finals[i], e, "writing") from None
        if self._whole(piece):
            self._remember(piece, data)
        elif self.hold_shared:
            self._held[piece] = bytes(data)  # verified by the caller; not on disk whole
        self.present[piece] = 1

    def read_piece(self, piece: int) -> bytes:
        held = self._held.get(piece)
        return held if held is not None else super().read_piece(piece)

    def read_block(self, piece: int, offset: int, length: int) -> bytes:
        held = self._held.get(piece)
        if held is not None:
            return held[offset : offset + length]
        return super().read_block(piece, offset, length)

    def finish(self, final: Path | None, *, force: bool) -> None:
        """Trim each file to size, flush it, and rename it; create empty files and folders."""
        files = self.manifest.files
        for i in sorted(self.selected):
            dest = self._finals[i]
            check_output(dest, force=force)
            if files[i].size:
                with self._io:  # peers may still be reading pieces meanwhile
                    fd = self._file_fd(i)
                    try:
                        os.ftruncate(fd, files[i].size)
                        os.fsync(fd)
                        os.replace(part_path(dest), dest)
                        self._renamed.add(i)
                    except OSError as e:
                        raise _storage_error(dest, e, "finishing the download") from None
            else:
                with contextlib.suppress(FileNotFoundError):
                    if force:
                        os.unlink(dest)
                try:
                    os.close(_create_part(dest, None))
                except OSError as e:
                    raise _storage_error(dest, e, "creating an empty file") from None
        if self.keeps_pieces:
            for e in self.manifest.entries or ():
                if e.folder:
                    _safe_dir(self.path, e.parts)
        self.finished = True

    def close(self) -> None:
        with self._io:
            while self._fds:
                with contextlib.suppress(OSError):
                    os.close(self._fds.popitem()[1])

    def remove(self) -> None:
        self.close()
        for i in self.selected:
            with contextlib.suppress(OSError):
                os.unlink(part_path(self._finals[i]))
