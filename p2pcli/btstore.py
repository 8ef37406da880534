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

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import events as ev
from .btfetch import BtDownload, window_pieces
from .btview import TorrentView
from .download import FetchOptions, output_base, stdout_bytes, write_all
from .errors import P2PError, StorageError
from .events import EventSink
from .magnet import TorrentInfo
from .store import PartFile, SpoolRing, check_output, part_path
from .treestore import TreePart


class TorrentStore:
    """One torrent download's store: to a file, a folder, or stdout (`output` "-", not for
    a stream: as `p2p stream -o -`, a stream writes a file named "-").

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
        if output == "-" and not stream:
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

    def write(self, index: int, data: bytes) -> None:
        """Store a piece verified by the core (to stdout: into the spool ring, for
        `write_out`)."""
        self.store.write_piece(index, data)

    @property
    def written_all(self) -> bool:
        """To stdout: every wanted piece has gone to it."""
        assert self.span is not None
        m = self.manifest
        last = (self.span[1] - 1) // m.piece_size if self.span[1] > self.span[0] else -1
        return self.next > last

    async def write_out(self) -> int:
        """To stdout: write the pieces now in order, each off the event loop, and return
        the next piece stdout waits for. A reader that pauses (`| mpv -`, paused) then
        blocks a thread, not the loop that keeps the data channels, ICE and the trackers
        alive (as download.Download._write_stdout). One caller at a time (BtSink)."""
        assert self.span is not None
        ring, m = self.store, self.manifest
        while not self.written_all and ring.has(self.next):
            await asyncio.to_thread(_piece_out, self.fd, ring, m, self.next, self.span)
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


def _piece_out(fd: int, ring: PartFile, m: TorrentView, i: int, span: tuple[int, int]) -> None:
    write_all(fd, stdout_bytes(ring, m, i, span))  # type: ignore[arg-type]


class BtSink:
    """What a torrent fetch (btsession._MagnetSink) and a torrent stream (btstream._BtSwarm)
    share: the store opens off the event loop once the metadata is known (resuming
    re-verifies a `.part`'s pieces: SHA-1 of all of it), the pieces it holds are not asked
    for, verified pieces go to it after each batch of the core's actions, and to stdout one
    writer task writes them in order off the loop. A failure goes to `fail`: it ends the
    command."""

    def __init__(self, emit: EventSink) -> None:
        self.emit = emit
        self.dl: BtDownload  # set by the command once made
        self.peers = None  # btsession.BtPeers, once made: actions go out through it
        self.writer: TorrentStore | None = None  # once the metadata is known
        self.opening = False  # open_store is under way
        self.kick = asyncio.Event()  # a piece came in: stdout's writer may have work

    # -- what each command says --------------------------------------------------------

    def fail(self, e: BaseException) -> None:
        raise NotImplementedError

    @property
    def stopped(self) -> bool:
        """A failure or the end: nothing more is written."""
        raise NotImplementedError

    def make_store(self, meta: TorrentInfo) -> TorrentStore:
        """Open the store (in a thread)."""
        raise NotImplementedError

    def opened(self, writer: TorrentStore) -> None:
        """The store is open, before any piece is asked for."""

    def verified(self) -> None:
        """Pieces were stored."""

    def completed(self) -> None:
        """Every wanted piece is in the store (to stdout: and written out)."""

    # -- shared --------------------------------------------------------------------------

    async def open_store(self, meta: TorrentInfo) -> None:
        try:
            writer = await asyncio.to_thread(self.make_store, meta)
        except P2PError as e:  # a usage or storage error: the command's
            self.fail(e)
            return
        except OSError as e:  # one not mapped to a StorageError by the store
            self.fail(StorageError(f"opening the download's files failed: {e}"))
            return
        except Exception as e:  # a bug: it ends the command (with its traceback) at once
            self.fail(e)
            return
        self.writer = writer
        if writer.found:
            self.emit(ev.Resume(pieces=len(writer.found), path=writer.part))
        self.opened(writer)
        assert self.peers is not None
        self.peers.apply(self.dl.store_opened(writer.found, time.monotonic()))
        if writer.span is not None:
            self.peers.spawn(self._write_out(writer))

    def after(self) -> None:
        """After each batch of the core's actions: the store opened once the content is
        known, then verified pieces to it."""
        dl, writer = self.dl, self.writer
        if self.stopped or dl.info is None:
            return
        if writer is None:
            if not self.opening and self.peers is not None:
                self.opening = True
                self.peers.spawn(self.open_store(dl.info))
            return
        pieces = dl.take_verified()
        try:
            for index, data in pieces:
                writer.write(index, data)
        except P2PError as e:  # a write error: the command's
            self.fail(e)
            return
        if pieces:
            self.verified()
            self.kick.set()
        if dl.complete and writer.span is None:
            self.completed()

    async def _write_out(self, writer: TorrentStore) -> None:
        """Stdout's one writer: what is in order goes out; the read-ahead window follows."""
        try:
            while not writer.written_all:
                await self.kick.wait()
                self.kick.clear()
                self.dl.consumed(await writer.write_out())
                if self.peers is not None and not self.stopped:
                    # What the window now admits is asked for at once, not at the next tick.
                    self.peers.apply(self.dl.tick(time.monotonic()))
        except Exception as e:  # a write error, the reader gone (ReaderGone), or a bug
            self.fail(e)
            return
        self.completed()


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
