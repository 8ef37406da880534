"""`fetch`: download one content hash from the swarm, verified, to a file or in order to a pipe.

To a file: pieces go into `NAME.part` in rarest-first order and the file is renamed when
every piece is verified; running again resumes from what `.part` holds. To a pipe: pieces
are picked in playback order inside a read-ahead window that advances only as fast as the
reader takes bytes, and spooled through a ring file of that window's size in a private temp
directory, so a slow player throttles the download instead of memory or disk filling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import events
from .errors import StorageError, UsageError
from .events import EventSink
from .link import Target
from .manifest import Manifest
from .picker import Picker
from .store import PartFile, SpoolRing, check_output, part_path
from .swarm import Swarm, SwarmConfig, no_peers_error
from .wire import DEFAULT_MAX_BLOCK

READ_AHEAD_BYTES = 32 * 1024 * 1024  # how far a pipe download may run ahead of the reader
MIN_READ_AHEAD_PIECES = 8


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


class ReaderGone(Exception):
    """The process reading our stdout went away (EPIPE): stop quietly."""


class Download:
    """Opens the store once the manifest is known and writes in-order output for pipes."""

    def __init__(
        self, swarm: Swarm, opts: FetchOptions, emit: EventSink, *, stream: bool = False
    ) -> None:
        self.swarm = swarm
        self.opts = opts
        self.emit = emit
        self.stream = stream  # `p2p stream`: in-order by default, a player's ranges first
        self.to_stdout = not stream and (
            opts.output == "-" or (opts.output is None and not opts.stdout_is_tty)
        )
        self.final: Path | None = None
        self.store: PartFile | None = None
        self.spool_dir: str | None = None
        self.written = 0  # pieces written to stdout

    def check_output_early(self) -> None:
        if self.to_stdout and self.opts.seed_after:
            # A pipe download keeps only its read-ahead window: nothing is left to seed.
            raise UsageError("--seed-after needs a file to seed from; give -o FILE")
        if self.to_stdout or self.opts.output is None:
            return
        check_output(Path(self.opts.output), force=self.opts.force)

    async def open_store(self, m: Manifest) -> None:
        window = None
        if self.to_stdout:
            window = max(MIN_READ_AHEAD_PIECES, READ_AHEAD_BYTES // m.piece_size)
            # Only the read-ahead window is spooled (a ring of `window` pieces in a private
            # temp directory): what went to the pipe cannot be resumed, so nothing else is kept.
            self.spool_dir = tempfile.mkdtemp(prefix="p2p-spool-")
            part = Path(self.spool_dir) / "spool"
            self.store = SpoolRing(part, m, window)
        else:
            self.final = Path(self.opts.output) if self.opts.output else Path.cwd() / m.name
            check_output(self.final, force=self.opts.force)
            part = part_path(self.final)
            self.store = PartFile(part, m, force=self.opts.force)
        found = await asyncio.to_thread(self.store.scan)
        lengths = [m.piece_length(i) for i in range(m.piece_count)]
        picker = Picker(
            lengths,
            min(m.piece_size, DEFAULT_MAX_BLOCK),
            sequential=self.to_stdout or self.stream,
            window=window,
        )
        picker.strict_priority = self.stream
        for i in found:
            picker.mark_have(i)
        if found:
            self.emit(events.Resume(pieces=len(found), path=str(part)))
        self.swarm.source = self.store
        self.swarm.picker = picker
        if picker.complete:
            self.swarm.complete.set()

    async def write_stdout(self) -> None:
        """Write verified pieces in order; the picker's window follows what was written."""
        await self.swarm.manifest_ready.wait()
        m, p, store = self.swarm.manifest, self.swarm.picker, self.store
        assert m is not None and p is not None and store is not None
        fd = self.opts.stdout_fd
        for i in range(m.piece_count):
            while not p.have[i]:
                await _pulse(self.swarm.piece_done)
            data = await asyncio.to_thread(store.read_piece, i)
            await asyncio.to_thread(_write_all, fd, data)
            if isinstance(store, SpoolRing):
                store.release(i)
            self.written = i + 1
            p.set_cursor(i + 1)
            self.swarm.refill_all()

    def cleanup(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.spool_dir is not None:
            shutil.rmtree(self.spool_dir, ignore_errors=True)


async def _pulse(event: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), 0.5)


def _write_all(fd: int, data: bytes) -> None:
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


def done_event(swarm: Swarm, m: Manifest, path: str, started: float) -> events.Done:
    """The `done` event: one shape for `fetch` and `stream`, which cli/output.py renders.

    `path` is "-" for stdout; `started` is the command's time.monotonic() at start.
    """
    return events.Done(
        name=m.name,
        size=m.size,
        path=path,
        seconds=round(time.monotonic() - started, 3),
        received=swarm.bytes_down,
        peers=dict(swarm.per_peer_received),
        connections=dict(swarm.peer_connections),
        sent=swarm.bytes_up,
    )


async def fetch(
    target: Target, config: SwarmConfig, opts: FetchOptions, emit: EventSink
) -> events.Done | events.ReaderGone:
    """Download `target`; returns the summary event. Raises P2PError subclasses."""
    swarm = Swarm(target.content_hash, config, emit)
    dl = Download(swarm, opts, emit)
    dl.check_output_early()
    swarm.on_manifest = dl.open_store
    started = time.monotonic()
    writer: asyncio.Task | None = None
    reporter = asyncio.ensure_future(_report(swarm, dl))
    try:
        await swarm.start()
        swarm.last_peer_time = time.monotonic()
        if dl.to_stdout:
            writer = asyncio.ensure_future(dl.write_stdout())
        while True:
            if swarm.fatal is not None:
                raise swarm.fatal
            if swarm.complete.is_set() and (writer is None or writer.done()):
                if writer is not None:
                    writer.result()  # re-raise a write error
                break
            if writer is not None and writer.done():
                writer.result()
            if not swarm.helpful_peers and time.monotonic() - swarm.last_peer_time > config.timeout:
                raise no_peers_error(swarm, config.timeout)
            waits = [asyncio.ensure_future(swarm.fatal_event.wait())]
            if writer is not None:
                waits.append(writer)
            else:
                waits.append(asyncio.ensure_future(swarm.complete.wait()))
            _done, pending = await asyncio.wait(waits, timeout=0.5, return_when="FIRST_COMPLETED")
            for t in pending:
                if t is not writer:
                    t.cancel()
        m = swarm.manifest
        assert m is not None and dl.store is not None
        if not dl.to_stdout:
            await asyncio.to_thread(dl.store.finish, dl.final, force=opts.force)
        summary = done_event(swarm, m, str(dl.final) if dl.final else "-", started)
        emit(summary)
        if opts.seed_after:
            if dl.final is not None:
                # Serve from the finished file under its final name.
                dl.store.path = dl.final
            emit(events.Seeding(hash=swarm.content_id))
            while swarm.fatal is None:
                await swarm.fatal_event.wait()
            raise swarm.fatal
        return summary
    except ReaderGone:
        gone = events.ReaderGone(written_pieces=dl.written)
        emit(gone)
        return gone
    finally:
        reporter.cancel()
        if writer is not None:
            writer.cancel()
        swarm.accepting = False
        await swarm.close()
        dl.cleanup()


async def _report(swarm: Swarm, dl: Download) -> None:
    """A progress event every half second."""
    while True:
        await asyncio.sleep(0.5)
        ev = swarm.progress()
        if dl.to_stdout:
            ev = replace(ev, written=dl.written)
        if dl.store is not None:
            ev = replace(ev, hashed=dl.store.bytes_hashed)  # checking work, comparable with "sent"
        swarm.emit(ev)
