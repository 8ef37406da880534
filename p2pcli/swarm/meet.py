"""The ways a swarm meets peers, behind one interface (issue 15: "each a small adapter
behind one interface; the swarm does not care which found a peer").

A `Meeting` is one rendezvous: our Socket.IO signaling server (`SignalMeeting`), a
WebTorrent tracker (rendezvous/trackerclient.py), a PeerJS server, or a connected peer
that relays for others (peer exchange). Each reports the peers it finds under ids that
start with its own `prefix` ("" for the signaling server, whose Socket.IO ids have none),
so the swarm sends an answer back through the meeting that brought the offer, and the
core sees only peer ids.

What a meeting tells the swarm (`MeetHandlers`) is what the Socket.IO server's events
say: a list of peers to offer to, a peer that left, and an offer / answer / candidate
relayed from a peer, with `data` shaped as the design note's events
(`{"hash", "offer" | "answer" | "busy" | "candidate"}`). A tracker cannot address an
offer to a peer: it carries offers made in advance. For it the swarm makes a link and
its offer on request (`new_offer`), and takes the link over when somebody answers it
(`adopt`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .. import events as ev
from ..errors import P2PError, UsageError
from ..events import EventSink
from ..rtc import PeerLink
from ..signaling.client import SignalHandlers, SignalingClient
from .config import SwarmConfig

Stats = Callable[[], tuple[int | None, int, int, bool]]
"(bytes left or None, uploaded, downloaded, wanting peers): what a tracker announce says."

log = logging.getLogger(__name__)


@dataclass
class MeetHandlers:
    """The swarm's side of every meeting (coroutine functions unless noted)."""

    peer_list: Callable[[list[str]], Awaitable[None]]
    "Peers (prefixed ids) to offer a connection to."
    peer_left: Callable[[str], Awaitable[None]]
    "A peer left the rendezvous (links already open stay)."
    signal: Callable[[str, str, dict], Awaitable[None]]
    "(kind, peer, data): an offer, answer or ice-candidate relayed to us."
    ice_config: Callable[[dict], Awaitable[None]]
    "STUN/TURN servers the rendezvous hands out."
    new_offer: Callable[[], Awaitable[tuple[PeerLink, dict]]]
    'A fresh link and its offer ({"type": "offer", "sdp"}), for offers made in advance.'
    adopt: Callable[[str, PeerLink, dict], Awaitable[None]]
    "(peer, link, answer): `peer` answered an offer made in advance on `link`."
    emit: EventSink
    "Events (warnings) for the user; a plain function."


class Meeting(Protocol):
    """One rendezvous."""

    kind: str
    "signal, tracker, peerjs or pex: for events and `seed`'s list."
    url: str
    prefix: str
    "Every peer id this meeting reports starts with it; ids of no other meeting do."
    addressed_offers: bool
    "It can carry an offer to a peer by id (a tracker cannot: it forwards offers made in advance)."

    async def start(self) -> None:
        """Connect and announce the share. Raise `P2PError` when the rendezvous cannot
        be reached at all; the swarm decides whether that is fatal."""

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        """Relay an offer / answer / ice-candidate (`payload` as in `MeetHandlers.signal`)
        to `peer`, one of this meeting's ids. Never raises for a peer that went away."""

    async def close(self) -> None:
        """Say goodbye (a tracker's `stopped`) and disconnect; bounded in time."""


class SignalMeeting:
    """Our own Socket.IO signaling server (one server, or a cluster's URLs in turn)."""

    kind = "signal"
    prefix = ""
    addressed_offers = True

    def __init__(self, urls: list[str], content_id: str, peer_id: str, h: MeetHandlers, *,
                 token: str | None, retries: int, timeout: float) -> None:
        self.content_id, self.peer_id = content_id, peer_id
        self.emit = h.emit

        async def peer_list(peers: list[str]) -> None:
            await h.peer_list([p for p in peers if p != self.client.sid])

        self.client = SignalingClient(
            urls, SignalHandlers(peer_list=peer_list, new_peer=lambda p: None,
                                 peer_left=h.peer_left, signal=h.signal,
                                 ice_config=h.ice_config),
            token=token, retries=retries, timeout=timeout,
        )
        self.url = self.client.urls[0]

    @property
    def sid(self) -> str | None:
        return self.client.sid

    async def start(self) -> None:
        await self.client.connect()
        self.url = self.client.url or self.url
        self.emit(ev.SignalingConnected(url=self.url, peer=self.client.sid))
        await self.client.announce(self.content_id, self.peer_id)

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        await self.client.send(kind, peer, payload)

    async def close(self) -> None:
        await self.client.close()


def build_meetings(config: SwarmConfig, content_hash: bytes, peer_id: bytes, h: MeetHandlers,
                   *, stats: Stats) -> list[Meeting]:
    """One meeting per rendezvous the user configured: the signaling server(s) (one
    connection, its URLs in turn), then each tracker and PeerJS server (imported only
    when used)."""
    meetings: list[Meeting] = []
    if config.signal_urls:
        meetings.append(SignalMeeting(config.signal_urls, content_hash.hex(), peer_id.hex(), h,
                                      token=config.token, retries=config.retries,
                                      timeout=config.timeout))
    if config.trackers:
        from ..rendezvous.trackerclient import TrackerMeeting

        meetings += [TrackerMeeting(url, content_hash, h, prefix=f"wt{i}:", stats=stats)
                     for i, url in enumerate(config.trackers)]
    if config.peerjs:
        from ..rendezvous.peerjsclient import PeerJSMeeting

        meetings += [PeerJSMeeting(url, content_hash, h, prefix=f"pj{i}:")
                     for i, url in enumerate(config.peerjs)]
    if not meetings:
        raise UsageError("no rendezvous to meet peers: give --signal, --tracker, --peerjs "
                         "or a link")
    return meetings


def meeting_for(meetings: list[Meeting], peer: str) -> Meeting | None:
    """The meeting that reported `peer`: the longest prefix that matches."""
    best: Meeting | None = None
    for m in meetings:
        if peer.startswith(m.prefix) and (best is None or len(m.prefix) > len(best.prefix)):
            best = m
    return best


async def start_all(meetings: list[Meeting], emit: EventSink) -> list[Meeting]:
    """Start every meeting at once and return as soon as one is up, leaving the others to
    finish in the background (a slow tracker costs nothing while another works). Those that
    fail are reported as warnings and left out; if every one fails, the first failure is
    raised. The returned list is the live one: a meeting that comes up later joins it."""
    live: list[Meeting] = []
    failures: list[P2PError] = []
    tasks = {asyncio.ensure_future(m.start()): m for m in meetings}

    def settled(task: asyncio.Task) -> None:
        m = tasks[task]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            live.append(m)
            if m.kind != "signal":  # which says `signaling-connected` itself
                emit(ev.Announced(via=m.kind, url=m.url))
        elif isinstance(exc, P2PError):
            failures.append(exc)
            if len(failures) < len(meetings):  # another may still work: not fatal
                said = exc.message if m.url in exc.message else f"{m.kind} {m.url}: {exc.message}"
                emit(ev.Warning(message=said))
        else:
            log.error("%s %s failed to start", m.kind, m.url, exc_info=exc)
            failures.append(P2PError(f"{m.kind} {m.url}: {exc!r}", exit_code=1))

    for t in tasks:
        t.add_done_callback(settled)
    pending = set(tasks)
    while pending and not live:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0)  # let the done callbacks run
    if not live:
        raise failures[0]
    return live
