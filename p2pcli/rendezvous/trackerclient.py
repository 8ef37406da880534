"""A WebTorrent WebSocket tracker as a rendezvous (issue 15, kind 1): the asyncio adapter
around `wstracker.TrackerSession`, implementing `swarm.meet.Meeting`.

It connects with aiohttp, announces the share with offers made in advance (the swarm makes
each link and its offer: `MeetHandlers.new_offer`), hands a link to the swarm when a peer
answers it (`adopt`), passes offers forwarded from other peers to the swarm as if a
signaling server had relayed them, and sends our answers back through the tracker. It
announces again at the tracker's interval with fresh offers, closes the links of offers
nobody answered, says `stopped` on exit and reconnects after a drop.

A tracker that is down, slow or talks nonsense costs a warning, never the command: the
swarm starts every rendezvous at once and goes on with the first that answers
(`meet.start_all`); a tracker's later failures are warnings too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import aiohttp

from .. import events as ev
from ..errors import SignalUnreachable
from ..rtc import PeerLink
from ..swarm.meet import MeetHandlers, Stats
from .wstracker import (
    MAX_MESSAGE,
    Announced,
    Answer,
    Failed,
    Ignored,
    Offer,
    TrackerSession,
    info_hash_for,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to open the WebSocket and hear the first answer
OFFERS = 5  # offers made in advance per announce (WebTorrent: 10; the protocol's cap: 10)
SEED_OFFERS = 2  # while we want nothing: enough to reach leechers that came before us
RECONNECT_FIRST, RECONNECT_MAX = 2.0, 60.0
EXPIRY_CHECK = 10.0  # seconds between looks for offers nobody answered
CLOSE_TIMEOUT = 1.0  # seconds `stopped` may take on exit
PEER_ID_PREFIX = b"-P2P010-"
"Our tracker peer id is this plus 12 random bytes, as BitTorrent clients name theirs."


def tracker_peer_id() -> bytes:
    return PEER_ID_PREFIX + os.urandom(20 - len(PEER_ID_PREFIX))


class TrackerMeeting:
    kind = "tracker"

    def __init__(self, url: str, content_hash: bytes, h: MeetHandlers, *, prefix: str,
                 stats: Stats) -> None:
        self.url = url
        self.prefix = prefix
        self.h = h
        self.content_id = content_hash.hex()
        self.stats = stats
        self.session = TrackerSession(info_hash_for(content_hash), tracker_peer_id())
        self.pending: dict[bytes, PeerLink] = {}
        "Offer id -> the link of an offer we made in advance, until answered or expired."
        self.answer_to: dict[str, tuple[bytes, bytes]] = {}
        "Peer -> (its tracker peer id, the offer id we answer)."
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task | None = None
        self._warned: set[str] = set()
        self._closing = False
        self._ignored: str | None = None
        "Why the last message we could not use was not one (for the error message)."

    # -- Meeting ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            await self._drop_socket()
            if isinstance(e, TimeoutError):
                why = (f"what it sent is no tracker's answer: {self._ignored}" if self._ignored
                       else f"no answer in {CONNECT_TIMEOUT:g}s")
            else:  # aiohttp's "Cannot connect to host ... ssl:default [...]" says less
                why = getattr(getattr(e, "os_error", None), "strerror", None) or str(e) \
                    or type(e).__name__
            raise SignalUnreachable(
                f"WebTorrent tracker {self.url} could not be reached ({why})") from None
        if self._closing:  # the command ended while this tracker was slow to answer
            await self._drop_socket()
            return
        self._task = asyncio.ensure_future(self._run())

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        # A tracker carries answers to offers it forwarded, nothing else: no addressed
        # offers, no trickled candidates (aiortc puts every candidate in its SDP), no "busy".
        answer = payload.get("answer")
        if kind != "answer" or not isinstance(answer, dict) or self._ws is None:
            return
        ids = self.answer_to.pop(peer, None)
        if ids is None:
            return
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            await self._ws.send_str(self.session.answer(ids[0], ids[1], answer["sdp"]))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._ws is not None and not self._ws.closed:
            left, up, down, _ = self.stats()
            msg = self.session.announce(time.monotonic(), [], left=left, uploaded=up,
                                        downloaded=down, event="stopped")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.send_str(msg), CLOSE_TIMEOUT)
        await self._drop_socket()

    # -- the connection --------------------------------------------------------------------

    async def _connect(self) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=MAX_MESSAGE * 4,
                                               autoping=True, heartbeat=30.0)
        await self._announce(first=True)
        # The tracker's answer to our first announce says it is alive and speaks the
        # protocol; an offer forwarded meanwhile is kept for the loop.
        while True:
            msg = await self._ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ValueError("the tracker closed the connection")
            event = self.session.receive(msg.data, time.monotonic())
            if isinstance(event, Failed):
                raise ValueError(f"it refused: {event.reason}")
            if isinstance(event, Announced):
                return
            await self._handle(event)

    async def _drop_socket(self) -> None:
        """Close the connection, and the links of the offers it carried: their answers
        could only have come back over it (a tracker that keeps failing must not pile up
        a connection's worth of links per attempt)."""
        ws, http = self._ws, self._http
        self._ws = self._http = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if http is not None:
            await http.close()
        await self._close_pending(list(self.pending))

    async def _run(self) -> None:
        delay = RECONNECT_FIRST
        while not self._closing:
            try:
                await self._serve()
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as e:
                self._warn("lost", f"WebTorrent tracker {self.url}: {e or type(e).__name__}; "
                           "reconnecting")
            await self._drop_socket()
            while not self._closing and self._ws is None:
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX, delay * 2)
                self.session.restart()
                try:
                    await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
                except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
                    await self._drop_socket()
                    continue
                delay = RECONNECT_FIRST
                self.h.emit(ev.Announced(via=self.kind, url=self.url))

    async def _serve(self) -> None:
        """Read the tracker until it goes; announce again when the interval is up."""
        while self._ws is not None:
            now = time.monotonic()
            await self._close_pending(self.session.expire(now))
            if self.session.due(now):
                await self._announce()
            # Wake for the next announce, and now and then to close expired offers' links.
            wait = max(0.05, min(self.session.next_at, now + EXPIRY_CHECK) - time.monotonic())
            try:
                msg = await asyncio.wait_for(self._ws.receive(), wait)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ValueError("the tracker closed the connection")
            await self._handle(self.session.receive(msg.data, time.monotonic()))

    async def _announce(self, *, first: bool = False) -> None:
        left, up, down, wanting = self.stats()
        # Made at once: each gathers its own ICE candidates (a STUN round trip with --public),
        # and the first announce is on the way to the first peer.
        made = await asyncio.gather(*(self.h.new_offer()
                                      for _ in range(OFFERS if wanting else SEED_OFFERS)))
        offers: list[tuple[bytes, str]] = []
        for link, offer in made:
            oid = os.urandom(20)
            self.pending[oid] = link
            offers.append((oid, offer["sdp"]))
        assert self._ws is not None
        await self._ws.send_str(self.session.announce(
            time.monotonic(), offers, left=left, uploaded=up, downloaded=down))

    async def _handle(self, event: object) -> None:
        if isinstance(event, Offer):
            peer = self.prefix + event.peer_id.hex()
            self.answer_to[peer] = (event.peer_id, event.offer_id)
            await self.h.signal("offer", peer, {"hash": self.content_id,
                                                "offer": {"type": "offer", "sdp": event.sdp}})
        elif isinstance(event, Answer):
            link = self.pending.pop(event.offer_id, None)
            if link is not None:
                await self.h.adopt(self.prefix + event.peer_id.hex(), link,
                                   {"type": "answer", "sdp": event.sdp})
        elif isinstance(event, Failed):
            self._warn("failed", f"WebTorrent tracker {self.url} refused: {event.reason}")
        elif isinstance(event, Announced) and event.warning:
            self._warn("warning", f"WebTorrent tracker {self.url}: {event.warning}")
        elif isinstance(event, Ignored):
            self._ignored = event.why
            log.info("tracker %s: ignored %s", self.url, event.why)

    async def _close_pending(self, offer_ids: list[bytes]) -> None:
        links = [self.pending.pop(oid) for oid in offer_ids if oid in self.pending]
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)

    def _warn(self, key: str, message: str) -> None:
        """Each kind of trouble once per tracker: a tracker's noise is not the user's."""
        if key not in self._warned:
            self._warned.add(key)
            self.h.emit(ev.Warning(message=message))
