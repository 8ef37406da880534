"""One download, for `fetch` and `stream`: its store, its wait, its end and its `done`.

To a file: pieces go into `NAME.part` and the file is renamed when every piece is verified;
running again resumes from what `.part` holds. To a pipe: pieces are picked in playback
order inside a read-ahead window that advances only as fast as the reader takes bytes, and
spooled through a ring file of that window's size in a private temp directory, so a slow
player throttles the download instead of memory or disk filling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events as ev
from .errors import StorageError, UsageError
from .events import EventSink
from .manifest import Entry, Manifest
from .picker import Picker
from .selection import first_video, one_file, pieces_for, select
from .store import PartFile, SpoolRing, check_output, part_path
from .swarm import Swarm, SwarmConfig, no_peers_error
from .treestore import TreePart
from .wire import DEFAULT_MAX_BLOCK

READ_AHEAD_BYTES = 32 * 1024 * 1024  # how far a pipe download may run ahead of the reader
MIN_READ_AHEAD_PIECES = 8
WAIT_STEP = 0.5  # seconds between checks of the peers while waiting


@dataclass
class FetchOptions:
    output: str | None = None
    "'-' for stdout, a path, or None: stdout when it is not a terminal, else the manifest's name."
    force: bool = False
    "Overwrite an existing output file."
    seed_after: bool = False
    "Keep serving the pieces after the download completes."
    stdout_is_tty: bool = True
    "Whether stdout is a terminal (decides the default output)."
    stdout_fd: int = 1
    "Where content goes in pipe mode."
    select: tuple[str, ...] = ()
    "`--select`: indices or patterns of the files of a folder share to fetch."


class ReaderGone(Exception):
    """The process reading our stdout went away (EPIPE): stop quietly."""


def writes_stdout(opts: FetchOptions, stream: bool = False) -> bool:
    """The download goes to stdout: `-o -`, or no -o with stdout not a terminal (`fetch`)."""
    return not stream and (opts.output == "-" or (opts.output is None and not opts.stdout_is_tty))


def check_output_args(opts: FetchOptions, stream: bool = False) -> None:
    """Refuse what the options make impossible before anything else happens (a LAN search
    or a server's retries first would only delay the usage error)."""
    if writes_stdout(opts, stream) and opts.seed_after:
        # A pipe download keeps only its read-ahead window: nothing is left to seed.
        raise UsageError("--seed-after needs a file to seed from; give -o FILE")
    if writes_stdout(opts, stream) or opts.output is None:
        return
    out = Path(opts.output)
    if out.is_dir():
        return  # a folder: the share goes inside it (DIR/NAME, or a folder share's tree)
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not an existing folder; create it or choose "
                         "another -o")
    check_output(out, force=opts.force)


def output_base(opts: FetchOptions, m: Manifest) -> Path:
    """Where a folder share's tree goes: the -o folder (made if missing), else here."""
    if opts.output is None:
        return Path.cwd()
    base = Path(opts.output)
    if base.is_dir():
        return base
    if os.path.lexists(base):
        raise UsageError(f"{base} is not a folder; this share holds {len(m.files)} files: "
                         "give -o DIR")
    try:
        base.mkdir()
    except FileNotFoundError:
        raise UsageError(f"{base.parent} is not an existing folder; create it or choose "
                         "another -o") from None
    except OSError as e:
        raise StorageError(f"{base}: cannot create the folder ({e.strerror})") from None
    return base


class Download:
    """Opens the store once the manifest is known, waits for the pieces, and finishes."""

    def __init__(self, content_hash: bytes, config: SwarmConfig, opts: FetchOptions,
                 emit: EventSink, *, stream: bool = False,
                 on_manifest: Callable[[Manifest], None] | None = None) -> None:
        self.swarm = Swarm(content_hash, config, emit, open_store=self.open_store)
        self.on_manifest = on_manifest
        "Called once the store is open (stream: sets up its read-ahead)."
        self.opts = opts
        self.emit = emit
        self.stream = stream  # `p2p stream`: in-order by default, a player's ranges first
        self.to_stdout = writes_stdout(opts, stream)
        self.final: Path | None = None
        self.store: PartFile | TreePart | None = None
        self.span: tuple[int, int] | None = None
        "A folder share's one file going to stdout: its bytes [start, end) in the share."
        self.stream_file: Entry | None = None
        "`stream` of a folder share: the file played (--select, else the first video)."
        self.spool_dir: str | None = None
        self.written = 0  # pieces written to stdout
        self.writer: asyncio.Task | None = None
        self.started = time.monotonic()
        self.done: ev.Done | None = None
        "The `done` event, once the download is complete and in place."

    def check_output_early(self) -> None:
        check_output_args(self.opts, self.stream)

    async def start(self) -> None:
        await self.swarm.start()
        if self.to_stdout:
            self.writer = asyncio.ensure_future(self._write_stdout())

    async def open_store(self, m: Manifest) -> tuple[PartFile | TreePart, Picker]:
        window = None
        chosen = select(m, self.opts.select)  # refuses a bad --select before anything else
        skip: list[int] = []
        if m.is_tree and self.to_stdout:
            if not self.opts.select:
                raise UsageError(f"this share holds {len(m.files)} files: give -o DIR to write "
                                 "them, or --select one of them to write it to stdout")
            f = one_file(m, self.opts.select, "writing to stdout (-o -)")
            self.span = (f.offset, f.end)
        elif m.is_tree:
            if self.stream:
                chosen = [self._stream_choice(m, chosen)]
                self.stream_file = m.files[chosen[0]]
            wanted = set(pieces_for(m, chosen))
            skip = [i for i in range(m.piece_count) if i not in wanted]
        if self.span is not None:
            wanted = set(m.pieces_for_range(*self.span))
            skip = [i for i in range(m.piece_count) if i not in wanted]
        if self.to_stdout:
            window = max(MIN_READ_AHEAD_PIECES, READ_AHEAD_BYTES // m.piece_size)
            # Only the read-ahead window is spooled (a ring of `window` pieces in a private
            # temp directory): what went to the pipe cannot be resumed, so nothing else is kept.
            self.spool_dir = tempfile.mkdtemp(prefix="p2p-spool-")
            part = Path(self.spool_dir) / "spool"
            self.store = SpoolRing(part, m, window)
            if self.span is not None:  # the ring starts at the selected file's first piece
                self.store.low = self.span[0] // m.piece_size
        elif m.is_tree:
            base = output_base(self.opts, m)
            self.store = await asyncio.to_thread(TreePart, base, m, chosen,
                                                 force=self.opts.force,
                                                 hold_shared=self.stream)
            self.final = part = self.store.path
        else:
            self.final = Path(self.opts.output) if self.opts.output else Path.cwd() / m.name
            if self.final.is_dir():
                self.final = self.final / m.name  # -o DIR: DIR/NAME
            check_output(self.final, force=self.opts.force)
            part = part_path(self.final)
            self.store = PartFile(part, m, force=self.opts.force)
        found = await asyncio.to_thread(self.store.scan)
        lengths = [m.piece_length(i) for i in range(m.piece_count)]
        picker = Picker(lengths, min(m.piece_size, DEFAULT_MAX_BLOCK),
                        sequential=self.to_stdout or self.stream, window=window,
                        request_timeout=self.swarm.config.request_timeout)
        picker.strict_priority = self.stream
        for i in found:
            picker.mark_have(i)
        picker.skip(skip)
        if self.span is not None:
            picker.set_cursor(self.span[0] // m.piece_size)
        if found:
            self.emit(ev.Resume(pieces=len(found), path=str(part)))
        if self.on_manifest is not None:
            self.on_manifest(m)
        return self.store, picker

    def _stream_choice(self, m: Manifest, chosen: list[int]) -> int:
        if self.opts.select:
            if len(chosen) != 1:
                one_file(m, self.opts.select, "p2p stream")  # raises, saying why
            return chosen[0]
        video = first_video(m)
        if video is None:
            raise UsageError(f"this share holds {len(m.files)} files and none looks like a "
                             "video (by its extension); choose one with --select (p2p info "
                             "LINK lists them)")
        return video

    def serve_from_final(self) -> None:
        """After `done`, serve pieces from the finished file under its final name."""
        if self.final is not None and self.store is not None:
            self.store.path = self.final

    async def step(self, also: list[asyncio.Future] | None = None) -> None:
        """Wait a little for progress, `also` or the end; raise if the download failed
        (a fatal error, a write error, or nobody usable for `--timeout`). Finishes the
        download (rename, `done` event) once every piece is in."""
        swarm = self.swarm
        if swarm.fatal is not None:
            raise swarm.fatal
        if self.writer is not None and self.writer.done():
            self.writer.result()  # re-raise a write error
        if self.done is None and swarm.complete.is_set() and (
                self.writer is None or self.writer.done()):
            await self._finish()
            return
        core, timeout = swarm.core, swarm.config.timeout
        # Complete, only the pipe's reader is awaited: it may take its time.
        if self.done is None and not core.complete and (
                core.idle_for(time.monotonic()) > timeout):
            raise no_peers_error(core, timeout, swarm.turn_urls(), pipe=self.to_stdout)
        waits = [asyncio.ensure_future(swarm.fatal_event.wait())]
        if self.done is None:
            waits.append(self.writer if self.writer is not None
                         else asyncio.ensure_future(swarm.complete.wait()))
            if not swarm.manifest_ready.is_set():
                waits.append(asyncio.ensure_future(swarm.manifest_ready.wait()))
        waits += also or []
        _, pending = await asyncio.wait(waits, timeout=WAIT_STEP, return_when="FIRST_COMPLETED")
        for t in pending:
            if t is not self.writer and t not in (also or []):
                t.cancel()

    async def _finish(self) -> None:
        m, store = self.swarm.manifest, self.store
        assert m is not None and store is not None
        if isinstance(store, TreePart):
            await asyncio.to_thread(store.finish, None, force=self.opts.force)
        elif not self.to_stdout:
            await asyncio.to_thread(store.finish, self.final, force=self.opts.force)
        core = self.swarm.core
        size = m.size
        if isinstance(store, TreePart):
            size = sum(m.files[i].size for i in store.selected)
        elif self.span is not None:
            size = self.span[1] - self.span[0]
        self.done = ev.Done(
            name=m.name, size=size, path=str(self.final) if self.final else "-",
            seconds=round(time.monotonic() - self.started, 3), received=core.bytes_down,
            peers=dict(core.received_from), connections=dict(core.connections),
            sent=core.bytes_up,
        )
        self.emit(self.done)

    async def _write_stdout(self) -> None:
        """Write verified pieces in order; the picker's window follows what was written."""
        swarm = self.swarm
        await swarm.manifest_ready.wait()
        m, p, store = swarm.manifest, swarm.picker, self.store
        assert m is not None and p is not None and store is not None
        fd = self.opts.stdout_fd
        start, end = self.span or (0, m.size)
        for i in m.pieces_for_range(start, end):
            while not p.have[i]:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(swarm.piece_done.wait(), WAIT_STEP)
            data = await asyncio.to_thread(stdout_bytes, store, m, i, self.span)
            await asyncio.to_thread(write_all, fd, data)
            if isinstance(store, SpoolRing):
                store.release(i)
            self.written = i + 1
            swarm.set_cursor(i + 1)

    async def report(self, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        """A progress event every half second (`extra`: the command's own fields)."""
        while True:
            await asyncio.sleep(WAIT_STEP)
            fields: dict[str, Any] = {}
            if self.to_stdout:
                fields["written"] = self.written
            if self.store is not None:
                fields["hashed"] = self.store.bytes_hashed  # checking work, next to "sent"
            if extra is not None:
                fields.update(extra())
            self.emit(dataclasses.replace(self.swarm.core.progress(), **fields))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.writer
        self.swarm.core.stop_accepting()
        await self.swarm.close()
        if self.store is not None:
            self.store.close()
        if self.spool_dir is not None:
            shutil.rmtree(self.spool_dir, ignore_errors=True)


def stdout_bytes(store: PartFile, m: Manifest, i: int, span: tuple[int, int] | None) -> bytes:
    """Piece `i` as it goes to stdout, in order: with `span` (a folder's or a torrent's one
    file), only that file's bytes of it. Shared with torrents (btstore.TorrentStore)."""
    data = store.read_piece(i)
    if span is not None:
        at = m.piece_offset(i)
        data = data[max(0, span[0] - at) : span[1] - at]
    return data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except BrokenPipeError:
        raise ReaderGone() from None
    except OSError as e:
        if e.errno == errno.EPIPE:
            raise ReaderGone() from None
        raise StorageError(f"writing to stdout failed ({e.strerror})") from None
