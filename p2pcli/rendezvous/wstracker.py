"""The WebTorrent WebSocket tracker protocol, sans I/O: what to send a tracker and when,
and what its messages mean (issue 15, rendezvous kind 1; docs/PROTOCOL.md "WebTorrent
trackers").

The protocol is the one of the `bittorrent-tracker` npm package and of the public `wss://`
trackers WebTorrent announces to. Every message is one JSON text frame. Ids (`info_hash`,
`peer_id`, `offer_id`) are 20-byte "binary strings": JSON strings whose 20 characters
are the bytes (U+0000..U+00FF), which is latin-1 in Python.

- We announce `{action: "announce", info_hash, peer_id, numwant, uploaded, downloaded,
  left, event?, offers: [{offer_id, offer: {type: "offer", sdp}}]}`. The tracker answers
  `{action: "announce", interval, info_hash, complete, incomplete}` and forwards each
  offer to another peer of the swarm, who sees `{action: "announce", info_hash, peer_id,
  offer_id, offer}`.
- That peer answers through the tracker: `{action: "announce", info_hash, peer_id,
  to_peer_id, offer_id, answer: {type: "answer", sdp}}`, which reaches the offerer as
  `{action: "announce", info_hash, peer_id, offer_id, answer}`.
- `{"failure reason": ...}` refuses a message; `{"warning message": ...}` may come with a
  response. `event: "stopped"` says goodbye.

Rules kept here so that no caller can break them: at most MAX_OFFERS offers per announce
(bittorrent-tracker forwards at most 50; WebTorrent itself sends 10), no announce before
the tracker's interval is up except for an event (`started`, `completed`, `stopped`),
and no trust in what arrives: a message for another info hash, from ourselves, with ids
of the wrong length, an SDP of the wrong type or an answer to an offer we did not make (or
that expired) is ignored with a reason, never acted on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ID_LEN = 20
MAX_OFFERS = 10
MAX_SDP = 64 * 1024  # characters; an aiortc or browser offer is 1-4 KiB
MAX_MESSAGE = 256 * 1024  # characters of one tracker message
DEFAULT_INTERVAL = 120.0  # bittorrent-tracker's WebSocket interval (10 min / 5)
MIN_INTERVAL = 15.0  # never announce faster, whatever a tracker says
MAX_INTERVAL = 3600.0
OFFER_LIFETIME = 50.0  # seconds an unanswered offer's answer is still accepted (WebTorrent: 50)
EVENTS = ("started", "completed", "stopped")


def info_hash_for(content_hash: bytes) -> bytes:
    """The info hash a p2p share announces under: the first 20 bytes of its content hash
    (SHA-256 of the manifest). It names the share on the tracker only; which peers speak
    p2p is decided by the handshake on the data channel."""
    if len(content_hash) < ID_LEN:
        raise ValueError("a content hash has 32 bytes")
    return content_hash[:ID_LEN]


def binary(value: bytes) -> str:
    """An id as the JSON string the protocol carries (each character one byte)."""
    return value.decode("latin-1")


def parse_id(value: object) -> bytes | None:
    """A 20-byte id from a binary string; None if it is not one."""
    if not isinstance(value, str) or len(value) != ID_LEN:
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return None


def parse_sdp(value: object, kind: str) -> str | None:
    """The SDP of a session description of type `kind`; None if it is not one."""
    if not isinstance(value, dict) or value.get("type") != kind:
        return None
    sdp = value.get("sdp")
    return sdp if isinstance(sdp, str) and 0 < len(sdp) <= MAX_SDP else None


# -- what a tracker message means ---------------------------------------------------------------


@dataclass(frozen=True)
class Announced:
    """The tracker took our announce."""

    interval: float
    "Seconds until the next announce (clamped to MIN_INTERVAL..MAX_INTERVAL)."
    complete: int | None
    "Seeders it knows, if it says."
    incomplete: int | None
    warning: str | None = None


@dataclass(frozen=True)
class Offer:
    """Another peer's offer, forwarded: answer it with `TrackerSession.answer`."""

    peer_id: bytes
    offer_id: bytes
    sdp: str


@dataclass(frozen=True)
class Answer:
    """The answer to one of our offers."""

    peer_id: bytes
    offer_id: bytes
    sdp: str


@dataclass(frozen=True)
class Failed:
    """The tracker refused a message (`failure reason`)."""

    reason: str


@dataclass(frozen=True)
class Ignored:
    """A message not acted on, and why (malformed, not ours, unknown offer)."""

    why: str


TrackerEvent = Announced | Offer | Answer | Failed | Ignored


# -- one tracker, one share -------------------------------------------------------------------


@dataclass
class TrackerSession:
    """What to send one tracker for one share, and what its messages mean. Time is passed
    in; nothing here does I/O."""

    info_hash: bytes
    peer_id: bytes
    interval: float = DEFAULT_INTERVAL
    next_at: float = 0.0
    "When the next regular announce is due (0: at once, the first one)."
    started: bool = False
    _announced_at: float = 0.0
    _offers: dict[bytes, float] = field(default_factory=dict)
    "Offer ids we sent -> when their answers stop being accepted."

    def __post_init__(self) -> None:
        if len(self.info_hash) != ID_LEN or len(self.peer_id) != ID_LEN:
            raise ValueError("info_hash and peer_id have 20 bytes")

    def restart(self) -> None:
        """A new connection to the tracker: it forgot us with the old one, so the next
        announce goes at once and says `started` again (offers in flight stay valid)."""
        self.started = False
        self.next_at = 0.0

    def due(self, now: float) -> bool:
        """Whether a regular announce (with fresh offers) may go now."""
        return now >= self.next_at

    def announce(self, now: float, offers: list[tuple[bytes, str]], *, left: int | None,
                 uploaded: int = 0, downloaded: int = 0, event: str | None = None) -> str:
        """The announce to send now, with `offers` ((offer id, SDP), at most MAX_OFFERS).
        Without an event it must be `due`; the first one says `started`."""
        if event is None and not self.started:
            event = "started"
        if event is not None and event not in EVENTS:
            raise ValueError(f"unknown announce event {event!r}")
        if event is None and not self.due(now):
            raise ValueError("announce before the tracker's interval is up")
        if len(offers) > MAX_OFFERS:
            raise ValueError(f"at most {MAX_OFFERS} offers per announce")
        if event == "stopped":
            offers = []
        msg: dict[str, object] = {
            "action": "announce",
            "info_hash": binary(self.info_hash),
            "peer_id": binary(self.peer_id),
            "numwant": len(offers),
            "uploaded": uploaded,
            "downloaded": downloaded,
        }
        if left is not None:  # unknown (no manifest yet): omitted, the tracker reads Infinity
            msg["left"] = left
        if event is not None:
            msg["event"] = event
        if offers:
            msg["offers"] = [{"offer_id": binary(oid), "offer": {"type": "offer", "sdp": sdp}}
                             for oid, sdp in offers]
        for oid, _ in offers:
            if len(oid) != ID_LEN:
                raise ValueError("an offer id has 20 bytes")
            self._offers[oid] = now + OFFER_LIFETIME
        self.started = True
        self._announced_at = now
        self.next_at = now + self.interval
        return json.dumps(msg)

    def answer(self, to_peer_id: bytes, offer_id: bytes, sdp: str) -> str:
        """Our answer to `Offer`, relayed by the tracker to the peer that made it."""
        return json.dumps({
            "action": "announce",
            "info_hash": binary(self.info_hash),
            "peer_id": binary(self.peer_id),
            "to_peer_id": binary(to_peer_id),
            "offer_id": binary(offer_id),
            "answer": {"type": "answer", "sdp": sdp},
        })

    def expire(self, now: float) -> list[bytes]:
        """Forget offers nobody answered in time; returns their ids (close their links)."""
        gone = [oid for oid, until in self._offers.items() if now >= until]
        for oid in gone:
            del self._offers[oid]
        return gone

    def receive(self, text: str, now: float) -> TrackerEvent:
        """What one message from the tracker means."""
        if len(text) > MAX_MESSAGE:
            return Ignored(f"a message of {len(text)} characters")
        try:
            msg = json.loads(text)
        except ValueError:
            return Ignored("not JSON")
        if not isinstance(msg, dict):
            return Ignored("not a JSON object")
        if "failure reason" in msg:
            return Failed(str(msg["failure reason"])[:200])
        if msg.get("action") != "announce":
            return Ignored(f"action {str(msg.get('action'))[:40]!r}")
        if parse_id(msg.get("info_hash")) != self.info_hash:
            return Ignored("another info hash")
        if "offer" in msg or "answer" in msg:
            return self._relayed(msg, now)
        return self._response(msg)

    def _relayed(self, msg: dict, now: float) -> TrackerEvent:
        peer_id, offer_id = parse_id(msg.get("peer_id")), parse_id(msg.get("offer_id"))
        if peer_id is None or offer_id is None:
            return Ignored("a peer_id or offer_id that is not 20 bytes")
        if peer_id == self.peer_id:
            return Ignored("our own message")
        if "offer" in msg:
            sdp = parse_sdp(msg["offer"], "offer")
            return Offer(peer_id, offer_id, sdp) if sdp else Ignored("an offer without SDP")
        sdp = parse_sdp(msg["answer"], "answer")
        if sdp is None:
            return Ignored("an answer without SDP")
        until = self._offers.pop(offer_id, None)
        if until is None or now >= until:
            return Ignored("an answer to an offer we did not make, or that expired")
        return Answer(peer_id, offer_id, sdp)

    def _response(self, msg: dict) -> TrackerEvent:
        raw = msg.get("interval")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == raw:
            # The tracker's interval, within bounds, counts from the announce it answers.
            self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, float(raw)))
            self.next_at = self._announced_at + self.interval
        counts = [msg.get(k) for k in ("complete", "incomplete")]
        complete, incomplete = (c if isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                else None for c in counts)
        warning = msg.get("warning message")
        return Announced(self.interval, complete, incomplete,
                         str(warning)[:200] if warning is not None else None)
