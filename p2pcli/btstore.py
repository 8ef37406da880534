"""Where a torrent's verified pieces go: p2p's own store, not a second one.

A torrent is shown to the store as a manifest (btview.TorrentView: SHA-1 piece hashes, the
info hash as the content hash), so a fetch of a magnet link or a .torrent uses what a p2p
fetch uses: `NAME.part` with its trailer and resume rules (store.PartFile), a folder's
`.part` files (treestore.TreePart), the stdout spool ring and its in-order writing
(store.SpoolRing, download.stdout_bytes), and the final-name rule and message
(store.check_output, download.output_base). Running the same fetch again after an
interruption re-verifies the `.part`'s pieces and asks peers only for the others; a `.part`
of other content (its trailer names another info hash or a p2p share) is refused without
--force.

Seeding (`p2p seed --torrent`) reads the files as they are: `TorrentFiles`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .btfetch import window_pieces
from .btview import TorrentView
from .download import FetchOptions, output_base, stdout_bytes, write_all
from .magnet import TorrentInfo
from .store import PartFile, SpoolRing, check_output, part_path
from .treestore import TreePart


class TorrentStore:
    """One torrent download's store: to a file, a folder, or stdout (`output` "-").

    `chosen`: --select's files (None: all). `stream`: btstream's (pieces shared with an
    unselected file are kept in memory to be read back). `window_bytes`: to stdout, the
    fetch's read-ahead (btfetch.BtDownload's window, which the spool ring matches).
    Opening scans what a `.part` already holds: `found`.
    """

    def __init__(self, info: TorrentInfo, output: str, *, force: bool,
                 chosen: list[int] | None = None, stdout_fd: int = 1, stream: bool = False,
                 window_bytes: int = 0) -> None:
        m = self.manifest = TorrentView(info)
        self.force = force
        self.fd = stdout_fd
        self.span: tuple[int, int] | None = None
        self.next = 0  # to stdout: the next piece to write
        self.spool_dir: str | None = None
        self.final: Path | None = None
        self.store: PartFile
        if output == "-":
            f = m.files[chosen[0]] if chosen is not None else None
            self.span = (f.offset, f.end) if f is not None else (0, m.size)
            self.next = self.span[0] // m.piece_size
            # Only the read-ahead window is spooled, in a private temp directory, as for
            # a p2p fetch to a pipe: what went to the pipe cannot be resumed.
            self.spool_dir = tempfile.mkdtemp(prefix="p2p-spool-")
            ring = SpoolRing(Path(self.spool_dir) / "spool", m,  # type: ignore[arg-type]
                             window_pieces(window_bytes, m.piece_size))
            ring.low = self.next
            self.store = ring
            self.path = "-"
        elif info.multi_file:
            opts = FetchOptions(output=output, force=force)
            base = output_base(opts, m)  # type: ignore[arg-type]
            every = list(range(len(m.files)))
            self.store = TreePart(base, m, every if chosen is None else chosen,  # type: ignore[arg-type]
                                  force=force, hold_shared=stream)
            self.path = str(self.store.path)
        else:
            final = Path(output)
            if final.is_dir():
                final = final / info.name  # -o DIR: DIR/NAME
            check_output(final, force=force)
            self.store = PartFile(part_path(final), m, force=force)  # type: ignore[arg-type]
            self.final = final
            self.path = str(final)
        try:
            self.found = self.store.scan()
        except BaseException:
            self.close()
            raise

    @property
    def part(self) -> str:
        """What a `resume` event names: the `.part` file, or a folder's root."""
        return str(self.store.path)

    def write(self, index: int, data: bytes) -> int | None:
        """Store a piece verified by the core; to stdout, write what is now in order and
        return the next piece stdout waits for (None: to a file or folder)."""
        self.store.write_piece(index, data)
        if self.span is None:
            return None
        ring, m = self.store, self.manifest
        last = (self.span[1] - 1) // m.piece_size if self.span[1] > self.span[0] else -1
        while self.next <= last and ring.has(self.next):
            write_all(self.fd, stdout_bytes(ring, m, self.next, self.span))  # type: ignore[arg-type]
            ring.release(self.next)  # type: ignore[attr-defined]
            self.next += 1
        return self.next

    def read(self, index: int, begin: int, length: int) -> bytes:
        """A block of a verified piece (btstream's responses), re-checked as p2p's are."""
        return self.store.read_block(index, begin, length)

    def finish(self) -> None:
        """Every wanted piece is in: trim, flush and rename (nothing for stdout). The files
        stay open, readable under their final names."""
        if self.span is not None:
            return
        if isinstance(self.store, TreePart):
            self.store.finish(None, force=self.force)
        else:
            self.store.finish(self.final, force=self.force)

    def close(self) -> None:
        """Close the files; an unfinished `.part` stays, to be resumed."""
        self.store.close()
        if self.spool_dir is not None:
            shutil.rmtree(self.spool_dir, ignore_errors=True)
            self.spool_dir = None


class TorrentFiles:
    """The files of a torrent being seeded, read as one byte stream in torrent order."""

    def __init__(self, info: TorrentInfo, paths: list[Path]) -> None:
        self.info = info
        self.files: list[tuple[int, int, int]] = []  # offset, length, fd
        try:
            for f, path in zip(info.files, paths, strict=True):
                self.files.append((f.offset, f.length, os.open(path, os.O_RDONLY)))
        except BaseException:
            self.close()
            raise

    def read(self, index: int, begin: int, length: int) -> bytes:
        start = index * self.info.piece_length + begin
        end = start + length
        out = bytearray()
        for offset, flen, fd in self.files:
            lo, hi = max(start, offset), min(end, offset + flen)
            if lo < hi:
                out += os.pread(fd, hi - lo, lo - offset)
        return bytes(out)

    def close(self) -> None:
        for _, _, fd in self.files:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.files = []
