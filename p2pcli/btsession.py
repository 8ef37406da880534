"""`p2p fetch magnet:...`: the asyncio adapter that fetches from a WebTorrent swarm.

A separate, small BitTorrent session, not the p2p swarm core (issue 17's fallback: the
swarm core speaks p2p's wire and manifest throughout). It is driven by the same adapter
pieces: `TrackerMeeting` finds peers through each WebSocket tracker (the magnet's tr= and
--tracker), `PeerLink` carries each data channel, and `btfetch.BtDownload` decides
everything (metadata, which block from whom, verification, whom to drop). Here: bytes
between the links and `BtDownload`, verified pieces to a file or in order to stdout.

Every connection of a magnet fetch speaks BitTorrent: the tracker's swarm is named by the
BitTorrent info hash, which a p2p share never announces under (its info hash is the first
20 bytes of a SHA-256 manifest hash), so only BitTorrent peers meet us there
(docs/PROTOCOL.md, "WebTorrent").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from . import events as ev
from .btfetch import BtDownload, Drop, Send
from .errors import NoPeers, StorageError, UsageError
from .events import EventSink
from .magnet import MagnetLink, TorrentInfo
from .rtc import LinkClosed, PeerLink

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 15.0  # seconds for an answered link's channel to open
TICK = 1.0  # seconds between request-timeout checks
STDOUT_WINDOW = 64  # pieces ahead of the last written when writing to stdout


class _Writer:
    """Verified pieces to disk (any order, pwrite) or to stdout (in order)."""

    def __init__(self, info: TorrentInfo, output: str, stdout_fd: int, force: bool) -> None:
        self.info = info
        self.stdout = output == "-"
        self.fd = stdout_fd
        self.next = 0
        self.held: dict[int, bytes] = {}
        self.files: list[tuple[int, int, int, Path, Path]] = []  # offset, length, fd, part, final
        if self.stdout:
            return
        out = Path(output)
        root = out / info.name if out.is_dir() else out
        if root.exists() and not force:
            raise UsageError(f"{root} exists; give --force to overwrite it")
        for f in info.files:
            final = root.joinpath(*f.path) if info.multi_file else root
            part = final.with_name(final.name + ".part")
            try:
                part.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                os.ftruncate(fd, f.length)
            except OSError as e:
                raise StorageError(f"cannot write {part}: {e.strerror}") from None
            self.files.append((f.offset, f.length, fd, part, final))
        self.path = str(root)

    def write(self, index: int, data: bytes) -> int | None:
        """Store a verified piece; return the next piece stdout waits for (None: a file)."""
        if self.stdout:
            self.held[index] = data
            while self.next in self.held:
                chunk = memoryview(self.held.pop(self.next))
                while chunk:
                    chunk = chunk[os.write(self.fd, chunk) :]
                self.next += 1
            return self.next
        start = index * self.info.piece_length
        end = start + len(data)
        for offset, length, fd, _, _ in self.files:
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                os.pwrite(fd, data[lo - start : hi - start], lo - offset)
        return None

    def finish(self) -> None:
        for _, _, fd, part, final in self.files:
            os.close(fd)
            os.replace(part, final)
        self.files = []

    def abort(self) -> None:
        for _, _, fd, _, _ in self.files:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.files = []


async def fetch_magnet(link: MagnetLink, trackers: list[str], output: str, *, emit: EventSink,
                       timeout: float, force: bool, stdout_fd: int = 1) -> str:
    """Fetch `link` through `trackers`; return where it went ("-": stdout)."""
    from .rendezvous.trackerclient import TrackerMeeting, tracker_peer_id
    from .swarm.meet import MeetHandlers, start_all

    if not trackers:
        raise UsageError("the magnet link names no tracker (tr=): give --tracker ws://...")
    started = time.monotonic()
    to_stdout = output == "-"
    dl = BtDownload(link, tracker_peer_id(), sequential=to_stdout,
                    window=STDOUT_WINDOW if to_stdout else None)
    links: dict[str, PeerLink] = {}
    tasks: set[asyncio.Task] = set()
    done = asyncio.Event()
    writer: _Writer | None = None
    failure: list[BaseException] = []

    def apply(actions: list) -> None:
        nonlocal writer
        for a in actions:
            if isinstance(a, Send):
                pl = links.get(a.peer)
                if pl is not None:
                    with contextlib.suppress(LinkClosed):
                        pl.send_nowait(a.data)
            elif isinstance(a, Drop):
                emit(ev.Warning(message=f"dropped BitTorrent peer {a.peer}: {a.reason}"))
                pl = links.pop(a.peer, None)
                if pl is not None:
                    spawn(pl.close())
        if dl.info is not None and writer is None:
            try:
                writer = _Writer(dl.info, output, stdout_fd, force)
            except Exception as e:  # a usage or storage error: stop the command with it
                failure.append(e)
                done.set()
                return
        if writer is not None:
            for index, data in dl.take_verified():
                nxt = writer.write(index, data)
                if nxt is not None:
                    dl.consumed(nxt)
            if dl.complete:
                done.set()

    def spawn(coro) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def run_peer(peer: str, pl: PeerLink) -> None:
        if not await pl.wait_open(OPEN_TIMEOUT):
            await pl.close()
            return
        links[peer] = pl
        emit(ev.PeerJoined(peer=peer, connection=pl.candidate_pair_kind() or "unknown"))
        # The peer first: the remote's handshake may be among the messages that arrived
        # before we listened, which setting on_message hands over at once.
        apply(dl.connected(peer))
        pl.on_message = lambda m: apply(
            dl.received(peer, m if isinstance(m, bytes) else m.encode(), time.monotonic()))
        try:
            await pl.closed.wait()
        finally:
            links.pop(peer, None)
            dl.disconnected(peer)
            emit(ev.PeerLeft(peer=peer, received=dl.received_from.get(peer, 0), sent=0))

    made: list[PeerLink] = []  # every link, to close them all on the way out

    async def new_offer() -> tuple[PeerLink, dict]:
        pl = PeerLink.create([])
        made.append(pl)
        return pl, await pl.make_offer(protocol="")

    async def adopt(peer: str, pl: PeerLink, answer: dict) -> None:
        try:
            await pl.accept_answer(answer)
        except (LinkClosed, ValueError) as e:
            log.info("answer from %s unusable: %s", peer, e)
            await pl.close()
            return
        spawn(run_peer(peer, pl))

    async def signal(kind: str, peer: str, data: dict) -> None:
        if kind != "offer" or peer in links:
            return
        pl = PeerLink.create([])
        made.append(pl)
        try:
            answer = await pl.answer_offer(data["offer"], any_label=True)
        except (LinkClosed, ValueError, KeyError) as e:
            log.info("offer from %s unusable: %s", peer, e)
            await pl.close()
            return
        meeting = next(m for m in meetings if peer.startswith(m.prefix))
        await meeting.send("answer", peer, {"answer": answer})
        spawn(run_peer(peer, pl))

    async def nothing(*_: object) -> None:
        return None

    def stats() -> tuple[int | None, int, int, bool]:
        left = dl.info.total_length if dl.info else link.exact_length
        return left, 0, dl.bytes_received, True

    h = MeetHandlers(peer_list=nothing, peer_left=nothing, signal=signal, ice_config=nothing,
                     new_offer=new_offer, adopt=adopt, emit=emit)
    # The tracker announces content_hash[:20]: the info hash itself (wstracker.info_hash_for).
    content_hash = link.info_hash + bytes(12)
    meetings = [TrackerMeeting(url, content_hash, h, prefix=f"bt{i}:", stats=stats)
                for i, url in enumerate(trackers)]

    alone_since = [time.monotonic()]  # when the last peer left (or the start)

    async def ticker() -> None:
        last = 0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            apply(dl.tick(now))
            if links:
                alone_since[0] = now
            elif dl.info is not None and now - alone_since[0] > timeout:
                failure.append(NoPeers(f"every BitTorrent peer left and none came back within "
                                       f"{timeout:g} s; the download is incomplete"))
                done.set()
            info = dl.info
            verified = info and dl.picker and dl.picker.n_have
            emit(ev.Progress(peers=len(links), received=dl.bytes_received,
                             rate=int((dl.bytes_received - last) / TICK), sent=0,
                             size=info.total_length if info else None,
                             pieces=len(info.pieces) if info else None,
                             verified=verified if info else None))
            last = dl.bytes_received

    spawn(ticker())
    try:
        await start_all(meetings, emit)
        try:
            await asyncio.wait_for(_metadata_or_done(dl, done), timeout)
        except TimeoutError:
            raise NoPeers(f"no BitTorrent peer sent the torrent's metadata within {timeout:g} s "
                          "(is a WebTorrent seeder announcing to that tracker?)") from None
        await done.wait()
        if failure:
            raise failure[0]
        assert writer is not None and dl.info is not None
        writer.finish()
        path = "-" if to_stdout else writer.path
        emit(ev.Done(name=dl.info.name, size=dl.info.total_length, path=path,
                     seconds=time.monotonic() - started, received=dl.bytes_received,
                     peers=dict(dl.received_from), connections={}, sent=0))
        return path
    finally:
        if writer is not None:
            writer.abort()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(m.close() for m in meetings), return_exceptions=True)
        await asyncio.gather(*(pl.close() for pl in made), return_exceptions=True)


async def _metadata_or_done(dl: BtDownload, done: asyncio.Event) -> None:
    while dl.info is None and not done.is_set():
        await asyncio.sleep(0.1)
