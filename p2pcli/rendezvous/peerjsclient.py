"""A PeerJS server as one of the swarm's meetings (issue 15, rendezvous kind 2): the asyncio
adapter that moves text frames between an aiohttp WebSocket and `peerjs.PeerJSSession`,
which decides everything (ids, slots, hellos, what a message means, budgets).

`start()` claims a slot within START_TIMEOUT or raises `SignalUnreachable` with one line
(server unreachable, key refused, every slot taken). After a drop the meeting reconnects on
a back-off of 1, 2, 4 ... 30 s, says hello again, and goes on; links already open are not
its business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiohttp

from .. import events as ev
from ..errors import SignalUnreachable, UsageError
from ..swarm.meet import MeetHandlers
from . import peerjs
from .peerjs import Found, Ignored, Left, Opened, PeerJSSession, Refused, Relayed, Taken

log = logging.getLogger(__name__)

START_TIMEOUT = 5.0
"Seconds `start()` may take: connecting, and trying slot after slot."
CLOSE_TIMEOUT = 2.0
PING = 20.0
"WebSocket ping interval: a server that stops answering is noticed within 1.5 of them."
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close `ws` without waiting long for a server that does not answer the close frame
    (aiohttp would wait 10 s)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT / 2):
            await ws.close()


class PeerJSMeeting:
    """Peers of one share on one PeerJS server (`Meeting`)."""

    kind = "peerjs"
    addressed_offers = True  # an OFFER goes to a peer by its id

    def __init__(self, url: str, content_hash: bytes, handlers: MeetHandlers, *,
                 prefix: str) -> None:
        try:
            self.server = peerjs.parse_server(url)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.url = str(self.server)
        self.prefix = prefix
        self.h = handlers
        self.session = PeerJSSession(content_hash, prefix=prefix, rng=random.SystemRandom())
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # one writer at a time on the socket
        self._closing = False

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # -- lifecycle --

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._register()
        except TimeoutError:
            await self._http.close()
            raise self._unreachable(f"no answer in {START_TIMEOUT:g}s") from None
        except BaseException:
            await self._http.close()
            raise
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                self.session.goodbye()
                await self._flush()
                if self._ws is not None:
                    await _close(self._ws)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        events = self.session.send(kind, peer, payload, self._now())
        await self._flush()
        await self._dispatch(events)

    # -- the socket --

    async def _register(self) -> None:
        """Connect as one slot after another until the server gives us one."""
        assert self._http is not None
        while (peer_id := self.session.claim()) is not None:
            try:
                ws = await self._http.ws_connect(self.server.ws_url(peer_id, self.session.token),
                                                 heartbeat=PING)
            except (aiohttp.ClientError, OSError) as e:
                # aiohttp's "Cannot connect to host ... ssl:default [...]" says less
                why = getattr(getattr(e, "os_error", None), "strerror", None) or str(e) \
                    or type(e).__name__
                raise self._unreachable(why) from None
            opened = False
            try:
                opened = await self._first_answer(ws)
            finally:
                if not opened:
                    await _close(ws)
            if opened:
                self._ws = ws
                log.info("peerjs %s: holding %s", self.url, peer_id)
                await self._flush()  # the hellos
                return
        raise SignalUnreachable(f"PeerJS server {self.url}: all {self.session.slots} ids "
                                "of this share are taken (as many peers are there)")

    def _unreachable(self, why: str) -> SignalUnreachable:
        return SignalUnreachable(f"PeerJS server {self.url} could not be reached ({why})")

    async def _first_answer(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """True when the server gives us the id asked for, False when it is taken."""
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue  # not PeerJS: ignored
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise self._unreachable("it closed the connection before giving us an id")
            for e in self.session.receive(msg.data, self._now()):
                if isinstance(e, Refused):
                    raise SignalUnreachable(f"PeerJS server {self.url} refused us: "
                                            f"{e.reason}")
                if isinstance(e, (Opened, Taken)):
                    return isinstance(e, Opened)

    async def _flush(self) -> None:
        ws = self._ws
        out = self.session.messages_to_send()
        if ws is None or ws.closed:
            return  # sent again on reconnection (hellos) or not at all (stale signals)
        async with self._lock:
            for text in out:
                try:
                    await ws.send_str(text)
                except (aiohttp.ClientError, ConnectionError, RuntimeError):
                    return  # closing: the reader notices and reconnects

    async def _run(self) -> None:
        """Read until the socket drops, then reconnect on a back-off, until closed."""
        failures = 0
        while not self._closing:
            if self._ws is not None:
                await self._pump(self._ws)
                failures = 0
                self._ws = None
                self.session.disconnected()
                if self._closing:
                    return
                self.h.emit(ev.Warning(message=f"peerjs {self.url}: connection lost; "
                                               "reconnecting"))
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)] * random.uniform(0.8, 1.2)
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    await self._register()
            except (SignalUnreachable, TimeoutError) as e:
                failures += 1
                self.session.disconnected()
                log.info("peerjs %s: reconnection failed: %s", self.url,
                         getattr(e, "message", "timed out"))

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            due = self.session.timer()
            wait = None if due is None else max(0.0, due - self._now())
            try:
                msg = await ws.receive(timeout=wait)
            except TimeoutError:
                self.session.on_timer(self._now())
                await self._flush()
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue  # not PeerJS: ignored
            if msg.type != aiohttp.WSMsgType.TEXT:
                return  # closed, closing or an error
            events = self.session.receive(msg.data, self._now())
            await self._flush()
            if any(isinstance(e, Refused) for e in events):
                await _close(ws)
                return
            await self._dispatch(events)

    async def _dispatch(self, events: list) -> None:
        for e in events:
            try:
                if isinstance(e, Found):
                    await self.h.peer_list(e.peers)
                elif isinstance(e, Relayed):
                    await self.h.signal(e.kind, e.peer, e.data)
                elif isinstance(e, Left):
                    await self.h.peer_left(e.peer)
                elif isinstance(e, Ignored):
                    log.debug("peerjs %s: ignored %s", self.url, e.why)
            except Exception:  # the swarm's bug: log it, keep the meeting alive
                log.exception("peerjs %s: handling %r failed", self.url, e)
