"""The swarm: every peer connection for one content hash, and what flows over them.

One `Swarm` serves pieces it has and, when downloading, asks every connected peer for
pieces at once. Decisions come from the sans-IO parts (`wire.PeerProtocol` validates each
peer, `picker.Picker` chooses requests); this module wires them to aiortc links, the
signaling client and the piece files, and reports what happens as events.

Signaling flow: a peer that joins gets `peer-list` and sends an offer to each listed peer;
peers already present answer. aiortc puts every candidate in its SDP, so one offer/answer
round trip connects two CLI peers; trickled candidates from browsers are added as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import events, wire
from .errors import NoPeers, P2PError, Unverifiable
from .events import EventSink
from .manifest import Manifest, decode_verified
from .picker import Picker
from .rtc import LinkClosed, PeerLink
from .signaling.client import SignalHandlers, SignalingClient
from .slots import BUSY, Refuse, Slots, address_key, retry_delay
from .store import PartFile, SeedFile, SourceChanged

log = logging.getLogger(__name__)

MAX_MANIFEST = 16 * 1024 * 1024  # bytes; a 16 MiB piece list already describes > 8 TiB
MAX_QUEUED_REQUESTS = 512  # per peer; more is a flood and drops the peer
MIN_SLOTS, MAX_SLOTS, START_SLOTS = 2, 48, 8
BAD_PIECE_STRIKES = 3  # shared blame for a bad piece before a peer is dropped
MAX_MESSAGE = 256 * 1024  # what aiortc and Chromium advertise as max-message-size
HANDSHAKE_TIMEOUT = 10.0  # seconds from channel open to the remote's handshake
MANIFEST_TIMEOUT = 20.0  # seconds for a peer to answer a manifest request (it goes behind
# the answering side's upload limit, so give it longer than a block request)
MAX_REFUSALS = 8  # REJECTs of pieces a peer said it had, before it counts as lying


@dataclass
class SwarmConfig:
    signal_urls: list[str]
    "Signaling servers, in order of preference."
    ice_servers: list = field(default_factory=list)
    "RTCIceServer list; empty means host candidates only."
    ice_servers_fixed: bool = False
    "The user chose ICE servers (--ice-server): ignore the signaling server's ice-config."
    token: str | None = None
    "Signaling access token."
    retries: int = 3
    "Attempts to reach the signaling server."
    timeout: float = 10.0
    "Seconds to wait for a usable peer before giving up."
    max_peers: int = 32
    "Connections kept at once."
    max_peers_per_address: int | None = None
    "Connections from one remote address (None: slots.default_per_address)."
    max_upload_rate: float | None = None
    "Bytes per second summed over all peers (None: unlimited)."
    connect_timeout: float = 15.0
    "Seconds for one WebRTC connection to open."


class RateLimiter:
    """Token bucket shared by every upload of a process."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            burst = max(self.rate / 4, n)
            self._tokens = min(burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


class Rate:
    """Exponentially weighted bytes per second, for progress and request pipelining."""

    def __init__(self, half_life: float = 2.0) -> None:
        self.half_life = half_life
        self.value = 0.0
        self._pending = 0
        self._last = time.monotonic()

    def add(self, n: int) -> None:
        self._pending += n

    def update(self, now: float) -> float:
        dt = now - self._last
        if dt >= 0.25:
            inst = self._pending / dt
            w = 0.5 ** (dt / self.half_life)
            self.value = w * self.value + (1 - w) * inst
            self._pending = 0
            self._last = now
        return self.value


class PeerSession:
    """One connected peer: its link, its protocol state and what it has."""

    def __init__(self, swarm: Swarm, sig_id: str, link: PeerLink, offerer: bool) -> None:
        self.swarm = swarm
        self.sig_id = sig_id
        self.link = link
        self.offerer = offerer
        self.proto = wire.PeerProtocol(swarm.content_hash, swarm.peer_id)
        self.has_all = False
        self.pieces: set[int] = set()
        self.pending_bitfield: bytes | None = None
        self.announced_to_picker = False
        self.manifest_buf = bytearray()
        self.manifest_unavailable = False
        self.manifest_asked_at: float | None = None  # our manifest request is unanswered since
        self.serve_queue: deque[tuple[int, int, int]] = deque()
        self.serve_wakeup = asyncio.Event()
        self.bytes_down = 0
        self.bytes_up = 0
        self.rate = Rate()
        self.slots = START_SLOTS
        self.strikes = 0
        self.last_data = time.monotonic()  # when it last sent a block (or connected)
        self.refused: set[int] = set()  # pieces it said it had, then rejected
        self.dropped: str | None = None
        self.refused_busy = False  # it answered "busy": no slot for us there, for now
        self.tasks: list[asyncio.Task] = []
        if swarm.manifest is not None:
            self.proto.set_local_manifest_size(len(swarm.manifest.encoded))

    @property
    def ready(self) -> bool:
        return self.proto.remote is not None and not self.link.closed.is_set()

    def has(self, piece: int) -> bool:
        return (self.has_all or piece in self.pieces) and piece not in self.refused

    def send(self, data: bytes | None) -> None:
        if data is None:
            return
        with contextlib.suppress(LinkClosed):
            self.link.send_nowait(data)


class Swarm:
    """All peers for one content hash. Seeding: give `manifest` and `source`."""

    def __init__(
        self,
        content_hash: bytes,
        config: SwarmConfig,
        emit: EventSink,
        *,
        manifest: Manifest | None = None,
        source: SeedFile | PartFile | None = None,
    ) -> None:
        self.content_hash = content_hash
        self.content_id = content_hash.hex()
        self.config = config
        self.emit = emit
        self.peer_id = os.urandom(16)
        self.manifest = manifest
        self.source = source
        self.picker: Picker | None = None
        self.sessions: dict[str, PeerSession] = {}
        self.slots = Slots(config.max_peers, config.max_peers_per_address)
        self.busy_peers: dict[str, tuple[int, float]] = {}  # said busy: (attempts, retry at)
        self.busy_refusals = 0  # times a peer had no slot for us
        self.banned: set[str] = set()
        self.banned_ids: set[bytes] = set()
        self.limiter = RateLimiter(config.max_upload_rate)
        self.signal: SignalingClient | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.up_rate = Rate()
        self.down_rate = Rate()
        self.rejections = 0  # bad manifests and bad pieces seen
        self.manifest_ready = asyncio.Event()
        self.piece_done = asyncio.Event()  # pulsed when a piece is verified
        self.complete = asyncio.Event()
        self.fatal: P2PError | None = None
        self.fatal_event = asyncio.Event()
        self.last_peer_time = time.monotonic()
        self._buffers: dict[int, bytearray] = {}
        self._contributors: dict[int, set[str]] = {}
        self._bg: set[asyncio.Task] = set()
        self.on_manifest: Callable[[Manifest], Any] | None = None  # async hook: open a store
        self.per_peer_received: dict[str, int] = {}
        self.peer_connections: dict[str, str] = {}  # host/srflx/relay, for the summary
        self.connect_failures = 0  # peers whose WebRTC connection never opened
        self.started = time.monotonic()
        self.accepting = True  # False once a finished download stops serving
        self._opening = False  # a verified manifest arrived; its store is being opened
        if manifest is not None:
            self.manifest_ready.set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.ice_servers_fixed:  # --ice-server: checked as ice-config's are
            await self._on_ice_config(None)
        handlers = SignalHandlers(
            peer_list=self._on_peer_list,
            new_peer=lambda p: None,
            peer_left=self._on_peer_left,
            signal=self._on_signal,
            ice_config=self._on_ice_config,
        )
        self.signal = SignalingClient(
            self.config.signal_urls,
            handlers,
            token=self.config.token,
            retries=self.config.retries,
            timeout=self.config.timeout,
        )
        await self.signal.connect()
        self.emit(events.SignalingConnected(url=self.signal.url, peer=self.signal.sid))
        await self.signal.announce(self.content_id, self.peer_id.hex())
        self._spawn(self._ticker())

    async def close(self) -> None:
        if self.signal:
            await self.signal.close()
        for s in list(self.sessions.values()):
            await self._drop(s, None)
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

    def progress(self) -> events.Progress:
        """A `progress` event: peers, bytes, rate and, once known, verified pieces."""
        m, p = self.manifest, self.picker
        ev = events.Progress(
            peers=len(self.usable_peers),
            received=self.bytes_down,
            rate=round(self.down_rate.value),
            sent=self.bytes_up,
        )
        if m is not None and p is not None:
            have = sum(m.piece_length(i) for i in range(p.count) if p.have[i])
            ev = replace(ev, size=m.size, have=have, pieces=p.count, verified=p.n_have)
        return ev

    @property
    def usable_peers(self) -> list[PeerSession]:
        return [s for s in self.sessions.values() if s.ready]

    @property
    def helpful_peers(self) -> list[PeerSession]:
        """Connected peers that may give us something we lack. Only these hold off a
        download's `--timeout`: a peer that has nothing we need (another downloader
        waiting for the same manifest, or with the same pieces) must not keep it waiting
        forever."""
        return [s for s in self.sessions.values() if s.ready and self._can_help(s)]

    def _can_help(self, s: PeerSession) -> bool:
        if self.manifest is None:
            return not s.manifest_unavailable
        p = self.picker
        if p is None or p.complete:
            return False
        if s.has_all:
            return len(s.refused) < p.count - p.n_have
        return any(not p.have[i] and i not in s.refused for i in s.pieces)

    # -- signaling -------------------------------------------------------------------------

    async def _on_peer_list(self, peers: list[str]) -> None:
        for p in peers:
            self._maybe_connect(p)

    def _maybe_connect(self, sig_id: str) -> None:
        own = self.signal.sid if self.signal else None
        if sig_id == own or sig_id in self.sessions or sig_id in self.banned:
            return
        if not self.accepting:
            return
        if self.slots.full:
            return
        link = PeerLink.create(self.config.ice_servers)
        s = PeerSession(self, sig_id, link, offerer=True)
        self.sessions[sig_id] = s
        self.slots.add(sig_id, time.monotonic())
        self._spawn(self._run_offer(s))

    async def _on_ice_config(self, cfg: dict | None) -> None:
        """STUN/TURN servers from the signaling server, unless the user chose their own
        (`cfg` None: check the user's, once, at start)."""
        if self.config.ice_servers_fixed and cfg is not None:
            return
        from .iceprobe import choose_ice_servers
        from .iceurls import servers_from_config

        self.config.ice_servers = await choose_ice_servers(
            servers_from_config(cfg) if cfg is not None else self.config.ice_servers,
            warn=lambda m: self.emit(events.Warning(message=m)),
        )
        self.emit(events.IceConfig(servers=[s.urls for s in self.config.ice_servers]))

    async def _on_peer_left(self, sig_id: str) -> None:
        self.busy_peers.pop(sig_id, None)
        s = self.sessions.get(sig_id)
        # Once connected, WebRTC no longer needs the server: keep the link.
        if s is not None and not s.ready and not s.link.opened.is_set():
            await self._drop(s, None)

    async def _on_signal(self, kind: str, sig_id: str, data: dict) -> None:
        if data.get("hash") not in (None, self.content_id):
            return
        try:
            if kind == "offer":
                if sig_id in self.banned:
                    return
                old = self.sessions.get(sig_id)
                if old is not None:
                    await self._drop(old, None)  # the peer restarted its side
                if not await self._admit_offer(sig_id):
                    return
                s = PeerSession(self, sig_id, PeerLink.create(self.config.ice_servers), False)
                self.sessions[sig_id] = s
                self.slots.add(sig_id, time.monotonic())
                self._spawn(self._run_answer(s, data.get("offer") or data.get("sdp")))
            elif kind == "answer":
                s = self.sessions.get(sig_id)
                if s is not None and s.offerer and isinstance(data.get("busy"), str):
                    self._refused_busy(s)
                    await self._drop(s, None)
                elif s is not None and s.offerer:
                    await s.link.accept_answer(data.get("answer") or data.get("sdp"))
            elif kind == "ice-candidate":
                s = self.sessions.get(sig_id)
                if s is not None:
                    await s.link.add_candidate(data.get("candidate"))
        except LinkClosed:
            pass  # the connection went away while this arrived
        except (ValueError, TypeError, AttributeError) as e:
            log.info("bad %s from %s: %s", kind, sig_id, e)
            s = self.sessions.get(sig_id)
            if s is not None:
                await self._drop(s, f"bad {kind}: {e}")

    async def _admit_offer(self, sig_id: str) -> bool:
        """Room for a newcomer's offer? An idle peer may give its slot up; else the newcomer
        hears "busy" (an answer without SDP) and tries again later."""
        verdict = self.slots.offer(sig_id, time.monotonic())
        if isinstance(verdict, Refuse):
            assert self.signal is not None
            await self.signal.send(
                "answer", sig_id, {"hash": self.content_id, "busy": verdict.reason}
            )
            self.emit(events.PeerRefused(peer=sig_id, reason=verdict.reason))
            return False
        if verdict.evict is not None:
            await self._drop_idle(verdict.evict, "gave its slot to a waiting peer")
        return True

    async def _drop_idle(self, sig_id: str, why: str) -> None:
        s = self.sessions.get(sig_id)
        if s is not None:
            idle = self.slots.idle_for(sig_id, time.monotonic())
            await self._drop(s, f"idle for {idle:.0f}s, {why}")

    def _refused_busy(self, s: PeerSession) -> None:
        """`s` has no slot for us now: offer again later, and do not blame the network."""
        s.refused_busy = True
        self.busy_refusals += 1
        attempts = self.busy_peers.get(s.sig_id, (0, 0.0))[0] + 1
        self.busy_peers[s.sig_id] = (attempts, time.monotonic() + retry_delay(attempts))

    async def _run_offer(self, s: PeerSession) -> None:
        assert self.signal is not None
        try:
            offer = await s.link.make_offer()
        except LinkClosed:
            await self._drop(s, None)  # it left while we were making the offer
            return
        await self.signal.send("offer", s.sig_id, {"hash": self.content_id, "offer": offer})
        await self._run_session(s)

    async def _run_answer(self, s: PeerSession, offer: Any) -> None:
        assert self.signal is not None
        if not isinstance(offer, dict):
            await self._drop(s, "offer without a session description")
            return
        try:
            answer = await s.link.answer_offer(offer)
        except ValueError as e:
            await self._drop(s, f"bad offer: {e}")
            return
        except LinkClosed:
            await self._drop(s, None)  # it left while we answered
            return
        await self.signal.send("answer", s.sig_id, {"hash": self.content_id, "answer": answer})
        await self._run_session(s)

    # -- one peer --------------------------------------------------------------------------

    async def _run_session(self, s: PeerSession) -> None:
        if not await s.link.wait_open(self.config.connect_timeout):
            if not s.refused_busy:
                self.connect_failures += 1
            await self._drop(s, None if s.link.closed.is_set() else "connection timed out")
            return
        s.last_data = time.monotonic()
        verdict = self.slots.opened(s.sig_id, address_key(s.link.remote_candidate()), s.last_data)
        if isinstance(verdict, Refuse):
            await self._refuse(s, verdict.reason)
            return
        if verdict.evict is not None:
            await self._drop_idle(verdict.evict, "gave its slot to another peer from its address")
        s.send(s.proto.handshake())  # first: attaching the handler may answer early messages
        s.link.on_message = lambda m: self._on_message(s, m)
        s.tasks.append(self._spawn(self._serve_loop(s)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.link.closed.wait(), HANDSHAKE_TIMEOUT)
        if s.proto.remote is None and not s.link.closed.is_set():
            await self._drop(s, "no handshake within 10 s", ban=True)
            return
        await s.link.closed.wait()
        await self._drop(s, s.dropped)

    async def _refuse(self, s: PeerSession, reason: str) -> None:
        """Turn an open connection away with a reason it can act on ("busy: ..."). Closing
        at once would lose the CLOSE message (closing drops what is queued): give the
        remote a moment to read it and hang up itself."""
        s.dropped = reason
        s.send(wire.encode_close(reason))
        self.emit(events.PeerRefused(peer=s.sig_id, reason=reason))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.link.closed.wait(), 2.0)
        await self._drop(s, None)

    async def _drop(
        self, s: PeerSession, reason: str | None, *, ban: bool = False, warn: bool = False
    ) -> None:
        """Forget a peer. `ban`: it misbehaved, never talk to it again; `warn`: tell the user."""
        if self.sessions.get(s.sig_id) is not s:
            return
        del self.sessions[s.sig_id]
        self.slots.remove(s.sig_id)
        if s.sig_id not in self.per_peer_received:
            # The summary lists peers that gave us data; any other entry would outlive its
            # peer, and a seeder meets new peers for as long as it runs.
            self.peer_connections.pop(s.sig_id, None)
        if reason and s.dropped is None:
            s.dropped = reason
        if ban:
            self.banned.add(s.sig_id)
            if s.proto.remote:
                self.banned_ids.add(s.proto.remote.peer_id)
        if reason and not s.link.closed.is_set():
            s.send(wire.encode_close(reason))
        if self.picker is not None and s.announced_to_picker:
            self.picker.remove_peer(s.sig_id, None if s.has_all else s.pieces)
        for t in s.tasks:
            t.cancel()
        await s.link.close()
        if s.proto.remote is not None or ban or warn:
            self.emit(events.PeerLeft(
                peer=s.sig_id, received=s.bytes_down, sent=s.bytes_up, reason=reason or None
            ))
        if reason and (ban or warn):
            self.emit(events.Warning(message=f"dropped peer {s.sig_id}: {reason}"))
        self.refill_all()

    def _on_message(self, s: PeerSession, data: bytes | str) -> None:
        if s.sig_id not in self.sessions:
            return
        try:
            if isinstance(data, str):
                raise wire.ProtocolError("text message on the binary protocol channel")
            if len(data) > MAX_MESSAGE:
                raise wire.ProtocolError(f"message of {len(data)} bytes exceeds 256 KiB")
            ev = s.proto.receive(data)
            self._handle(s, ev)
        except wire.ProtocolError as e:
            self._spawn(self._drop(s, f"protocol error: {e}", ban=True))

    def _handle(self, s: PeerSession, ev: wire.Event) -> None:
        if isinstance(ev, wire.BlockReceived):
            self._on_block(s, ev)
        elif isinstance(ev, wire.BlockRequested):
            if self.source is None or self.picker_has_not(ev.piece):
                s.send(wire.encode_reject(ev.piece, ev.offset, ev.length))
                return
            if len(s.serve_queue) >= MAX_QUEUED_REQUESTS:
                raise wire.ProtocolError("request flood")
            self.slots.useful(s.sig_id, time.monotonic())
            s.serve_queue.append((ev.piece, ev.offset, ev.length))
            s.serve_wakeup.set()
        elif isinstance(ev, wire.BlockCancelled):
            with contextlib.suppress(ValueError):
                s.serve_queue.remove((ev.piece, ev.offset, ev.length))
        elif isinstance(ev, wire.BlockRejected):
            if self.picker is not None:
                self.picker.on_reject(s.sig_id, (ev.piece, ev.offset, ev.length))
                # It told us it has the piece and then refused: stop asking it for that one.
                s.refused.add(ev.piece)
                if len(s.refused) > MAX_REFUSALS:
                    raise wire.ProtocolError("refuses pieces it claims to have (lying bitfield)")
                self._refill(s)
        elif isinstance(ev, wire.HaveReceived):
            if ev.piece not in s.pieces and not s.has_all:
                s.pieces.add(ev.piece)
                if self.picker is not None and s.announced_to_picker:
                    self.picker.peer_has(ev.piece)
                    self._refill(s)
        elif isinstance(ev, wire.BitfieldReceived | wire.HaveAllReceived):
            if isinstance(ev, wire.HaveAllReceived):
                s.has_all = True
            else:
                s.pending_bitfield = ev.bits
            if self.manifest is None:
                if s.manifest_unavailable or not s.manifest_buf:
                    self._request_manifest(s)
            else:
                self._attach_to_picker(s)
        elif isinstance(ev, wire.Handshake):
            if ev.peer_id == self.peer_id or ev.peer_id in self.banned_ids:
                raise wire.ProtocolError("connected to ourselves or to a dropped peer")
            if any(o is not s and o.proto.remote is not None and o.proto.remote.peer_id
                   == ev.peer_id for o in self.sessions.values()):
                # Same peer under a new signaling id (e.g. after a server restart).
                self._spawn(self._drop(s, "already connected to this peer"))
                return
            self.last_peer_time = time.monotonic()
            self.busy_peers.pop(s.sig_id, None)  # it had room after all
            kind = self.peer_connections[s.sig_id] = s.link.candidate_pair_kind() or "unknown"
            self.emit(events.PeerJoined(peer=s.sig_id, connection=kind))
            if self.manifest is not None:
                s.proto.set_geometry(self._geometry())
                self._send_availability(s)
            else:
                self._request_manifest(s)
        elif isinstance(ev, wire.ManifestRequested):
            # Answered like a block: behind the upload limit and the link's back-pressure,
            # one at a time, within the request budget `proto` holds the peer to.
            if self.manifest is not None:
                self.slots.useful(s.sig_id, time.monotonic())
            s.tasks.append(self._spawn(self._send_manifest(s)))
        elif isinstance(ev, wire.ManifestData):
            self._on_manifest_data(s, ev)
        elif isinstance(ev, wire.Closed):
            s.dropped = s.dropped or f"peer closed: {ev.reason}"
            if ev.reason.startswith(BUSY):
                self._refused_busy(s)
            self._spawn(self._drop(s, None))

    def picker_has_not(self, piece: int) -> bool:
        if self.picker is None:
            return self.manifest is None
        return not self.picker.have[piece]

    # -- manifest --------------------------------------------------------------------------

    async def _send_manifest(self, s: PeerSession) -> None:
        answer = s.proto.manifest_answer(self.manifest.encoded if self.manifest else None)
        await self.limiter.take(len(answer))
        with contextlib.suppress(LinkClosed):
            await s.link.send(answer)
            # Until now a second request would have been a protocol error: a peer cannot
            # make us queue more than one answer.
            s.proto.manifest_answered()

    def _request_manifest(self, s: PeerSession) -> None:
        if self.manifest is not None or s.proto.manifest_wanted is not None:
            return
        s.manifest_unavailable = False
        s.manifest_asked_at = time.monotonic()
        s.send(s.proto.send_manifest_request(len(s.manifest_buf), wire.MANIFEST_CHUNK))

    def _on_manifest_data(self, s: PeerSession, ev: wire.ManifestData) -> None:
        s.manifest_asked_at = None
        if self.manifest is not None:
            # An answer to a request sent before we had the manifest: it must still agree.
            enc = self.manifest.encoded
            if ev.total and (ev.total != len(enc) or enc[ev.offset : ev.offset + len(ev.data)]
                             != ev.data):
                self.rejections += 1
                raise wire.ProtocolError("sent a bad manifest: it differs from the verified one")
            return
        if self._opening:
            return  # a verified manifest is already being set up
        if ev.total == 0:
            s.manifest_unavailable = True  # it has no manifest yet; its bitfield will say
            s.manifest_buf.clear()
            return
        if ev.total > MAX_MANIFEST:
            raise wire.ProtocolError(f"manifest of {ev.total} bytes is too large")
        s.manifest_buf += ev.data
        if len(s.manifest_buf) < ev.total:
            self._request_manifest(s)
            return
        try:
            m = decode_verified(bytes(s.manifest_buf), self.content_hash)
        except P2PError as e:
            self.rejections += 1
            self.emit(events.ManifestRejected(peer=s.sig_id, reason=e.message))
            raise wire.ProtocolError(f"sent a bad manifest: {e.message}") from None
        self._spawn(self._set_manifest(m, s.sig_id))

    async def _set_manifest(self, m: Manifest, from_peer: str) -> None:
        if self.manifest is not None or self._opening:
            return
        # `manifest` is set only once the store and picker exist: until then every peer
        # is treated as before the manifest (no availability sent, none accepted).
        self._opening = True
        self.emit(events.Manifest(
            peer=from_peer, name=m.name, size=m.size, piece_size=m.piece_size,
            pieces=m.piece_count,
        ))
        if self.on_manifest is not None:
            await self.on_manifest(m)  # opens the store and the picker
        self.manifest = m
        self.manifest_ready.set()
        for s in list(self.sessions.values()):
            s.proto.set_local_manifest_size(len(m.encoded))
            if s.proto.remote is not None:
                s.proto.set_geometry(self._geometry())
                self._send_availability(s)
                if s.proto.remote_bitfield_seen:
                    self._attach_to_picker(s)
        self.refill_all()

    def _geometry(self) -> wire.Geometry:
        m = self.manifest
        assert m is not None
        return wire.Geometry(m.piece_count, m.piece_size, m.size)

    def _send_availability(self, s: PeerSession) -> None:
        if self.picker is None:
            s.send(wire.encode_have_all())  # a seeder has everything
        elif self.source is not None and not self.source.keeps_pieces:
            # A pipe download's spool keeps only its read-ahead window: offer nothing.
            s.send(wire.encode_bitfield(wire.bitfield_from(set(), self.picker.count)))
        elif self.picker.complete:
            s.send(wire.encode_have_all())
        else:
            have = {i for i, h in enumerate(self.picker.have) if h}
            s.send(wire.encode_bitfield(wire.bitfield_from(have, self.picker.count)))

    def _attach_to_picker(self, s: PeerSession) -> None:
        if self.picker is None or s.announced_to_picker:
            return
        # HAVEs that came before the manifest were not range-checked yet.
        s.pieces = {x for x in s.pieces if x < self.picker.count}
        if s.pending_bitfield is not None and not s.has_all:
            try:
                s.pieces |= wire.bitfield_pieces(s.pending_bitfield, self.picker.count)
            except wire.ProtocolError as e:
                self._spawn(self._drop(s, f"protocol error: {e}", ban=True))
                return
            s.pending_bitfield = None
        s.announced_to_picker = True
        self.picker.add_peer(s.sig_id, None if s.has_all else set(s.pieces))
        self._refill(s)

    def set_priority(self, pieces: list[int]) -> None:
        """Put these pieces first (streaming); cancel requests nobody needs any more."""
        p = self.picker
        if p is None:
            return
        p.set_priority(pieces)
        urgent = {x for x in pieces if not p.have[x]}
        if urgent and p.strict_priority:
            for s in list(self.sessions.values()):
                for block in p.in_flight_blocks(s.sig_id):
                    if block[0] not in urgent:
                        s.send(s.proto.send_cancel(*block))
                        p.on_reject(s.sig_id, block)
        self.refill_all()

    # -- downloading -----------------------------------------------------------------------

    def refill_all(self) -> None:
        for s in list(self.sessions.values()):
            self._refill(s)

    def _refill(self, s: PeerSession) -> None:
        p = self.picker
        if p is None or p.complete or not s.announced_to_picker or not s.ready:
            return
        free = s.slots - p.in_flight(s.sig_id)
        if free <= 0:
            return
        has = None if s.has_all and not s.refused else s.has
        for piece, offset, length in p.pick(s.sig_id, has, free, time.monotonic()):
            s.send(s.proto.send_request(piece, offset, length))

    def _on_block(self, s: PeerSession, ev: wire.BlockReceived) -> None:
        p = self.picker
        n = len(ev.data)
        s.bytes_down += n
        s.rate.add(n)
        self.bytes_down += n
        self.down_rate.add(n)
        self.per_peer_received[s.sig_id] = self.per_peer_received.get(s.sig_id, 0) + n
        s.last_data = time.monotonic()
        self.slots.useful(s.sig_id, s.last_data)
        if p is None or self.manifest is None:
            return
        block = (ev.piece, ev.offset, n)
        new = p.block_needed(ev.piece, ev.offset)  # not a late or end-game duplicate
        complete, dups = p.on_block(s.sig_id, block)
        for other, dblock in dups:
            o = self.sessions.get(other)
            if o is not None:
                o.send(o.proto.send_cancel(*dblock))
        if new:
            buf = self._buffers.get(ev.piece)
            if buf is None:
                buf = self._buffers[ev.piece] = bytearray(self.manifest.piece_length(ev.piece))
            buf[ev.offset : ev.offset + n] = ev.data
            self._contributors.setdefault(ev.piece, set()).add(s.sig_id)
        if complete:
            data = self._buffers.pop(ev.piece)
            peers = self._contributors.pop(ev.piece, set())
            self._spawn(self._verify(ev.piece, data, peers))
        self._refill(s)

    async def _verify(self, piece: int, data: bytearray, peers: set[str]) -> None:
        m, p, store = self.manifest, self.picker, self.source
        assert m is not None and p is not None and isinstance(store, PartFile)
        ok = await asyncio.to_thread(m.piece_ok, piece, data)
        if ok:
            await asyncio.to_thread(store.write_piece, piece, data)
        if not ok:
            self.rejections += 1
            p.on_piece_failed(piece)
            self.emit(events.PieceRejected(piece=piece, peers=sorted(peers)))
            for sig in peers:
                s = self.sessions.get(sig)
                if s is None:
                    continue
                s.strikes += BAD_PIECE_STRIKES if len(peers) == 1 else 1
                if s.strikes >= BAD_PIECE_STRIKES:
                    await self._drop(s, f"sent corrupt data for piece {piece}", ban=True)
            self.refill_all()
            return
        p.on_piece_verified(piece)
        self.emit(events.PieceVerified(piece=piece, peers=sorted(peers)))
        offer = store.keeps_pieces  # a pipe download's spool offers nothing (store.py)
        for s in list(self.sessions.values()):
            if offer and s.ready and s.proto.geometry is not None and not s.has_all:
                s.send(wire.encode_have(piece))
        self.piece_done.set()
        self.piece_done.clear()
        if p.complete:
            self.complete.set()
        self.refill_all()

    # -- serving ---------------------------------------------------------------------------

    async def _serve_loop(self, s: PeerSession) -> None:
        while True:
            if not s.serve_queue:
                s.serve_wakeup.clear()
                await s.serve_wakeup.wait()
                continue
            piece, offset, length = s.serve_queue.popleft()
            src = self.source
            if src is None:
                continue
            if not src.has(piece):  # e.g. a pipe download's spool has moved past it
                s.send(wire.encode_reject(piece, offset, length))
                continue
            try:
                cached = src.cache.get(piece) if isinstance(src, SeedFile) else None
                if cached is not None:
                    data = cached[offset : offset + length]
                else:
                    data = await asyncio.to_thread(src.read_block, piece, offset, length)
            except SourceChanged as e:
                self.fail(e)
                return
            except OSError as e:
                log.warning("read failed: %s", e)
                s.send(wire.encode_reject(piece, offset, length))
                continue
            await self.limiter.take(length)
            try:
                await s.link.send(wire.encode_piece_header(piece, offset) + data)
            except LinkClosed:
                return
            s.bytes_up += length
            self.bytes_up += length
            self.up_rate.add(length)

    # -- housekeeping ----------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            # The loops below bind `s`; left bound, this frame would keep the last peer's
            # session (its whole connection) alive while it sleeps, after the peer is gone.
            s = None
            await asyncio.sleep(0.5)
            now = time.monotonic()
            self.up_rate.update(now)
            self.down_rate.update(now)
            p = self.picker
            for s in list(self.sessions.values()):
                if s.serve_queue or (p is not None and p.in_flight(s.sig_id)):
                    self.slots.useful(s.sig_id, now)  # we serve it, or it serves us
                r = s.rate.update(now)
                if p is not None and self.manifest is not None:
                    # Keep about one second of data in flight per peer.
                    block = p.block_size
                    s.slots = max(MIN_SLOTS, min(MAX_SLOTS, int(r / block) + 2))
            if self.helpful_peers:
                self.last_peer_time = now
            for s in list(self.sessions.values()):
                if (self.manifest is None and s.manifest_asked_at is not None
                        and now - s.manifest_asked_at > MANIFEST_TIMEOUT):
                    await self._drop(s, "did not answer the manifest request", warn=True)
            idle = self.slots.to_drop(now)
            if idle is not None:
                await self._drop_idle(idle, "while every slot was taken")
            for sig, (attempts, at) in list(self.busy_peers.items()):
                if now >= at and sig not in self.sessions:
                    self.busy_peers[sig] = (attempts, now + retry_delay(attempts + 1))
                    self._maybe_connect(sig)
            if p is not None and not p.complete:
                timed_out: set[str] = set()
                for sig, block in p.expired(now):
                    s = self.sessions.get(sig)
                    if s is not None:
                        s.send(s.proto.send_cancel(*block))
                        s.slots = MIN_SLOTS
                        timed_out.add(sig)
                for sig in timed_out:
                    s = self.sessions.get(sig)
                    # A request timed out and the peer sent nothing at all for a whole
                    # timeout: it is not slow, it is not answering.
                    if s is not None and now - s.last_data >= p.request_timeout:
                        await self._drop(s, "stopped answering requests", warn=True)
                self.refill_all()


def no_peers_error(swarm: Swarm, timeout: float) -> P2PError:
    """The error for a download that found nobody usable within `timeout`."""
    if swarm.rejections:
        return Unverifiable(
            "every peer sent data that failed verification; the link may be wrong, "
            "or ask the sender to seed again"
        )
    unopened = swarm.connect_failures + sum(
        not s.link.opened.is_set() and s.sig_id not in swarm.busy_peers  # a retry of a busy one
        for s in swarm.sessions.values()
    )
    if swarm.manifest is None and swarm.busy_peers and not unopened:
        # They answered: the network is fine, their connection slots were all taken.
        return NoPeers(
            f"found {len(swarm.busy_peers)} peer(s) with {swarm.content_id[:16]}... but they "
            f"had no free connection slot for {timeout:g}s (each serves at most --max-peers "
            "peers, and a few per address); try again later, or ask the sender to raise "
            "--max-peers"
        )
    if swarm.manifest is None and unopened:
        from .iceurls import turn_urls

        turn = turn_urls(swarm.config.ice_servers)
        return NoPeers(
            f"found {unopened} peer(s) with {swarm.content_id[:16]}... but no connection "
            f"opened within {timeout:g}s: they cannot be reached directly from this network"
            + (f", and not through the TURN relay {turn[0]} either" if turn else
               ", and no working TURN relay was given (the signaling server handed out "
               "none, or none answered)")
            + "; run 'p2p doctor' to check the relay"
        )
    if swarm.manifest is None:
        return NoPeers(
            f"no peer has {swarm.content_id[:16]}... (waited {timeout:g}s); check the hash/link "
            "and that a seeder is running on the same signaling server"
        )
    if swarm.usable_peers:
        return NoPeers(
            f"the {len(swarm.usable_peers)} connected peer(s) lack every missing piece, and no "
            f"peer that has them came within {timeout:g}s; the partial download is kept, run "
            "the same command again to resume (or when a seeder is back)"
        )
    return NoPeers(
        f"all peers left and none came back within {timeout:g}s; the partial download is kept, "
        "run the same command again to resume"
    )
