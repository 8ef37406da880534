"""Thin asyncio adapter around aiortc: one peer connection carrying one data channel.

It knows nothing of pieces or manifests: it moves whole binary messages, applies
back-pressure through `bufferedAmount` / `bufferedamountlow`, and reports when the link
is gone. SDP and ICE candidates travel as plain dicts (the browser's JSON shapes).
It patches nothing: the tuned aiortc it is meant to run on is set up by whoever starts
the process, with p2pcli/patches.py's `apply()` (the CLI does, at each command's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from aioice.ice import CandidatePair
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.sdp import candidate_from_sdp

from .wire import CHANNEL_LABEL, CHANNEL_PROTOCOL

log = logging.getLogger(__name__)

# Keep at most this much queued in the SCTP send buffer per peer: enough to fill a fast
# link between two bufferedamountlow events, small enough to bound memory per peer.
HIGH_WATER = 2 * 1024 * 1024
LOW_WATER = 512 * 1024


LINGER = 2.0
"""Seconds a link closed right after a CLOSE waits, at most, for what it queued (the CLOSE
last) to be acknowledged: aiortc's close aborts the association and drops whatever it still
holds, so the peer saw its channel close with no reason (CI: a tab took that for a network
failure)."""


class LinkClosed(Exception):
    """The data channel or the peer connection went away."""


class PeerLink:
    """A data channel with awaitable back-pressure; messages go to `on_message`."""

    def __init__(self, pc: RTCPeerConnection, ice_servers: list | None = None) -> None:
        self.pc = pc
        self.channel: RTCDataChannel | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._low = asyncio.Event()
        self._on_message: Callable[[bytes | str], None] | None = None
        self._early: list[bytes | str] = []  # arrived before anyone listened
        self.bytes_sent = 0
        self.bytes_received = 0

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._set_closed()

    @property
    def on_message(self) -> Callable[[bytes | str], None] | None:
        return self._on_message

    @on_message.setter
    def on_message(self, handler: Callable[[bytes | str], None]) -> None:
        # Messages can arrive between 'open' and the moment the caller attaches a handler.
        self._on_message = handler
        early, self._early = self._early, []
        for m in early:
            handler(m)

    # -- setup -----------------------------------------------------------------------------

    @classmethod
    def create(cls, ice_servers: list | None = None) -> PeerLink:
        # Always an explicit list: given none, aiortc would fall back to a public STUN
        # server; an empty list means host candidates only.
        return cls(RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers or []))))

    @contextlib.contextmanager
    def _setup_step(self) -> Iterator[None]:
        """The peer may leave while we negotiate; aiortc then raises InvalidStateError from
        whatever step was running. That is the link closing, not a bug."""
        try:
            yield
        except InvalidStateError as e:
            if self.closed.is_set() or self.pc.signalingState == "closed":
                raise LinkClosed("peer connection closed during setup") from e
            raise

    async def make_offer(self, protocol: str = CHANNEL_PROTOCOL) -> dict:
        """Offerer side: open the channel and return the offer (all candidates included).
        `protocol` is the channel's protocol string: "p2p/1" and the extensions we speak."""
        with self._setup_step():
            self._attach(
                self.pc.createDataChannel(CHANNEL_LABEL, ordered=True, protocol=protocol)
            )
            await self.pc.setLocalDescription(await self.pc.createOffer())
        d = self.pc.localDescription
        return {"type": d.type, "sdp": d.sdp}

    async def accept_answer(self, answer: dict) -> None:
        """Take the remote's answer to our offer. An answer when no offer of ours is
        waiting for one is stale, and ignored: a duplicate, or the answer to an earlier
        offer of a link this one replaced (a redial), arriving while our new offer is
        still being made. That is the remote's timing, not a bug (aiortc would raise
        InvalidStateError, which crashed a 16-fetcher swarm)."""
        if self.pc.signalingState != "have-local-offer":
            if self.closed.is_set() or self.pc.signalingState == "closed":
                raise LinkClosed("peer connection closed during setup")
            log.info("ignored an answer in signaling state %s", self.pc.signalingState)
            return
        with self._setup_step():
            await self.pc.setRemoteDescription(_description(answer, "answer"))

    async def answer_offer(self, offer: dict, *, any_label: bool = False) -> dict:
        """Answerer side: take the offer, wait for the remote's channel, return the answer.
        `any_label`: take the first channel whatever its label (WebTorrent's simple-peer
        names its channel with random hex)."""

        @self.pc.on("datachannel")
        def _on_channel(channel: RTCDataChannel) -> None:
            if self.channel is None and (any_label or channel.label == CHANNEL_LABEL):
                self._attach(channel)
                # The channel is already open when announced on the answering side.
                self.opened.set()

        with self._setup_step():
            await self.pc.setRemoteDescription(_description(offer, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        d = self.pc.localDescription
        return {"type": d.type, "sdp": d.sdp}

    async def add_candidate(self, cand: dict | None) -> None:
        """A trickled candidate from a browser (`None` or empty: end of candidates)."""
        if not cand or not cand.get("candidate"):
            return
        text = cand["candidate"]
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        candidate = candidate_from_sdp(text)
        candidate.sdpMid = cand.get("sdpMid")
        candidate.sdpMLineIndex = cand.get("sdpMLineIndex")
        with self._setup_step():
            await self.pc.addIceCandidate(candidate)

    def _attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.bufferedAmountLowThreshold = LOW_WATER

        @channel.on("open")
        def _open() -> None:
            self.opened.set()

        @channel.on("close")
        def _close() -> None:
            self._set_closed()

        @channel.on("bufferedamountlow")
        def _low() -> None:
            self._low.set()

        @channel.on("message")
        def _message(message: bytes | str) -> None:
            self.bytes_received += len(message)
            if self._on_message is None:
                self._early.append(message)
            else:
                self._on_message(message)

        if channel.readyState == "open":
            self.opened.set()

    def _set_closed(self) -> None:
        self.closed.set()
        self.opened.set()  # wake anyone waiting for open; they check `closed`
        self._low.set()

    # -- data ------------------------------------------------------------------------------

    @property
    def channel_protocol(self) -> str | None:
        """The channel's protocol string, as its offerer set it (None: no channel)."""
        return self.channel.protocol if self.channel else None

    @property
    def buffered(self) -> int:
        return self.channel.bufferedAmount if self.channel else 0

    def send_nowait(self, data: bytes) -> None:
        """Queue a small control message; callers of bulk data use `send`."""
        if self.closed.is_set() or self.channel is None or self.channel.readyState != "open":
            raise LinkClosed("data channel is closed")
        self.channel.send(data)
        self.bytes_sent += len(data)

    async def send(self, data: bytes) -> None:
        """Queue a message, first waiting while the send buffer is above the high-water mark."""
        while self.buffered > HIGH_WATER:
            self._low.clear()
            if self.buffered <= LOW_WATER or self.closed.is_set():
                break
            await self._low.wait()
        self.send_nowait(data)

    async def wait_open(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.opened.wait(), timeout)
        return self.opened.is_set() and not self.closed.is_set()

    async def close(self, *, linger: float = 0.0) -> None:
        """Close the connection; nothing can be sent from now on. `linger`: first wait up to
        that many seconds for what is already queued to be acknowledged by the peer."""
        self._set_closed()
        if linger > 0:
            deadline = asyncio.get_running_loop().time() + linger
            while not self._delivered() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        if self.pc.signalingState == "closed":
            # aiortc is already closing (it does so by itself once the remote's DTLS is
            # closed). A second close() would wait on that close's future, and cancelling
            # the waiter (a stopping command cancels every task) cancels the future too:
            # aiortc's own close then dies with InvalidStateError, printed at exit.
            return
        with contextlib.suppress(Exception):
            await self.pc.close()

    def _delivered(self) -> bool:
        """Nothing we sent is still queued or unacknowledged (or the channel is gone)."""
        sctp = self.pc.sctp
        if self.channel is None or self.channel.readyState != "open" or sctp is None:
            return True
        # aiortc 1.16's queues (p2pcli/aiortc_tuning.py pins that version): messages not yet
        # cut into chunks, chunks not yet sent, chunks sent and not yet acknowledged.
        return not (self.channel.bufferedAmount or sctp._data_channel_queue
                    or sctp._outbound_queue or sctp._sent_queue)

    def candidate_pair_kind(self) -> str | None:
        """How the nominated ICE pair reaches the peer, None until there is one:
        'relay' if either side is a TURN relay candidate (one relay is enough for every
        datagram to cross the TURN server), else 'srflx' if either side is a NAT's
        public address (server- or peer-reflexive), else 'host' (a direct path).

        Data only flows over a nominated pair, so once the channel is open it is known.
        """
        pair = self._nominated_pair()
        if pair is None:
            return None
        kinds = {pair.local_candidate.type, pair.remote_candidate.type}
        if "relay" in kinds:
            return "relay"
        if kinds & {"srflx", "prflx"}:
            return "srflx"
        return "host"

    def candidate_pair(self) -> str | None:
        """The nominated pair as people read it, local -> remote: 'srflx 203.0.113.5:40000
        -> host 192.0.2.7:51000' (each side's type, address and port); None until there
        is one."""
        pair = self._nominated_pair()
        if pair is None:
            return None
        ends = (pair.local_candidate, pair.remote_candidate)
        return " -> ".join(f"{c.type} {c.host}:{c.port}" for c in ends)

    def key(self) -> str:
        """This connection's name, the same at both ends: the two DTLS certificate
        fingerprints of its SDPs (each end's certificate is new per connection), sorted.
        '' before both descriptions are set."""
        fps = []
        for desc in (self.pc.localDescription, self.pc.remoteDescription):
            if desc is None:
                return ""
            fp = next((line.split(":", 1)[1].strip() for line in desc.sdp.splitlines()
                       if line.startswith("a=fingerprint:")), None)
            if fp is None:
                return ""
            fps.append(fp)
        return "|".join(sorted(fps))

    def remote_candidate(self) -> tuple[str, str, int] | None:
        """(type, host, port) of the remote end of the nominated ICE pair, None until
        there is one: the address this peer's datagrams really come from."""
        pair = self._nominated_pair()
        if pair is None:
            return None
        c = pair.remote_candidate
        return c.type, c.host, c.port

    def _nominated_pair(self) -> CandidatePair | None:
        """aioice's nominated candidate pair for the data channel's component, or None."""
        try:
            transport = self.pc.sctp.transport.transport  # type: ignore[union-attr]
            return transport._connection._nominated.get(1)  # aioice internals
        except AttributeError:
            return None


def _description(d: dict, expected: str) -> RTCSessionDescription:
    if not isinstance(d, dict) or d.get("type") != expected or not isinstance(d.get("sdp"), str):
        raise ValueError(f"malformed {expected} description")
    return RTCSessionDescription(sdp=d["sdp"], type=d["type"])

