"""`p2p stream magnet:?...|FILE.torrent`: play a torrent while it downloads from a
WebTorrent swarm, with seeking, through the same local HTTP server as a p2p share.

Nothing of the stream server is copied: `stream.Streamer` serves the ranges (verified bytes
only), `readahead.ReadAhead` turns open responses and mpv's playhead into piece
priorities, `stream._Player` runs the player. What differs is underneath: the BitTorrent
session (btsession.BtPeers and the sans-IO btfetch.BtDownload, with `strict_priority`:
while a piece a player waits for is missing nothing else is asked for, and a seek cancels
the old read-ahead's requests). `_BtSwarm` is the thin adapter that shows that session to
the Streamer as the swarm and the download it expects (`btview.TorrentView` stands in for
the manifest). Pieces are stored as a fetch stores them (btstore.TorrentStore: p2p's
`.part` files, renamed once complete); an interrupted torrent stream resumes from them.

A multi-file torrent plays one file: --select's, else its first video (as a p2p folder
share); only the pieces that hold it are fetched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

from . import events as ev
from .btfetch import BtDownload
from .btstore import BtSink, TorrentStore
from .btview import TorrentView, no_help, no_metadata, selected_pieces
from .errors import P2PError, UsageError
from .events import EventSink
from .magnet import MagnetLink, TorrentInfo
from .manifest import Entry
from .selection import first_video, one_file
from .stream import (
    Streamer,
    StreamOptions,
    _listen,
    _name_for_url,
    _Player,
    _serve_http,
    _stop_serving,
)

STEP = 0.1  # seconds between checks of the player, the peers and the metadata
REPORT = 0.5  # seconds between progress events, as a p2p stream's


def stream_choice(view: TorrentView, select: tuple[str, ...]) -> int | None:
    """Which file of a torrent to play: None for a single-file torrent (all of it), else
    --select's one file, else the first that looks like a video. UsageError (exit 2) when
    --select chooses none or several, or nothing looks like a video."""
    if not view.is_tree:
        if select:
            selected_pieces(view, select)  # an index or pattern that misses is still an error
        return None
    if select:
        f = one_file(view, select, "p2p stream")  # type: ignore[arg-type]
        return view.files.index(f)
    video = first_video(view)  # type: ignore[arg-type]
    if video is None:
        raise UsageError(f"this torrent holds {len(view.files)} files and none looks like a "
                         "video (by its extension); choose one with --select (p2p info "
                         "LINK lists them)")
    return video


class _BtSwarm(BtSink):
    """The BitTorrent session of a stream, shown to `Streamer` as the swarm (manifest,
    picker, events, priorities) and the download (the played file, the store) it expects.
    Its store is a fetch's (btstore.BtSink), never stdout."""

    def __init__(self, link: MagnetLink, info: TorrentInfo | None, opts: StreamOptions,
                 st: Streamer, emit: EventSink, timeout: float, choice: list[int | None]
                 ) -> None:
        from .rendezvous.trackerclient import tracker_peer_id

        super().__init__(emit)
        self.opts, self.st = opts, st
        # The file played (stream_choice): known at once from a .torrent, else once a
        # peer sent the metadata.
        self.choice = choice
        self.content_hash = link.info_hash
        self.config = SimpleNamespace(timeout=timeout)
        self.manifest: TorrentView | None = None
        self.manifest_ready = asyncio.Event()
        self.piece_done = asyncio.Event()  # pulsed when a piece is verified
        self.fatal: BaseException | None = None
        self.fatal_event = asyncio.Event()
        self.stream_file: Entry | None = None
        self.store = self
        self.finished = False  # every wanted piece in: the files are being renamed
        self.dl = BtDownload(link, tracker_peer_id(), info=info, want=self.want,
                             strict_priority=True, await_store=True)

    @property
    def picker(self):
        return self.dl.picker

    def fail(self, e: BaseException) -> None:
        if self.fatal is None:
            self.fatal = e
            self.fatal_event.set()

    @property
    def stopped(self) -> bool:
        return self.fatal is not None

    def set_priority(self, pieces: list[int]) -> None:
        if self.peers is not None:
            self.peers.apply(self.dl.set_priority(pieces, time.monotonic()))

    def read_block(self, piece: int, offset: int, length: int) -> bytes:
        assert self.writer is not None
        return self.writer.read(piece, offset, length)

    def want(self, meta: TorrentInfo) -> list[int] | None:
        """The core's question once the metadata is known: the played file's pieces."""
        view = TorrentView(meta)
        if not self.choice:
            try:
                self.choice.append(stream_choice(view, self.opts.select))
            except UsageError as e:  # a magnet's --select: the command ends with exit 2
                self.fail(e)
                return []
        k = self.choice[0]
        if k is None:
            return None
        f = view.files[k]
        return list(view.pieces_for_range(f.offset, f.end))

    def make_store(self, meta: TorrentInfo) -> TorrentStore:
        k = self.choice[0] if self.choice else None
        return TorrentStore(meta, self.opts.output or ".", force=self.opts.force,
                            chosen=None if k is None else [k], stream=True)

    def opened(self, writer: TorrentStore) -> None:
        """The stream is told the content."""
        k = self.choice[0] if self.choice else None
        view = writer.manifest
        self.manifest = view
        self.stream_file = None if k is None else view.files[k]
        self.st.content_known(view)  # type: ignore[arg-type]
        self.manifest_ready.set()

    def verified(self) -> None:
        self.piece_done.set()
        self.piece_done.clear()

    def completed(self) -> None:
        if not self.finished:
            self.finished = True
            assert self.peers is not None
            self.peers.spawn(self._done())

    async def _done(self) -> None:
        """Every piece wanted is in: the files take their final names at once (as a p2p
        stream's do; off the event loop: finishing flushes them to disk), still open for
        the responses that read them, and `done` says so."""
        w, dl = self.writer, self.dl
        assert w is not None and dl.info is not None
        try:
            await asyncio.to_thread(w.finish)
        except P2PError as e:
            self.fail(e)
            return
        k = self.choice[0] if self.choice else None
        size = dl.info.total_length if k is None else dl.info.files[k].length
        self.emit(ev.Done(name=dl.info.name, size=size, path=w.path,
                          seconds=round(time.monotonic() - self.st.started, 3),
                          received=dl.bytes_received, peers=dict(dl.received_from),
                          connections={}, sent=0))

    def close_files(self) -> None:
        if self.writer is not None:
            self.writer.close()  # finished: under their final names; else `.part`s, resumable


def _preflight(link: MagnetLink, info: TorrentInfo | None, opts: StreamOptions
               ) -> tuple[tuple[str, str] | None, str | None, list[int | None]]:
    """Fail fast (exit 2), before anything is published or searched for: no player, a bad
    --select of a .torrent, an existing output. Returns the player, the name for an early
    URL, and the file to play when a .torrent says it."""
    from .player import find_player
    from .store import check_output

    player = None if opts.player == "none" else find_player(opts.player)
    choice: list[int | None] = []
    early = _name_for_url(link.display_name)
    if info is not None:
        view = TorrentView(info)
        choice.append(stream_choice(view, opts.select))
        k = choice[0]
        early = info.name if k is None else view.files[k].path.rsplit("/", 1)[-1]
        if not info.multi_file:
            out = Path(opts.output or info.name)
            check_output(out / info.name if out.is_dir() else out, force=opts.force)
    elif early is not None and not Path(opts.output or early).is_dir():
        # As a p2p stream checks its link's name: at once, not once a peer sent the
        # metadata (a name that turns out to be a folder's is checked file by file then).
        check_output(Path(opts.output or early), force=opts.force)
    return player, early, choice


async def stream_magnet(link: MagnetLink, trackers: list[str], opts: StreamOptions,
                        emit: EventSink, *, timeout: float,
                        info: TorrentInfo | None = None) -> ev.Event:
    """Stream `link` (its info dict `info` when a .torrent gave it) from `trackers`."""
    player, early, choice = _preflight(link, info, opts)
    st = Streamer(emit)
    sock = _listen(opts.port)
    st.port = sock.getsockname()[1]
    play = _Player(opts, player)
    tasks: list[asyncio.Task] = []
    serving: asyncio.Task | None = None
    bts: _BtSwarm | None = None
    try:
        if early is not None:
            # As a p2p stream: the player starts up while aiortc loads and peers are found.
            await play.show(early, None, st, emit, tasks)
        if opts.before_swarm is not None:
            opts.before_swarm()
        from .btsession import BtPeers

        bts = _BtSwarm(link, info, opts, st, emit, timeout, choice)
        dl = bts.dl
        bts.peers = peers = BtPeers(
            dl, link.info_hash, trackers, emit, wanting=True, after=bts.after,
            left=lambda: dl.info.total_length if dl.info else link.exact_length)
        st.attach(bts, bts)  # type: ignore[arg-type]  # swarm and download in one
        bts.after()  # a .torrent's metadata is known: its store opens now
        await peers.start()
        serving = asyncio.ensure_future(_serve_http(st, sock))
        dl.wait_from(time.monotonic())
        while not bts.manifest_ready.is_set():
            _check(bts)
            if play.wait is not None and play.wait.done():
                break  # the player quit before the content was found
            # Each metadata piece arriving restarts the wait (BtDownload.idle_for).
            if dl.idle_for(time.monotonic()) > timeout:
                raise no_metadata(timeout)
            await asyncio.sleep(STEP)
        await serving  # its errors are the command's
        m = bts.manifest
        if early is None and m is not None:
            await play.show(st.file_name or m.name, st.size, st, emit, tasks)
        tasks.append(asyncio.ensure_future(_report(dl, peers, st, emit, timeout, bts)))
        while True:
            _check(bts)
            if play.exited(emit) and not opts.keep_seeding:
                break
            await asyncio.sleep(STEP)
        return ev.StreamEnded(served=st.bytes_served)
    except asyncio.CancelledError:
        # As a p2p stream: a stop once everything is in (how `--player none` ends) is a
        # normal end, not an interruption.
        if bts is not None and bts.dl.complete and bts.fatal is None:
            return ev.StreamEnded(served=st.bytes_served)
        raise
    finally:
        for t in tasks:
            t.cancel()
        await play.stop()
        st.stopping = True
        if bts is not None:
            if bts.peers is not None:
                await bts.peers.close()
            bts.close_files()
        if serving is not None:
            await _stop_serving(serving)
        sock.close()


def _check(bts: _BtSwarm) -> None:
    if bts.fatal is not None:
        raise bts.fatal


async def _report(dl: BtDownload, peers, st: Streamer, emit: EventSink, timeout: float,
                  bts: _BtSwarm) -> None:
    """Progress every REPORT seconds, the stream's fields with it; until the torrent is
    complete, `timeout` without a block ends the command (NoPeers, exit 3)."""
    last = 0
    dl.wait_from(time.monotonic())
    while True:
        await asyncio.sleep(REPORT)
        if not dl.complete and dl.idle_for(time.monotonic()) > timeout:
            bts.fail(no_help(len(peers.links), timeout, "stream",
                             have=dl.picker.n_have if dl.picker else 0))
        info, picker = dl.info, dl.picker
        emit(ev.Progress(peers=len(peers.links), received=dl.bytes_received,
                         rate=int((dl.bytes_received - last) / REPORT), sent=0,
                         size=info.total_length if info else None,
                         pieces=len(info.pieces) if info else None,
                         verified=picker.n_have if picker else None, **st.progress_fields()))
        last = dl.bytes_received
