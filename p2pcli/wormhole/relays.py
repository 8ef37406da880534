"""Codes over a WebTorrent tracker or a PeerJS server (issue 18; docs/PROTOCOL.md 4.5).

The code exchange (pake.py) needs four messages between two peers; the Socket.IO server
relays them as they are, beside its own fields. A tracker and a PeerJS server relay
nothing but SDPs: a tracker forwards offers made in advance to a few peers of a swarm and
the answer back to its offerer; PeerJS carries OFFER / ANSWER / CANDIDATE between ids,
and both rebuild what they relay from the SDP text alone (our tracker, the real
bittorrent-tracker and PeerServer all drop other fields). So here each code message
travels *inside an SDP*, as one attribute line (the envelope):

    a=x-p2p-wormhole:<kind> <base64url of the JSON `wormhole` object>

on a real SDP (messages 3 and 4: the line is appended, and removed again before the SDP
reaches aiortc) or on a stub SDP with no media (messages 1, 2, the refusals, the notices).
`kind` is the Socket.IO relay the message stands for (`offer`, `answer`,
`ice-candidate`), or `present` (PeerJS only: "a sender is here", see CodePeerJS).
The tags (pake.py) are the same over every rendezvous: a tracker or PeerJS server that
swaps a fingerprint is caught as the Socket.IO server is.

`CodeTracker` and `CodePeerJS` stand where `SignalingClient` stands for transfer.py:
`connect()`, `join()` (the peers already there), `send(kind, peer, payload)` and the same
`SignalHandlers`. `open_sdp` / `seal_sdp` are sans-IO.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time

from ..errors import SignalUnreachable
from ..signaling.client import SignalHandlers

log = logging.getLogger(__name__)

ENVELOPE = "a=x-p2p-wormhole:"
#: Kinds an envelope may carry.
KINDS = ("offer", "answer", "ice-candidate", "present")
#: Largest base64 text of one envelope (a sealed offer is a few hundred bytes).
MAX_ENVELOPE = 16384
#: An SDP with no media, carrying only the envelope: any relay takes it as an SDP.
STUB = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=p2p-code\r\nt=0 0\r\n"
#: The peer a receiver says hello to over a tracker: every peer of the room (it cannot
#: address one; the sender is whoever answers).
BROADCAST = "*"


def seal_sdp(kind: str, wormhole: dict, sdp: str | None) -> str:
    """`sdp` (None: the stub) with the envelope of `wormhole` as its last line."""
    blob = base64.urlsafe_b64encode(json.dumps(wormhole, separators=(",", ":")).encode())
    line = f"{ENVELOPE}{kind} {blob.decode('ascii').rstrip('=')}"
    base = STUB if sdp is None else sdp.rstrip("\r\n") + "\r\n"
    return base + line + "\r\n"


def open_sdp(relayed_as: str, sdp: object) -> tuple[str, dict] | None:
    """The code message in an SDP relayed as `relayed_as` ("offer" or "answer"): (kind,
    data) shaped as the Socket.IO relay's data (`wormhole`, and `offer` / `answer` with
    the SDP, envelope removed, when it has media). None when it carries no well-formed
    envelope (anything else is not a code message: ignored)."""
    if not isinstance(sdp, str):
        return None
    lines = sdp.splitlines()
    found = [ln for ln in lines if ln.startswith(ENVELOPE)]
    if len(found) != 1:
        return None
    kind, _, blob = found[0][len(ENVELOPE):].partition(" ")
    if kind not in KINDS or not blob or len(blob) > MAX_ENVELOPE:
        return None
    try:
        wormhole = json.loads(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))
    except ValueError:
        return None
    if not isinstance(wormhole, dict):
        return None
    rest = [ln for ln in lines if not ln.startswith(ENVELOPE)]
    data: dict = {"wormhole": wormhole}
    if any(ln.startswith("m=") for ln in rest):
        if kind != relayed_as:
            return None  # a real SDP is only ever an offer as an offer, an answer as one
        data[kind] = {"type": kind, "sdp": "\r\n".join(rest) + "\r\n"}
    return kind, data


def tracker_room(complete: int | None, incomplete: int | None, *, sender: bool) -> list[str]:
    """Who is in a code's room, from the tracker's counts in its answer to our first
    announce (which counts us: a sender as a seeder, a receiver as a leecher). A sender:
    one "?" per other peer (any at all: the number is someone else's). A receiver:
    [BROADCAST] when a sender (a seeder) is there, else nobody."""
    complete, incomplete = complete or 0, incomplete or 0
    if sender:
        return ["?"] * max(0, complete + incomplete - 1)
    return [BROADCAST] if complete else []


async def _call(fn, *args) -> None:
    result = fn(*args)
    if asyncio.iscoroutine(result):
        await result


def _sdp_of(kind: str, payload: dict) -> str | None:
    value = payload.get(kind) if kind in ("offer", "answer") else None
    sdp = value.get("sdp") if isinstance(value, dict) else None
    return sdp if isinstance(sdp, str) else None


class CodePeerJS:
    """A code's room on a PeerJS server: the PeerJS ids of the room's 32 bytes
    (rendezvous/peerjs.py), with every code message in an SDP.

    PeerJS names a peer to the higher of two slots only (it makes the offer), but here
    the receiver must offer to the sender, whatever their slots. So a sender that is told
    of a peer sends it one `present` stub offer: the receiver learns the sender's id from
    it (or from the sender's "here", when the sender holds the lower slot)."""

    kind = "peerjs"
    #: Seconds a sender listens for others in the room before it takes the number.
    BUSY_WAIT = 0.5
    #: Seconds a receiver goes on collecting peers after the first one.
    SETTLE = 0.2

    def __init__(self, url: str, room: str, handlers: SignalHandlers, *, sender: bool,
                 find_timeout: float = 10.0) -> None:
        from ..rendezvous.peerjsclient import PeerJSMeeting
        from ..swarm.meet import MeetHandlers

        self.room, self.handlers, self.sender = room, handlers, sender
        self.find_timeout = find_timeout
        self.peers: list[str] = []
        self._found = asyncio.Event()
        self._presented: set[str] = set()

        async def unused(*_args):
            raise RuntimeError("a code's PeerJS room makes no offers in advance")

        async def ignore(*_args) -> None:
            return None

        h = MeetHandlers(peer_list=self._peer_list, peer_left=self._peer_left,
                         signal=self._signal, ice_config=ignore, new_offer=unused,
                         adopt=unused, emit=lambda e: log.info("peerjs: %s", e))
        self.meeting = PeerJSMeeting(url, bytes.fromhex(room), h, prefix="pj:")
        self.url = self.meeting.url
        self.urls = [self.url]

    async def connect(self) -> None:
        await self.meeting.start()

    async def join(self) -> list[str]:
        """The peers in the room: a sender looks briefly (a busy number is taken by
        someone else); a receiver waits for the first one, up to `find_timeout`."""
        if self.sender:
            await asyncio.sleep(self.BUSY_WAIT)
            return list(self.peers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._found.wait(), self.find_timeout)
            await asyncio.sleep(self.SETTLE)  # a racing receiver may be found first
        return list(self.peers)

    def _learn(self, peer: str) -> bool:
        if peer in self.peers:
            return False
        self.peers.append(peer)
        self._found.set()
        return True

    async def _peer_list(self, peers: list[str]) -> None:
        for peer in peers:
            self._learn(peer)
            if self.sender and peer not in self._presented:
                self._presented.add(peer)
                await self.meeting.send("offer", peer, {"offer": {
                    "type": "offer", "sdp": seal_sdp("present", {"v": 1}, None)}})

    async def _peer_left(self, peer: str) -> None:
        if peer in self.peers:
            self.peers.remove(peer)
        await _call(self.handlers.peer_left, peer)

    async def _signal(self, kind: str, peer: str, data: dict) -> None:
        if kind not in ("offer", "answer"):
            return  # candidates: aiortc puts them all in its SDP
        opened = open_sdp(kind, _sdp_of(kind, data))
        if opened is None:
            return
        self._learn(peer)
        what, out = opened
        if what != "present":
            await _call(self.handlers.signal, what, peer, {"hash": self.room, **out})

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        wormhole = payload.get("wormhole")
        if not isinstance(wormhole, dict):
            return  # only code messages leave through a code's room
        text = seal_sdp(kind, wormhole, _sdp_of(kind, payload))
        relay = "answer" if kind == "answer" else "offer"
        await self.meeting.send(relay, peer, {relay: {"type": relay, "sdp": text}})

    async def close(self) -> None:
        await self.meeting.close()


class CodeTracker:
    """A code's room on a WebTorrent tracker: the info hash of the room's 32 bytes
    (wstracker.info_hash_for), with every code message in an SDP.

    A tracker forwards an offer to one peer of the swarm it picks, and an answer to the
    offerer. So the receiver's offers (its hello, its connection offer, its notices) go
    as COPIES offers at once, reaching up to COPIES peers of the room: the sender, and any
    other receiver, which ignores them. The sender answers by the offer it got. Whether
    anyone is in the room is read from the tracker's counts: the sender announces as a
    seeder (left 0), receivers as leechers."""

    kind = "tracker"
    COPIES = 10  # the protocol's most offers per announce
    CONNECT_TIMEOUT = 5.0

    def __init__(self, url: str, room: str, handlers: SignalHandlers, *, sender: bool) -> None:
        from ..rendezvous.trackerclient import tracker_peer_id
        from ..rendezvous.wstracker import TrackerSession, info_hash_for

        self.url, self.urls = url, [url]
        self.room, self.handlers, self.sender = room, handlers, sender
        self.session = TrackerSession(info_hash_for(bytes.fromhex(room)), tracker_peer_id())
        self.left = 0 if sender else 1
        self.answer_to: dict[str, tuple[bytes, bytes]] = {}
        "Peer -> (its tracker peer id, the id of its last offer), to answer it."
        self._http = None
        self._ws = None
        self._task: asyncio.Task | None = None
        self._first: asyncio.Future | None = None

    async def connect(self) -> None:
        import aiohttp

        self._first = asyncio.get_running_loop().create_future()
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.CONNECT_TIMEOUT):
                self._ws = await self._http.ws_connect(self.url, heartbeat=30.0)
                await self._announce([])
                self._task = asyncio.ensure_future(self._run())
                await asyncio.shield(self._first)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            await self.close()
            why = "no answer in time" if isinstance(e, TimeoutError) else (
                getattr(getattr(e, "os_error", None), "strerror", None) or str(e)
                or type(e).__name__)
            raise SignalUnreachable(
                f"WebTorrent tracker {self.url} could not be reached ({why})") from None

    async def join(self) -> list[str]:
        """The sender: someone else's share is in the room (any other peer); a receiver:
        [BROADCAST] when a sender (a seeder) is there."""
        assert self._first is not None
        counts = self._first.result()
        return tracker_room(counts.complete, counts.incomplete, sender=self.sender)

    async def _announce(self, offers: list[tuple[bytes, str]]) -> None:
        # A code message goes now, not at the tracker's interval.
        self.session.next_at = 0.0
        assert self._ws is not None
        await self._ws.send_str(self.session.announce(time.monotonic(), offers,
                                                      left=self.left))

    async def _run(self) -> None:
        import aiohttp

        from ..rendezvous.wstracker import Announced, Answer, Failed, Offer

        assert self._ws is not None and self._first is not None
        try:
            while True:
                wait = max(0.05, self.session.next_at - time.monotonic())
                try:
                    msg = await self._ws.receive(timeout=wait)
                except TimeoutError:
                    await self._announce([])  # stay in the room
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError("the tracker closed the connection")
                event = self.session.receive(msg.data, time.monotonic())
                if isinstance(event, Announced) and not self._first.done():
                    self._first.set_result(event)
                elif isinstance(event, Failed) and not self._first.done():
                    self._first.set_exception(ValueError(f"it refused: {event.reason}"))
                elif isinstance(event, Offer):
                    peer = "wt:" + event.peer_id.hex()
                    self.answer_to[peer] = (event.peer_id, event.offer_id)
                    await self._deliver("offer", peer, event.sdp)
                elif isinstance(event, Answer):
                    await self._deliver("answer", "wt:" + event.peer_id.hex(), event.sdp)
        except (aiohttp.ClientError, ConnectionError, OSError) as e:
            log.info("tracker %s: %s", self.url, e)
            if not self._first.done():
                self._first.set_exception(ValueError(str(e)))

    async def _deliver(self, relayed_as: str, peer: str, sdp: str) -> None:
        opened = open_sdp(relayed_as, sdp)
        if opened is not None and opened[0] != "present":
            kind, data = opened
            try:
                await _call(self.handlers.signal, kind, peer, {"hash": self.room, **data})
            except Exception:  # the exchange's bug: log it, keep reading the tracker
                log.exception("tracker %s: handling a %s failed", self.url, kind)

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        import aiohttp

        wormhole = payload.get("wormhole")
        if not isinstance(wormhole, dict) or self._ws is None:
            return
        text = seal_sdp(kind, wormhole, _sdp_of(kind, payload))
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            if kind == "answer":
                ids = self.answer_to.pop(peer, None)
                if ids is not None:
                    await self._ws.send_str(self.session.answer(ids[0], ids[1], text))
            else:  # the peer cannot be addressed: every peer of the room gets a copy
                await self._announce([(os.urandom(20), text) for _ in range(self.COPIES)])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                msg = self.session.announce(time.monotonic(), [], left=self.left,
                                            event="stopped")
                await asyncio.wait_for(self._ws.send_str(msg), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 1.0)
        if self._http is not None:
            await self._http.close()
        self._ws = self._http = None
