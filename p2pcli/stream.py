"""`stream`: serve content over local HTTP while it downloads, and play it.

An aiohttp server on 127.0.0.1 answers GET/HEAD with byte ranges; each response waits for
the verified pieces under it and never sends an unverified byte. The pieces under open
responses come first, then a read-ahead window (readahead.py), then the rest in order; a
new range (a seek) re-prioritises at once and cancels requests nobody needs any more.
The download itself is fetch's `.part` file, so an interrupted stream resumes.

Start-up order, for the first frame: a plain socket listens, and when the link names the
file the URL is published (and the player started) at once, before the HTTP server's and
the swarm's modules (aiohttp, aiortc, Socket.IO: most of the start-up time) are imported
and before any peer is found. The player starts up meanwhile; its connection waits in the
socket's backlog until aiohttp serves that socket, and its first request then waits for the
swarm and the verified manifest. A bare hash has no name for the URL: its URL waits for the
manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import itertools
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import ManifestError, StorageError, UsageError
from .events import EventSink
from .httprange import RangeNotSatisfiable, parse_range
from .link import Target
from .localhttp import (
    SAFE_HEADERS,
    Refused,
    check_host,
    check_name,
    check_secret,
    media_type,
    new_secret,
)
from .manifest import Manifest
from .manifest import check_name as check_file_name
from .player import MpvIpc, find_player, player_command, private_dir, url_argument
from .readahead import PlayerState, ReadAhead, Reader
from .store import check_output

if TYPE_CHECKING:
    # Imported by `stream()` once the URL is out: aiohttp, aiortc and Socket.IO.
    from aiohttp import web

    from .download import Download
    from .swarm import Swarm, SwarmConfig

SEND_CHUNK = 256 * 1024


@dataclass
class StreamOptions:
    player: str | None = None
    "mpv, vlc, ffplay, none, or None for the first one installed."
    port: int = 0
    "HTTP port on 127.0.0.1 (0: any free port)."
    output: str | None = None
    "Where the download is kept (default: the sender's file name)."
    force: bool = False
    "Overwrite an existing output file."
    keep_seeding: bool = False
    "Keep downloading and seeding after the player exits."
    player_args: list[str] = field(default_factory=list)
    "Extra arguments for the player."
    show_player_output: bool = True
    "Let the player write to our stderr (off with --quiet/--json)."
    select: tuple[str, ...] = ()
    "A folder share's file to play (`--select`); default: its first video file."
    before_swarm: Callable[[], None] | None = None
    """Called once the URL may be out, before the swarm's modules are imported: the
    command's `patches.apply` (which loads aiortc) goes here, after the player started."""


class Streamer:
    def __init__(self, emit: EventSink) -> None:
        self.swarm: Swarm | None = None
        self.dl: Download | None = None
        self.attached = asyncio.Event()
        "Set once the download exists: requests that come before it wait for it."
        self.url_name: str | None = None
        "The file name in the published URL (the link's, or the manifest's)."
        self.emit = emit
        self.readers: set[Reader] = set()
        self._serial = itertools.count()
        self.readahead: ReadAhead | None = None
        self.player = PlayerState()
        self.mpv: MpvIpc | None = None
        self._last_priority: list[int] = []
        self.bytes_served = 0
        self.first_byte_at: float | None = None
        self.started = time.monotonic()
        self.secret = new_secret()
        "The URL's unguessable first path segment (localhttp.py)."
        self.port = 0
        "The bound port, for the Host check; set once the server listens."
        self.stopping = False
        "The command is ending: responses still waiting for pieces end now."
        self.base = 0
        "Where the played file starts in the share's bytes (a folder share: not 0)."
        self.size = 0
        "The played file's size: what HTTP serves as the whole content."
        self.file_name = ""
        "The played file's name (its media type)."

    def attach(self, swarm: Swarm, dl: Download) -> None:
        self.swarm, self.dl = swarm, dl
        self.attached.set()

    # -- priorities ------------------------------------------------------------------------

    def content_known(self, m: Manifest) -> None:
        f = self.dl.stream_file if self.dl is not None else None
        if f is not None:  # one file of a folder share
            self.base, self.size, self.file_name = f.offset, f.size, f.path.rsplit("/", 1)[-1]
        else:
            self.base, self.size, self.file_name = 0, m.size, m.name
        self.readahead = ReadAhead(self.size, m.piece_size, self.base)
        # The head and the tail are wanted before any player reads (the swarm gets its
        # picker once this returns).
        asyncio.get_running_loop().call_soon(self.reprioritize)

    def on_player_change(self) -> None:
        st = self.mpv.state if self.mpv else None
        m = self.swarm.manifest if self.swarm else None
        if st is None or m is None or self.readahead is None:
            return
        self.player.paused = st.paused
        if st.duration:
            self.player.duration = st.duration
            self.readahead.observe_bitrate(self.size / st.duration)
            if st.time_pos is not None:
                self.player.play_pos = int(min(1.0, st.time_pos / st.duration) * self.size)
        self.reprioritize()

    def reprioritize(self) -> None:
        if self.readahead is None or self.swarm is None or self.swarm.picker is None:
            return
        prio = self.readahead.priority(list(self.readers), self.player)
        if prio != self._last_priority:
            self._last_priority = prio
            self.swarm.set_priority(prio)

    # -- HTTP ------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        """The URL to publish, with `name` as its last segment (what requests must name)."""
        self.url_name = name
        return f"http://127.0.0.1:{self.port}/{self.secret}/{_url_name(name)}"

    def _refuse(self, request: web.Request, e: Refused) -> web.Response:
        from aiohttp import web

        self.emit(ev.Http(method=request.method, status=e.status, error=str(e)))
        return web.Response(status=e.status, text=f"{e}\n", headers=SAFE_HEADERS)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web  # loaded by _serve_http before any request is read

        # Who may read, before anything waits on the swarm: nobody without the secret
        # holds a connection open (localhttp.py says why each check is there).
        try:
            check_host(request.headers.getall("Host", []), self.port)
            rest = check_secret(request.path, self.secret)
        except Refused as e:
            return self._refuse(request, e)
        # A player started before the swarm existed (the link named the file) waits here.
        await self.attached.wait()
        swarm = self.swarm
        assert swarm is not None
        try:
            await asyncio.wait_for(swarm.manifest_ready.wait(), swarm.config.timeout * 3)
        except TimeoutError:
            return web.Response(status=503, text="content not found yet; try again\n",
                                headers=SAFE_HEADERS)
        m = swarm.manifest
        assert m is not None
        if rest == "" and m.is_tree:
            return self._listing(request, m)
        try:
            # The name in the URL we published: the link's when it named the file (the
            # media type below still comes from the verified manifest's name).
            check_name(rest, self.url_name or m.name)
        except Refused as e:
            return self._refuse(request, e)
        size = self.size
        # The content is named by its hash, so the hash is a strong validator for If-Range
        # (with the file's offset: a folder share serves one of its files).
        etag = f'"{swarm.content_hash.hex()}"' if not m.is_tree else (
            f'"{swarm.content_hash.hex()}-{self.base}"')
        headers = {**SAFE_HEADERS, "Accept-Ranges": "bytes",
                   "Content-Type": media_type(self.file_name), "ETag": etag}
        try:
            rng = parse_range(request.headers.get("Range"), size,
                              if_range=request.headers.get("If-Range"), etag=etag)
        except RangeNotSatisfiable as e:
            self.emit(ev.Http(method=request.method, status=416, error=str(e)))
            return web.Response(
                status=416, headers={**SAFE_HEADERS, "Content-Range": f"bytes */{size}",
                                     "Accept-Ranges": "bytes"}
            )
        start, end = (rng.start, rng.end) if rng else (0, size)
        headers["Content-Length"] = str(end - start)
        status = 206 if rng else 200
        if rng:
            headers["Content-Range"] = rng.content_range(size)
        self.emit(ev.Http(method=request.method, status=status, range=[start, end],
                          verified=swarm.picker.n_have if swarm.picker else 0))
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        if request.method == "HEAD" or start == end:
            await resp.write_eof()
            return resp
        reader = Reader(pos=start, end=end, serial=next(self._serial))
        self.readers.add(reader)
        self.reprioritize()
        try:
            await self._send_range(resp, reader)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        except StorageError as e:
            # The file changed on disk under a verified piece: the player gets a cut
            # response, never the changed bytes, and the command stops with exit 6.
            self.swarm.fail(e)
        finally:
            self.readers.discard(reader)
            self.reprioritize()
        return resp

    def _listing(self, request: web.Request, m: Manifest) -> web.Response:
        """`/SECRET/` of a folder share: its files, the one being played linked."""
        from html import escape

        from aiohttp import web

        self.emit(ev.Http(method=request.method, status=200, range=[0, 0], verified=0))
        rows = []
        for i, f in enumerate(m.files):
            label = escape(f.path)
            if f.offset == self.base and f.size == self.size and self.url_name:
                label = f'<a href="{escape(_url_name(self.url_name))}">{label}</a> (playing)'
            rows.append(f"<li>{i}: {label}, {f.size} bytes</li>")
        body = (f"<!doctype html><meta charset=utf-8><title>{escape(m.name)}</title>"
                f"<h1>{escape(m.name)}</h1><ol start=0>{''.join(rows)}</ol>"
                "<p>p2p stream --select INDEX|PATTERN plays another file.</p>\n")
        return web.Response(text=body, content_type="text/html", headers=SAFE_HEADERS)

    async def _send_range(self, resp: web.StreamResponse, reader: Reader) -> None:
        swarm, dl = self.swarm, self.dl
        assert swarm is not None and dl is not None
        m, p, store = swarm.manifest, swarm.picker, dl.store
        assert m is not None and p is not None and store is not None
        base = self.base  # reader positions are in the file; pieces in the share
        while reader.pos < reader.end:
            at = base + reader.pos
            piece = at // m.piece_size
            while not p.have[piece]:
                if swarm.fatal_event.is_set() or self.stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(swarm.piece_done.wait(), 0.5)
            piece_end = min(base + reader.end, m.piece_offset(piece) + m.piece_length(piece))
            n = min(piece_end - at, SEND_CHUNK)
            off = at - m.piece_offset(piece)
            data = await asyncio.to_thread(store.read_block, piece, off, n)
            await resp.write(data)
            if self.first_byte_at is None:
                self.first_byte_at = time.monotonic()
                self.emit(ev.FirstByte(seconds=round(self.first_byte_at - self.started, 3)))
            reader.pos += n
            self.bytes_served += n
            if (base + reader.pos) // m.piece_size != piece:
                self.reprioritize()

    def progress_fields(self) -> dict[str, Any]:
        """What a stream adds to the download's progress event."""
        fields: dict[str, Any] = {"served": self.bytes_served,
                                  "buffer_ahead": self.buffer_ahead()}
        if self.player.play_pos is not None:
            fields.update(play_pos=self.player.play_pos, paused=self.player.paused)
        return fields

    def buffer_ahead(self) -> int:
        """Verified bytes in a row from the play position (or the newest read)."""
        if self.swarm is None:
            return 0
        m, p = self.swarm.manifest, self.swarm.picker
        if m is None or p is None:
            return 0
        pos = self.player.play_pos
        if pos is None:
            newest = max(self.readers, key=lambda r: r.serial, default=None)
            pos = newest.pos if newest else 0
        pos += self.base
        piece = pos // m.piece_size if m.piece_size else 0
        ahead = 0
        while piece < p.count and p.have[piece]:
            ahead += m.piece_length(piece)
            piece += 1
        ahead -= pos - (pos // m.piece_size) * m.piece_size
        return max(0, min(ahead, self.base + self.size - pos))


def _listen(port: int) -> socket.socket:
    """The stream's listening socket, bound before aiohttp is imported: the URL (and the
    player) need only the port, and a connection made before aiohttp serves the socket
    waits in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As aiohttp's TCPSite does: a port in TIME_WAIT from our last run is free to reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} is in use; choose another with --port (0 picks a free one)"
            ) from None
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({e.strerror})") from None
    sock.setblocking(False)
    return sock


async def _serve_http(st: Streamer, sock: socket.socket) -> web.AppRunner:
    """Serve `st` on the listening socket. aiohttp's server half is imported in a thread:
    the event loop meanwhile carries on with the swarm's handshakes, and the import runs
    while the loop waits on the network (the GIL passes between them)."""
    try:
        web = await asyncio.to_thread(importlib.import_module, "aiohttp.web")
    except (ImportError, RuntimeError):
        # An import in a thread can meet one on the loop's thread (the import lock's
        # _DeadlockError, a RuntimeError): import it again here, where that cannot happen.
        web = importlib.import_module("aiohttp.web")
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", st.handle)
    app.router.add_route("HEAD", "/{tail:.*}", st.handle)
    # A player's request can wait for pieces that will never come once we stop: bound
    # the wait for open responses at shutdown (aiohttp's default is 60 s).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await asyncio.shield(runner.cleanup())
        raise
    return runner


async def _stop_serving(serving: asyncio.Task[web.AppRunner]) -> None:
    if not serving.done():
        serving.cancel()
    # Wait for it without taking its outcome as ours: a cancellation of the command itself
    # (a forced stop) must still reach the caller.
    await asyncio.wait({serving})
    if not serving.cancelled() and serving.exception() is None:
        await serving.result().cleanup()


def preflight(target: Target, opts: StreamOptions) -> str | None:
    """Fail fast, before anything is published or searched for: no player, an existing
    output file (by default named as the link says; the manifest's name is checked again
    when known). Returns the player to start (None: `--player none`)."""
    player = None if opts.player == "none" else find_player(opts.player)
    early = _name_for_url(target.name)
    if opts.output is not None and not Path(opts.output).is_dir() and not Path(
            opts.output).parent.is_dir():
        # Bad input (exit 2), said at once: it was a disk error (6) once the download began.
        raise UsageError(f"{Path(opts.output).parent} is not an existing folder; create it "
                         "or choose another -o")
    if opts.output is not None or early is not None:
        check_output(Path(opts.output or early), force=opts.force)
    return player


async def stream(
    target: Target, config: SwarmConfig, opts: StreamOptions, emit: EventSink,
    swarm_for: Callable[[Download], Swarm] | None = None,
) -> ev.Event:
    """Download `target` while serving it over local HTTP to a player (or to whoever
    reads the `serving` event's URL: `--player none`). `swarm_for` replaces the
    download's swarm (`stream CODE`: one that meets only the peer that proved the code)."""
    player = preflight(target, opts)
    early = _name_for_url(target.name)
    st = Streamer(emit)
    sock = _listen(opts.port)
    st.port = sock.getsockname()[1]
    play = _Player(opts, player)
    tasks: list[asyncio.Task] = []
    dl: Download | None = None
    serving: asyncio.Task[web.AppRunner] | None = None
    try:
        if early is not None:
            # The player starts up while the swarm's modules load and peers are found.
            await play.show(early, None, st, emit, tasks)
        if opts.before_swarm is not None:
            opts.before_swarm()
        from .download import Download, FetchOptions  # aiortc, Socket.IO: most of start-up

        dl = Download(
            target.content_hash, config,
            FetchOptions(output=opts.output, force=opts.force, stdout_is_tty=True,
                         select=opts.select), emit,
            stream=True, on_manifest=lambda m: st.content_known(m),
        )
        if swarm_for is not None:
            dl.swarm = swarm_for(dl)
        swarm = dl.swarm
        st.attach(swarm, dl)
        await dl.start()
        # Once the swarm has asked the signaling server for peers, while it waits for
        # them and connects. No request can be answered before the manifest anyway.
        serving = asyncio.ensure_future(_serve_http(st, sock))
        while not swarm.manifest_ready.is_set():
            await dl.step([play.wait] if play.wait is not None else [])
            if play.wait is not None and play.wait.done():
                break  # the player quit before the content was found: the loop below ends
        await serving  # its errors are the command's
        m = swarm.manifest
        if early is None:
            assert m is not None
            await play.show(st.file_name or m.name, st.size, st, emit, tasks)
        tasks.append(asyncio.ensure_future(dl.report(st.progress_fields)))
        while True:
            await dl.step([play.wait] if play.wait is not None else [])
            if play.exited(emit) and not opts.keep_seeding:
                break
        return ev.StreamEnded(served=st.bytes_served)
    except asyncio.CancelledError:
        # Ctrl-C or SIGTERM once the download is complete (how `--player none` ends) is
        # a normal stop, not an interruption: nothing is left to resume.
        if dl is not None and dl.done is not None and dl.swarm.fatal is None:
            return ev.StreamEnded(served=st.bytes_served)
        raise
    finally:
        for t in tasks:
            t.cancel()
        await play.stop()
        st.stopping = True
        if dl is not None:
            await dl.close()
        if serving is not None:
            await _stop_serving(serving)
        sock.close()  # if aiohttp never took it over (its cleanup closes it otherwise)


class _Player:
    """The media player process, its IPC socket and its private directory."""

    def __init__(self, opts: StreamOptions, found: tuple[str, str] | None) -> None:
        self.opts = opts
        self.found = found
        self.proc: asyncio.subprocess.Process | None = None
        self.wait: asyncio.Future | None = None
        "Completes with the player's exit code."
        self.private: str | None = None

    async def show(self, name: str, size: int | None, st: Streamer, emit: EventSink,
                   tasks: list[asyncio.Task]) -> None:
        """Publish the content's URL (the `serving` event; `size` None before the manifest)
        and start the player on it."""
        url = st.url(name)
        emit(ev.Serving(url=url, name=name, size=size))
        await self.start(url, st, emit, tasks)

    def exited(self, emit: EventSink) -> bool:
        """True once, when the player has quit (its `player-exited` event is emitted)."""
        if self.wait is None or not self.wait.done():
            return False
        emit(ev.PlayerExited(code=self.wait.result()))
        self.wait = None
        return True

    async def start(self, url: str, st: Streamer, emit: EventSink,
                    tasks: list[asyncio.Task]) -> None:
        if self.found is None:
            return  # --player none: the `serving` event carries the URL
        name, path = self.found
        self.private = private_dir()
        ipc = None
        if name == "mpv":
            ipc = os.path.join(self.private, "ipc.sock")
            st.mpv = MpvIpc(ipc)
            st.mpv.state.listeners.append(st.on_player_change)
            tasks.append(asyncio.ensure_future(st.mpv.run()))
        # The URL's secret goes in a private file, not the player's argv (ps shows argv
        # to every local user); ffplay reads no playlist, so it gets the URL itself.
        target = url_argument(name, url, self.private)
        cmd = player_command(name, path, target, ipc, self.opts.player_args)
        # The player's own output goes to our stderr (never stdout), or nowhere.
        out = 2 if self.opts.show_player_output else asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )
        self.wait = asyncio.ensure_future(self.proc.wait())
        emit(ev.PlayerStarted(player=name, pid=self.proc.pid))

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if self.wait is not None:
            self.wait.cancel()
        if self.private:
            shutil.rmtree(self.private, ignore_errors=True)


def _name_for_url(name: str | None) -> str | None:
    """The link's file name, if it can name the URL before the manifest is known: only a
    name the manifest's own rule accepts (the link is not verified; the manifest is)."""
    if not name:
        return None
    try:
        check_file_name(name)
    except ManifestError:
        return None
    return name


def _url_name(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
