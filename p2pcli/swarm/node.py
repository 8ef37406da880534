"""The swarm's asyncio adapter: aiortc links, signaling, threads and the upload limit.

It feeds `SwarmCore` what happens, carries out the actions it returns (`_drain`) and
re-arms its timer; it makes no decision of its own. Signaling flow: a peer that joins gets
`peer-list` and sends an offer to each listed peer; peers already present answer. aiortc
puts every candidate in its SDP, so one offer/answer round trip connects two CLI peers;
trickled candidates from browsers are added as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import events as ev
from ..errors import P2PError
from ..events import EventSink
from ..iceprobe import choose_ice_servers
from ..iceurls import servers_from_config, turn_urls
from ..manifest import Manifest
from ..picker import Picker
from ..rtc import LINGER, LinkClosed, PeerLink
from ..slots import address_key
from ..store import PartFile, SeedFile
from . import actions as act
from .config import SwarmConfig
from .core import SwarmCore
from .limiter import RateLimiter
from .meet import MeetHandlers, Meeting, build_meetings, meeting_for, start_all
from .pexmeet import PexMeeting
from .uploader import Uploader

log = logging.getLogger(__name__)

Store = SeedFile | PartFile
CLOSE_WAIT = 5.0  # seconds a stopping command gives its links to close
StoreOpener = Callable[[Manifest], Awaitable[tuple[PartFile, Picker]]]


class Swarm:
    """All peers for one content hash. Seeding: give `manifest` and `source`."""

    def __init__(
        self,
        content_hash: bytes,
        config: SwarmConfig,
        emit: EventSink,
        *,
        manifest: Manifest | None = None,
        source: Store | None = None,
        open_store: StoreOpener | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        """Seeding: give `manifest` and `source`. Downloading: give `open_store`, which
        opens the store and picker once a verified manifest arrives. `limiter`: an upload
        limit shared with other uploads of the process (default: this swarm's own)."""
        self.content_hash = content_hash
        self.content_id = content_hash.hex()
        self.config, self.emit = config, emit
        self.core = SwarmCore(
            content_hash, os.urandom(16), now=time.monotonic(), manifest=manifest,
            max_peers=config.max_peers, max_peers_per_address=config.max_peers_per_address,
            manifest_timeout=config.manifest_timeout, handshake_timeout=config.handshake_timeout,
        )
        self.source = source
        self.open_store = open_store
        self.links: dict[str, PeerLink] = {}
        self._peer_tasks: dict[str, list[asyncio.Task]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self.uploader = Uploader(self.core, limiter or RateLimiter(config.max_upload_rate), self)
        self.meetings: list[Meeting] = []
        "Every rendezvous configured (swarm/meet.py), started or not: replies route by it."
        self.manifest_ready = asyncio.Event()
        self.piece_done = asyncio.Event()  # pulsed when a piece is verified
        self.complete = asyncio.Event()
        self.fatal: P2PError | None = None
        self.fatal_event = asyncio.Event()
        self._bg: set[asyncio.Task] = set()
        self._closing: set[asyncio.Task] = set()  # links being closed
        if manifest is not None:
            self.manifest_ready.set()

    @property
    def manifest(self) -> Manifest | None:
        return self.core.manifest

    @property
    def picker(self) -> Picker | None:
        return self.core.picker

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.ice_servers_fixed:  # --ice-server: checked as ice-config's are
            await self._on_ice_config(None)
        handlers = MeetHandlers(
            peer_list=self._on_peer_list, peer_left=self._on_peer_left,
            signal=self._on_signal, ice_config=self._on_ice_config,
            new_offer=self._new_offer, adopt=self._adopt, emit=self.emit,
        )
        # Routing covers every meeting from the start: one may report a peer (a hello held
        # for us, an offer forwarded) before start_all() returns.
        self.meetings = self.make_meetings(handlers)
        await start_all(self.meetings, self.emit)
        self.meetings += self.after_start()
        self.core.wait_from(time.monotonic())  # `--timeout` counts from here
        self._spawn(self._timer())

    def make_meetings(self, handlers: MeetHandlers) -> list[Meeting]:
        """The rendezvous to start (a private share overrides this: its code's room only)."""
        return build_meetings(self.config, self.content_hash, self.core.peer_id, handlers,
                              stats=self._tracker_stats)

    def after_start(self) -> list[Meeting]:
        """Meetings that are not rendezvous to start: peer exchange routes our signals
        through peers we are connected to (nor may it keep the others from failing)."""
        return [PexMeeting(self.core, self._drain)]

    async def close(self) -> None:
        self.core.stop_accepting()
        await asyncio.gather(*(m.close() for m in self.meetings), return_exceptions=True)
        self.core.close_all(time.monotonic())
        self._drain()
        closing = list(self._closing)
        if closing:  # let every link close cleanly before the rest is cancelled
            await asyncio.wait(closing, timeout=CLOSE_WAIT)
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._bg.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, P2PError):
            self.fail(exc)
        elif exc is not None:
            log.error("internal task failed", exc_info=exc)
            self.fail(P2PError(f"internal error: {exc!r}", exit_code=1))

    def fail(self, err: P2PError) -> None:
        """Stop the command with `err` (the first failure wins)."""
        if self.fatal is None:
            self.fatal = err
        self.fatal_event.set()

    # -- the core's actions ----------------------------------------------------------------

    def _drain(self) -> None:
        core = self.core
        while (a := core.next_action()) is not None:
            if isinstance(a, act.Send):
                link = self.links.get(a.peer)
                if link is not None:
                    with contextlib.suppress(LinkClosed):
                        link.send_nowait(a.data)
            elif isinstance(a, act.Emit):
                self.emit(a.event)
            elif isinstance(a, act.Upload):
                self._upload_wakeup(a.peer)
            elif isinstance(a, act.Verify):
                self._spawn(self._verify(a.piece, a.data))
            elif isinstance(a, act.Close):
                self._close_link(a.peer, linger=a.linger)
            elif isinstance(a, act.Connect):
                self._connect(a.peer)
            elif isinstance(a, act.AnswerManifest) and (link := self.links.get(a.peer)):
                self._peer_task(a.peer, self.uploader.send_manifest(a.peer, link))
            elif isinstance(a, act.SignalBusy):
                self._spawn(self._relay("answer", a.peer,
                                        {"hash": self.content_id, "busy": a.reason}))
            elif isinstance(a, act.OpenStore):
                self._spawn(self._open_store(a.manifest))
            elif isinstance(a, act.Relay):  # peer exchange: as a rendezvous' offer / answer
                self._spawn(self._on_signal(a.kind, a.peer, a.data))

    def _peer_task(self, peer: str, coro) -> None:
        if peer not in self.links:
            coro.close()
            return
        self._peer_tasks.setdefault(peer, []).append(self._spawn(coro))

    def _close_link(self, peer: str, *, linger: bool = False) -> None:
        link = self.links.pop(peer, None)
        self._wakeups.pop(peer, None)
        for t in self._peer_tasks.pop(peer, []):
            t.cancel()
        if link is not None:
            task = self._spawn(link.close(linger=LINGER if linger else 0.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- signaling -------------------------------------------------------------------------

    async def _on_peer_list(self, peers: list[str]) -> None:
        now = time.monotonic()
        for p in peers:
            self.core.admission.peer_listed(p, now)
        self._drain()

    def _connect(self, peer: str) -> None:
        m = meeting_for(self.meetings, peer)
        if m is None or not m.addressed_offers:  # e.g. a tracker's peer, lost: it redials us
            self.core.forget(peer, None, time.monotonic())
            self._drain()
            return
        link = self.links[peer] = PeerLink.create(self.config.ice_servers)
        self._spawn(self._run_offer(peer, link))

    async def _relay(self, kind: str, peer: str, payload: dict) -> None:
        m = meeting_for(self.meetings, peer)
        if m is not None:
            await m.send(kind, peer, payload)

    async def _new_offer(self) -> tuple[PeerLink, dict]:
        link = PeerLink.create(self.config.ice_servers)
        return link, await link.make_offer(self.core.pex.channel_protocol)

    async def _adopt(self, peer: str, link: PeerLink, answer: dict) -> None:
        """`peer` answered an offer a tracker carried: the link becomes its connection."""
        if not self.core.admission.answer_adopted(peer, time.monotonic()):
            await link.close()
            return
        self.links[peer] = link
        try:
            await link.accept_answer(answer)
        except (ValueError, TypeError, AttributeError, LinkClosed) as e:
            self._forget(peer, link, f"bad answer: {e}")
            return
        self._spawn(self._run_session(peer, link))

    def _tracker_stats(self) -> tuple[int | None, int, int, bool]:
        core = self.core
        m, picker = core.manifest, core.picker
        left = None if m is None else 0 if picker is None else sum(
            n for n, have in zip(picker.piece_lengths, picker.have, strict=True) if not have)
        return left, core.bytes_up, core.bytes_down, core.admission.accepting and left != 0

    async def _on_ice_config(self, cfg: dict | None) -> None:
        """STUN/TURN servers from the signaling server, unless the user chose their own
        (`cfg` None: check the user's, once, at start)."""
        if self.config.ice_servers_fixed and cfg is not None:
            return
        self.config.ice_servers = await choose_ice_servers(
            servers_from_config(cfg) if cfg is not None else self.config.ice_servers,
            warn=lambda m: self.emit(ev.Warning(message=m)),
        )
        self.emit(ev.IceConfig(servers=[s.urls for s in self.config.ice_servers]))

    async def _on_peer_left(self, sig_id: str) -> None:
        self.core.admission.signaling_left(sig_id, time.monotonic())
        self._drain()

    async def _on_signal(self, kind: str, sig_id: str, data: dict) -> None:
        if data.get("hash") not in (None, self.content_id):
            return
        core, now = self.core, time.monotonic()
        try:
            if kind == "offer":
                admitted = core.admission.offer_received(sig_id, now)
                self._drain()  # closes the link of a peer that restarted its side
                if admitted:
                    link = self.links[sig_id] = PeerLink.create(self.config.ice_servers)
                    self._spawn(self._run_answer(sig_id, link, data.get("offer")
                                                 or data.get("sdp")))
            elif kind == "answer" and core.admission.expects_answer(sig_id):
                if isinstance(data.get("busy"), str):
                    core.admission.answered_busy(sig_id, now)
                    self._drain()
                elif (link := self.links.get(sig_id)) is not None:
                    await link.accept_answer(data.get("answer") or data.get("sdp"))
            elif kind == "ice-candidate" and (link := self.links.get(sig_id)) is not None:
                await link.add_candidate(data.get("candidate"))
        except LinkClosed:
            pass  # the connection went away while this arrived
        except (ValueError, TypeError, AttributeError) as e:
            log.info("bad %s from %s: %s", kind, sig_id, e)
            core.forget(sig_id, f"bad {kind}: {e}", time.monotonic())
            self._drain()

    async def _run_offer(self, peer: str, link: PeerLink) -> None:
        try:
            offer = await link.make_offer(self.core.pex.channel_protocol)
        except LinkClosed:
            self._forget(peer, link, None)  # it left while we were making the offer
            return
        await self._relay("offer", peer, {"hash": self.content_id, "offer": offer})
        await self._run_session(peer, link)

    async def _run_answer(self, peer: str, link: PeerLink, offer: Any) -> None:
        if not isinstance(offer, dict):
            self._forget(peer, link, "offer without a session description")
            return
        try:
            answer = await link.answer_offer(offer)
        except ValueError as e:
            self._forget(peer, link, f"bad offer: {e}")
            return
        except LinkClosed:
            self._forget(peer, link, None)  # it left while we answered
            return
        await self._relay("answer", peer, {"hash": self.content_id, "answer": answer})
        await self._run_session(peer, link)

    def _forget(self, peer: str, link: PeerLink, reason: str | None) -> None:
        if self.links.get(peer) is link:
            self.core.forget(peer, reason, time.monotonic())
            self._drain()

    # -- one peer --------------------------------------------------------------------------

    async def _run_session(self, peer: str, link: PeerLink) -> None:
        opened = await link.wait_open(self.config.connect_timeout)
        if self.links.get(peer) is not link:
            return  # dropped while it connected
        if not opened:
            reason = None if link.closed.is_set() else "connection timed out"
            self.core.admission.connect_failed(peer, reason, time.monotonic())
            self._drain()
            return
        self.core.peer_opened(peer, address_key(link.remote_candidate()),
                              link.candidate_pair_kind(), time.monotonic(),
                              link.candidate_pair(), link.key(), link.channel_protocol or "")
        self._drain()  # the handshake goes first: the handler may answer early messages
        if self.links.get(peer) is link:
            link.on_message = lambda m: self._on_message(peer, link, m)
        await link.closed.wait()
        if self.links.get(peer) is link:
            self.core.peer_closed(peer, time.monotonic())
            self._drain()

    def _on_message(self, peer: str, link: PeerLink, data: bytes | str) -> None:
        if self.links.get(peer) is link:
            self.core.data_received(peer, data, time.monotonic())
            self._drain()

    def _upload_wakeup(self, peer: str) -> None:
        wake = self._wakeups.get(peer)
        if wake is None:
            link = self.links.get(peer)
            if link is None:
                return
            wake = self._wakeups[peer] = asyncio.Event()
            self._peer_task(peer, self.uploader.serve(peer, link, wake))
        wake.set()

    # -- pieces ----------------------------------------------------------------------------

    async def _open_store(self, m: Manifest) -> None:
        assert self.open_store is not None
        store, picker = await self.open_store(m)
        self.source = store
        self.core.store_opened(m, picker, offers_pieces=store.keeps_pieces,
                               now=time.monotonic())
        self._drain()
        self.manifest_ready.set()
        if picker.complete:
            self.complete.set()

    async def _verify(self, piece: int, data: bytearray) -> None:
        m, store = self.core.manifest, self.source
        assert m is not None and isinstance(store, PartFile)
        ok = await asyncio.to_thread(m.piece_ok, piece, data)
        if ok:
            await asyncio.to_thread(store.write_piece, piece, data)
        self.core.piece_checked(piece, ok, time.monotonic())
        self._drain()
        if ok:
            self.piece_done.set()
            self.piece_done.clear()
            if self.core.complete:
                self.complete.set()

    async def _timer(self) -> None:
        core = self.core
        while True:
            await asyncio.sleep(max(0.0, core.get_timer() - time.monotonic()))
            core.handle_timer(time.monotonic())
            self._drain()

    # -- for the commands ------------------------------------------------------------------

    def set_priority(self, pieces: list[int]) -> None:
        self.core.set_priority(pieces, time.monotonic())
        self._drain()

    def set_cursor(self, piece: int) -> None:
        self.core.set_cursor(piece, time.monotonic())
        self._drain()

    def turn_urls(self) -> list[str]:
        return turn_urls(self.config.ice_servers)
