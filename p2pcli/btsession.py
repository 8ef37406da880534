"""`p2p fetch magnet:...` and `p2p seed --torrent`: the asyncio adapters that speak
BitTorrent to a WebTorrent swarm.

A separate, small BitTorrent session, not the p2p swarm core (issue 17's fallback: the
swarm core speaks p2p's wire and manifest throughout). It is driven by the same adapter
pieces: `TrackerMeeting` finds peers through each WebSocket tracker, `PeerLink` carries
each data channel, and a sans-IO core decides everything: `btfetch.BtDownload` (metadata,
which block from whom, verification, whom to drop) or `btseed.BtUpload`. `BtPeers` moves
bytes between the links and the core; verified pieces go to p2p's own store
(btstore.TorrentStore: `.part` files that resume, or in order to stdout), blocks are read
from files for peers (btstore.TorrentFiles).

Every connection of a magnet fetch speaks BitTorrent: the tracker's swarm is named by the
BitTorrent info hash, which a p2p share never announces under (its info hash is the first
20 bytes of a SHA-256 manifest hash), so only BitTorrent peers meet us there
(docs/PROTOCOL.md, "WebTorrent").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

from . import btwire as bt
from . import events as ev
from .btfetch import BtDownload, Drop, Send
from .btseed import BtUpload, Serve
from .btstore import BtSink, TorrentFiles, TorrentStore
from .btview import Selector, no_help, no_metadata
from .download import FetchOptions, ReaderGone, check_output_args
from .errors import UsageError
from .events import EventSink
from .magnet import MagnetLink, TorrentInfo, bencode, parse_info
from .rtc import LinkClosed, PeerLink
from .swarm.limiter import RateLimiter

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 15.0  # seconds for an answered link's channel to open
TICK = 1.0  # seconds between request-timeout checks
METADATA_STEP = 0.1  # seconds between looks at whether the metadata came
STDOUT_WINDOW = 32 * 1024 * 1024  # bytes fetched past the last written, writing to stdout


class BtPeers:
    """Trackers, links and one sans-IO core (`BtDownload` or `BtUpload`): bytes between
    the data channels and the core, its actions carried out. `after` runs after each batch
    of actions (the fetch writes verified pieces there)."""

    def __init__(self, core: BtDownload | BtUpload, info_hash: bytes, trackers: list[str],
                 emit: EventSink, *, wanting: bool, left: Callable[[], int | None],
                 after: Callable[[], None] = lambda: None,
                 read: Callable[[int, int, int], bytes] | None = None,
                 limiter: RateLimiter | None = None) -> None:
        from .rendezvous.trackerclient import TrackerMeeting
        from .swarm.meet import MeetHandlers

        self.core, self.emit, self.after, self.read = core, emit, after, read
        self.limiter = limiter or RateLimiter(None)  # seeding: shared with p2p's uploads
        self.links: dict[str, PeerLink] = {}
        self.made: list[PeerLink] = []  # every link, to close them all on the way out
        self.tasks: set[asyncio.Task] = set()
        self.queues: dict[str, asyncio.Queue[Serve]] = {}
        self.banned: set[str] = set()
        "Peers dropped for breaking the protocol: their offers and answers are ignored."

        def stats() -> tuple[int | None, int, int, bool]:
            sent = core.bytes_sent if isinstance(core, BtUpload) else 0
            got = core.bytes_received if isinstance(core, BtDownload) else 0
            return left(), sent, got, wanting

        h = MeetHandlers(peer_list=_nothing, peer_left=_nothing, signal=self._signal,
                         ice_config=_nothing, new_offer=self._new_offer, adopt=self._adopt,
                         emit=emit)
        # The tracker announces content_hash[:20] (wstracker.info_hash_for): here the
        # BitTorrent info hash itself.
        content_hash = info_hash + bytes(12)
        self.meetings = [TrackerMeeting(url, content_hash, h, prefix=f"bt{i}:", stats=stats)
                         for i, url in enumerate(trackers)]

    async def start(self) -> None:
        from .swarm.meet import start_all

        self.spawn(self._ticker())
        await start_all(self.meetings, self.emit)

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(m.close() for m in self.meetings), return_exceptions=True)
        await asyncio.gather(*(pl.close() for pl in self.made), return_exceptions=True)

    def spawn(self, coro: Coroutine) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def apply(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Send):
                pl = self.links.get(a.peer)
                if pl is not None:
                    with contextlib.suppress(LinkClosed):
                        pl.send_nowait(a.data)
            elif isinstance(a, Serve):
                q = self.queues.get(a.peer)
                if q is not None:
                    q.put_nowait(a)
            elif isinstance(a, Drop):
                self.emit(ev.Warning(message=f"dropped BitTorrent peer {a.peer}: {a.reason}"))
                self.banned.add(a.peer)
                pl = self.links.pop(a.peer, None)
                if pl is not None:
                    self.spawn(pl.close())
        self.after()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.apply(self.core.tick(time.monotonic()))

    async def _run_peer(self, peer: str, pl: PeerLink) -> None:
        if not await pl.wait_open(OPEN_TIMEOUT):
            await pl.close()
            return
        self.links[peer] = pl
        self.emit(ev.PeerJoined(peer=peer, connection=pl.candidate_pair_kind() or "unknown"))
        if isinstance(self.core, BtUpload):
            self.queues[peer] = asyncio.Queue()
            self.spawn(self._serve(peer, pl, self.queues[peer]))
        # The core first: the remote's handshake may be among the messages that arrived
        # before we listened, which setting on_message hands over at once.
        if isinstance(self.core, BtUpload):
            self.apply(self.core.connected(peer, time.monotonic()))
        else:
            self.apply(self.core.connected(peer))
        pl.on_message = lambda m: self.apply(self.core.received(
            peer, m if isinstance(m, bytes) else m.encode(), time.monotonic()))
        try:
            await pl.closed.wait()
        finally:
            self.links.pop(peer, None)
            self.queues.pop(peer, None)
            if isinstance(self.core, BtUpload):  # its slot may go to a peer waiting
                self.apply(self.core.disconnected(peer, time.monotonic()))
            else:
                self.core.disconnected(peer)
            got = self.core.received_from.get(peer, 0) if isinstance(self.core, BtDownload) \
                else 0
            self.emit(ev.PeerLeft(peer=peer, received=got, sent=0))

    async def _serve(self, peer: str, pl: PeerLink, q: asyncio.Queue[Serve]) -> None:
        """Blocks for one peer, in the order asked, under the process's upload limit,
        behind the channel's back-pressure."""
        assert self.read is not None and isinstance(self.core, BtUpload)
        with contextlib.suppress(LinkClosed):
            while True:
                s = await q.get()
                if not self.core.should_serve(s):
                    continue
                await self.limiter.take(s.length, "bittorrent")
                if not self.core.should_serve(s):  # choked or cancelled while we waited
                    continue
                data = self.read(s.index, s.begin, s.length)
                await pl.send(bt.piece(s.index, s.begin, data))
                self.core.served(peer, len(data))

    async def _new_offer(self) -> tuple[PeerLink, dict]:
        pl = PeerLink.create([])
        self.made.append(pl)
        return pl, await pl.make_offer(protocol="")

    async def _adopt(self, peer: str, pl: PeerLink, answer: dict) -> None:
        if peer in self.banned:
            await pl.close()
            return
        try:
            await pl.accept_answer(answer)
        except (LinkClosed, ValueError) as e:
            log.info("answer from %s unusable: %s", peer, e)
            await pl.close()
            return
        self.spawn(self._run_peer(peer, pl))

    async def _signal(self, kind: str, peer: str, data: dict) -> None:
        if kind != "offer" or peer in self.links or peer in self.banned:
            return
        pl = PeerLink.create([])
        self.made.append(pl)
        try:
            answer = await pl.answer_offer(data["offer"], any_label=True)
        except (LinkClosed, ValueError, KeyError) as e:
            log.info("offer from %s unusable: %s", peer, e)
            await pl.close()
            return
        meeting = next(m for m in self.meetings if peer.startswith(m.prefix))
        await meeting.send("answer", peer, {"answer": answer})
        self.spawn(self._run_peer(peer, pl))


async def _nothing(*_: object) -> None:
    return None


async def _progress(dl: BtDownload, peers: BtPeers, emit: EventSink, timeout: float,
                    failure: list[BaseException], done: asyncio.Event, pipe: bool) -> None:
    """A magnet fetch's progress event every TICK; once the metadata is known, give up
    (NoPeers into `failure`) after `timeout` without a block (`BtDownload.idle_for`).
    `pipe`: the fetch goes to stdout (nothing is kept to resume from)."""
    last = 0
    dl.wait_from(time.monotonic())
    while True:
        await asyncio.sleep(TICK)
        # Help, not a connection, holds the clock (btfetch.BtDownload.idle_for): a peer
        # with nothing we lack must not keep the fetch waiting for ever.
        if dl.info is not None and not dl.complete and dl.idle_for(time.monotonic()) > timeout:
            failure.append(no_help(len(peers.links), timeout, "download", pipe=pipe,
                                   have=dl.picker.n_have if dl.picker else 0))
            done.set()
        info = dl.info
        verified = info and dl.picker and dl.picker.n_have
        emit(ev.Progress(peers=len(peers.links), received=dl.bytes_received,
                         rate=int((dl.bytes_received - last) / TICK), sent=0,
                         size=info.total_length if info else None,
                         pieces=len(info.pieces) if info else None,
                         verified=verified if info else None))
        last = dl.bytes_received


class _MagnetSink(BtSink):
    """Where a magnet fetch's verified pieces go (btstore.BtSink: the store, opened off the
    event loop once the metadata is known). A failure (usage, storage, the reader gone) is
    kept in `failure` and ends the fetch (`done`)."""

    def __init__(self, sel: Selector, output: str, *, force: bool, stdout_fd: int,
                 emit: EventSink) -> None:
        super().__init__(emit)
        self.sel, self.output, self.force, self.stdout_fd = sel, output, force, stdout_fd
        self.done = asyncio.Event()
        self.failure: list[BaseException] = []

    def fail(self, e: BaseException) -> None:
        self.failure.append(e)
        self.done.set()

    @property
    def stopped(self) -> bool:
        return self.done.is_set()

    def want(self, meta: TorrentInfo) -> list[int] | None:
        # A magnet's, from the core: a --select that matches nothing ends the command
        # (exit 2) instead of escaping the data channel's callback.
        try:
            return self.sel(meta)
        except UsageError as e:
            self.fail(e)
            return []

    def make_store(self, meta: TorrentInfo) -> TorrentStore:
        return TorrentStore(meta, self.output, force=self.force, chosen=self.sel.chosen,
                            stdout_fd=self.stdout_fd, window_bytes=STDOUT_WINDOW)

    def completed(self) -> None:
        self.done.set()


async def fetch_magnet(link: MagnetLink, trackers: list[str], output: str, *, emit: EventSink,
                       timeout: float, force: bool, stdout_fd: int = 1,
                       info: TorrentInfo | None = None, select: tuple[str, ...] = ()) -> str:
    """Fetch `link` through `trackers`; return where it went ("-": stdout). `info`: the
    metadata, when a .torrent gave it (no ut_metadata then). `select`: --select's files
    only, and only the pieces that hold them (btview.selected_pieces)."""
    from .rendezvous.trackerclient import tracker_peer_id

    started = time.monotonic()
    to_stdout = output == "-"
    if not to_stdout:  # a final name already there: refused at once, as p2p fetch does
        check_output_args(FetchOptions(output=output, force=force))
    sel = Selector(select, to_stdout)
    if info is not None:
        sel(info)  # a .torrent's --select is checked before anyone is asked
    sink = _MagnetSink(sel, output, force=force, stdout_fd=stdout_fd, emit=emit)
    dl = sink.dl = BtDownload(link, tracker_peer_id(), info=info, sequential=to_stdout,
                              window_bytes=STDOUT_WINDOW if to_stdout else None,
                              want=sink.want, await_store=True)
    done, failure = sink.done, sink.failure

    def left() -> int | None:
        return dl.info.total_length if dl.info else link.exact_length

    peers = sink.peers = BtPeers(dl, link.info_hash, trackers, emit, wanting=True, left=left,
                                 after=sink.after)
    try:
        sink.after()  # a .torrent's metadata is known: its store opens now
        peers.spawn(_progress(dl, peers, emit, timeout, failure, done, to_stdout))
        await peers.start()
        await await_metadata(dl, timeout, done.is_set)
        await done.wait()
        writer = sink.writer
        if failure and isinstance(failure[0], ReaderGone) and writer is not None:
            emit(ev.ReaderGone(written_pieces=writer.next))  # as p2p fetch: stop quietly
            return "-"
        if failure:
            raise failure[0]
        assert writer is not None and dl.info is not None
        await asyncio.to_thread(writer.finish)
        path = "-" if to_stdout else writer.path
        emit(ev.Done(name=dl.info.name, size=sel.size(dl.info), path=path,
                     seconds=time.monotonic() - started, received=dl.bytes_received,
                     peers=dict(dl.received_from), connections={}, sent=0))
        return path
    finally:
        if sink.writer is not None:
            sink.writer.close()
        await peers.close()


async def await_metadata(dl: BtDownload, timeout: float,
                         stop: Callable[[], bool] = lambda: False) -> None:
    """Wait until `dl` knows the torrent's metadata (or `stop()`). Each metadata piece
    arriving restarts `timeout`, as a block does later (BtDownload.idle_for): a large info
    dict trickling in from a slow peer is not cut off. NoPeers (btview.no_metadata) after
    `timeout` without one."""
    dl.wait_from(time.monotonic())
    while dl.info is None and not stop():
        if dl.idle_for(time.monotonic()) > timeout:
            raise no_metadata(timeout)
        await asyncio.sleep(METADATA_STEP)


def piece_length_for(size: int) -> int:
    """WebTorrent's choice (create-torrent): about 1000 pieces, a power of two, 16 KiB+."""
    n = 16 * 1024
    while n * 1024 < size and n < 4 * 1024 * 1024:
        n *= 2
    return n


def torrent_for(path: Path, piece_length: int | None = None) -> tuple[TorrentInfo, list[Path]]:
    """A v1 info dict for a file or a folder (its files sorted by path, as WebTorrent
    orders them), hashed by streaming the files; and the files in torrent order."""
    if path.is_dir():
        paths = sorted((p for p in path.rglob("*") if p.is_file()),
                       key=lambda p: p.relative_to(path).parts)
        if not paths:
            raise UsageError(f"{path} holds no files")
    else:
        paths = [path]
    sizes = [p.stat().st_size for p in paths]
    plen = piece_length or piece_length_for(sum(sizes))
    hashes: list[bytes] = []
    buf = bytearray()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                buf += chunk
                while len(buf) >= plen:
                    hashes.append(hashlib.sha1(buf[:plen]).digest())
                    del buf[:plen]
    if buf:
        hashes.append(hashlib.sha1(buf).digest())
    info: dict[str, object] = {"name": path.name, "piece length": plen,
                               "pieces": b"".join(hashes)}
    if path.is_dir():
        info["files"] = [{"length": n, "path": list(p.relative_to(path).parts)}
                         for p, n in zip(paths, sizes, strict=True)]
    else:
        info["length"] = sizes[0]
    return parse_info(bencode(info)), paths


async def seed_torrent(path: Path, trackers: list[str], *, emit: EventSink,
                       on_link: Callable[[str], None],
                       limiter: RateLimiter | None = None) -> None:
    """Seed `path` as a BitTorrent v1 torrent to WebTorrent peers until cancelled, under
    `limiter` (shared with the p2p share's uploads: seed.seed_with_torrent)."""
    from .rendezvous.trackerclient import tracker_peer_id

    if not trackers:
        raise UsageError("seed --torrent needs a WebTorrent tracker: give --tracker ws://...")
    info, paths = torrent_for(path)
    files = TorrentFiles(info, paths)
    up = BtUpload(info, tracker_peer_id())
    peers = BtPeers(up, info.info_hash, trackers, emit, wanting=False, left=lambda: 0,
                    read=files.read, limiter=limiter)
    try:
        await peers.start()
        on_link(MagnetLink(info.info_hash, tuple(trackers), info.name, info.total_length).uri())
        await asyncio.Event().wait()
    finally:
        await peers.close()
        files.close()
