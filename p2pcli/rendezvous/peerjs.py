"""Meeting peers through a PeerJS server, sans I/O (issue 15, rendezvous kind 2;
docs/PROTOCOL.md "PeerJS servers").

The protocol is the one the `peer` npm package (PeerServer) and the `peerjs` client speak:
a WebSocket to `<base path>peerjs?key=K&id=ID&token=T`; the server answers `{type: "OPEN"}`
(the id is ours), `{type: "ID-TAKEN"}` (somebody else holds it; the socket closes) or
`{type: "ERROR", payload: {msg}}`; then it relays `{type, dst, payload}` (OFFER, ANSWER,
CANDIDATE, LEAVE) to the client holding `dst`, stamped with our id as `src`. A message for an
id nobody holds waits ~5 s on the server (and goes to whoever claims the id meanwhile), then
comes back to us as `{type: "EXPIRE", src: <that id>}`. The client sends `{type:
"HEARTBEAT"}` every 5 s, or the server forgets it after 90 s.

PeerJS has ids, not rooms. Peers of one share meet on ids derived from its content hash:
`p2p-<32 hex digits of SHA-256("p2p-peerjs:" + content hash)>-<slot>`, slot 0..SLOTS-1
(the server sees neither the content hash nor the file). A peer claims a random free slot
(ID-TAKEN: another one), then says hello to every other slot; a hello to an empty slot costs
the server one queued message. Of two peers, the one in the higher slot makes the offer:
the lower one answers a hello with "here", the higher one takes a hello or a "here" as a peer
to offer to. Only one side offers, so two offers never cross.

Every message of ours carries `payload.p2p = {from, to}`: random instance names of the
sending and receiving process, so a message meant for the previous holder of a slot is not
taken by the next one. The swarm sees a peer as `<prefix><slot>.<instance>`.

Nothing arriving is trusted: the message size, its JSON, the `src` (one of our share's slots),
the instance names, the connection id (an answer or candidate must belong to the negotiation
under way), the SDP's type and size; offers in both directions are budgeted per minute and
a peer is named to the swarm at most once per REPORT_INTERVAL.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ..wire import CHANNEL_LABEL

SLOTS = 16
"Ids per share on one server: the most peers of a share that meet there."
DEFAULT_KEY = "peerjs"  # PeerServer's default `key`, and the public server's
HEARTBEAT_INTERVAL = 5.0  # the peerjs client's pingInterval; the server waits 90 s
MAX_MESSAGE = 128 * 1024  # characters of one server message
MAX_SDP = 64 * 1024  # an aiortc or browser offer is 1-4 KiB
MAX_CANDIDATE = 2048  # characters of one ICE candidate line
MAX_REASON = 200
REPORT_INTERVAL = 10.0
"Seconds before the same peer is named to the swarm again (a repeated hello or here)."
REPORTS_PER_MINUTE = 60
OFFERS_PER_MINUTE = 30
"Offers we send, and separately offers we take; a swarm of SLOTS peers needs SLOTS - 1."

_INSTANCE = re.compile(r"[A-Za-z0-9]{8,32}")
_CONNECTION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ALNUM = string.ascii_letters + string.digits


def base_id(content_hash: bytes) -> str:
    """The PeerJS id stem of a share; slot `n`'s id is `f"{base}-{n}"`. A hash, so that the
    server learns no more than "some share" (the p2p handshake checks the content)."""
    if len(content_hash) != 32:
        raise ValueError("a content hash has 32 bytes")
    return "p2p-" + hashlib.sha256(b"p2p-peerjs:" + content_hash).hexdigest()[:32]


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


# -- the server's URL ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A PeerJS server as the peerjs client's options name it (host, port, path, key,
    secure)."""

    secure: bool
    host: str
    port: int
    path: str
    "The server's `path` option, ending in '/'; its WebSocket is at `<path>peerjs`."
    key: str

    def ws_url(self, peer_id: str, token: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = urlencode({"key": self.key, "id": peer_id, "token": token})
        return (f"{'wss' if self.secure else 'ws'}://{host}:{self.port}"
                f"{quote(self.path)}peerjs?{query}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{quote(self.path)}"
                f"?{urlencode({'key': self.key})}")


def parse_server(text: str) -> Server:
    """A PeerJS server from what a user writes: `peerjs://host[:port][/path][?key=K]`
    (TLS, like every public PeerJS server), or the same with `wss://` / `https://` (TLS) or
    `ws://` / `http://` (plain). Port 443 or 80 by default, path `/`, key `peerjs`. The
    path is the server's own (`PeerServer({path})`), not its WebSocket's `.../peerjs`.
    Raises ValueError with a sentence."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a PeerJS server URL: {text!r} ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("peerjs", "wss", "https", "ws", "http"):
        raise ValueError(f"a PeerJS server URL starts with peerjs://, ws(s):// or http(s)://,"
                         f" not {text!r}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"a PeerJS server URL names a host and no credentials: {text!r}")
    secure = scheme in ("peerjs", "wss", "https")
    keys = parse_qs(parts.query, keep_blank_values=True).get("key", [DEFAULT_KEY])
    if len(keys) != 1 or not keys[0]:
        raise ValueError(f"a PeerJS server URL has at most one non-empty key: {text!r}")
    path = parts.path or "/"
    return Server(secure, parts.hostname, port or (443 if secure else 80),
                  path if path.endswith("/") else path + "/", keys[0])


# -- what happens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """The server gave us our slot's id: hellos to the other slots are queued."""

    slot: int


@dataclass(frozen=True)
class Taken:
    """Somebody holds the slot we asked for: close and `claim` the next one."""

    slot: int


@dataclass(frozen=True)
class Refused:
    """The server refused us (a bad key, its user limit), in its words."""

    reason: str


@dataclass(frozen=True)
class Found:
    """Peers of the share to offer a connection to (prefixed ids)."""

    peers: list[str]


@dataclass(frozen=True)
class Relayed:
    """An offer, answer (or "busy") or ice-candidate for the swarm, `data` shaped as our
    signaling server's events: `{"hash", "offer" | "answer" | "busy" | "candidate"}`."""

    kind: str
    peer: str
    data: dict


@dataclass(frozen=True)
class Left:
    """A peer left the server, or the slot it held (connections already open stay)."""

    peer: str


@dataclass(frozen=True)
class Ignored:
    """A message not acted on, and why."""

    why: str


PeerJSEvent = Opened | Taken | Refused | Found | Relayed | Left | Ignored


# -- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class Budget:
    """At most `per_minute` events in any 60 s."""

    per_minute: int
    _times: deque[float] = field(default_factory=deque)

    def take(self, now: float) -> bool:
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if len(self._times) >= self.per_minute:
            return False
        self._times.append(now)
        return True


@dataclass
class Remote:
    """The process holding one slot of our share."""

    instance: str
    connection: str | None = None
    "The connection id of the negotiation under way (ours or theirs)."
    offering: bool = False
    "We sent an offer on `connection` and no answer came yet."
    reported_at: float | None = None
    "When the swarm last heard of it (Found), or when we last said 'here'."


def _sdp(value: object, kind: str) -> dict | None:
    if not isinstance(value, dict) or value.get("type") != kind:
        return None
    sdp = value.get("sdp")
    return {"type": kind, "sdp": sdp} if isinstance(sdp, str) and 0 < len(sdp) <= MAX_SDP \
        else None


def _candidate(value: object) -> dict | None:
    """An RTCIceCandidateInit with only the fields we pass on; None if malformed."""
    if not isinstance(value, dict):
        return None
    cand, mid, index = value.get("candidate"), value.get("sdpMid"), value.get("sdpMLineIndex")
    if not isinstance(cand, str) or len(cand) > MAX_CANDIDATE:
        return None
    if mid is not None and not (isinstance(mid, str) and len(mid) <= 64):
        return None
    if index is not None and not (isinstance(index, int) and not isinstance(index, bool)
                                  and 0 <= index < 1024):
        return None
    return {"candidate": cand, "sdpMid": mid, "sdpMLineIndex": index}


# -- one share on one server ----------------------------------------------------------------------


class PeerJSSession:
    """What to send one PeerJS server for one share, and what its messages mean. Time and
    randomness come in; nothing here does I/O. Outgoing text frames pile up in
    `messages_to_send()`."""

    def __init__(self, content_hash: bytes, *, prefix: str, rng: random.Random,
                 slots: int = SLOTS) -> None:
        self.base = base_id(content_hash)
        self.hash_hex = content_hash.hex()
        self.prefix = prefix
        self.rng = rng
        self.slots = slots
        self.instance = _word(rng, 12)
        "Our process's name in every message; stays across reconnections."
        self.token = ""
        self.slot: int | None = None
        "The slot we hold while registered."
        self.last_slot: int | None = None
        self.remotes: dict[int, Remote] = {}
        self._untried: list[int] | None = None
        "Slots not yet asked for in this round of claims (None: no round begun)."
        self._trying: int | None = None
        self._out: list[str] = []
        self._heartbeat_at: float | None = None
        self._reports = Budget(REPORTS_PER_MINUTE)
        self._offers_out = Budget(OFFERS_PER_MINUTE)
        self._offers_in = Budget(OFFERS_PER_MINUTE)

    # -- registering --

    def claim(self) -> str | None:
        """The id to connect as next (a new token each time), or None when every slot was
        tried since the last `disconnected()`. The slot held before a reconnection first,
        then the others in random order."""
        if self._untried is None:
            order = self.rng.sample(range(self.slots), self.slots)
            if self.last_slot is not None:
                order.remove(self.last_slot)
                order.insert(0, self.last_slot)
            self._untried = order
        if not self._untried:
            return None
        self._trying = self._untried.pop(0)
        # A fresh token: the server hands an id back to its old token without an OPEN.
        self.token = _word(self.rng, 16)
        return self.slot_id(self._trying)

    def disconnected(self) -> None:
        """The socket closed: `claim` starts over; nothing unsent outlives the socket (the
        next one says hello afresh)."""
        if self.slot is not None:
            self.last_slot = self.slot
        self.slot = self._trying = self._untried = None
        self._heartbeat_at = None
        self._out.clear()

    def slot_id(self, slot: int) -> str:
        return f"{self.base}-{slot}"

    def peer_name(self, slot: int, instance: str) -> str:
        return f"{self.prefix}{slot}.{instance}"

    # -- time --

    def timer(self) -> float | None:
        """When `on_timer` is due (the next heartbeat), or None while unregistered."""
        return self._heartbeat_at

    def on_timer(self, now: float) -> None:
        if self._heartbeat_at is not None and now >= self._heartbeat_at:
            self._out.append(json.dumps({"type": "HEARTBEAT"}))
            self._heartbeat_at = now + HEARTBEAT_INTERVAL

    def messages_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    # -- sending --

    def _push(self, kind: str, slot: int, payload: dict, to: str | None) -> None:
        mark = {"from": self.instance}
        if to is not None:
            mark["to"] = to
        self._out.append(json.dumps({"type": kind, "dst": self.slot_id(slot),
                                     "payload": {**payload, "p2p": mark}}))

    def _hellos(self) -> None:
        for s in range(self.slots):
            if s != self.slot:
                self._push("CANDIDATE", s, {"type": "data", "say": "hello"}, None)

    def _target(self, peer: str) -> tuple[int, Remote] | None:
        """The slot and record of one of our prefixed peer names, if it still holds it."""
        if self.slot is None or not peer.startswith(self.prefix):
            return None
        slot_text, _, instance = peer[len(self.prefix):].partition(".")
        if not slot_text.isdigit() or len(slot_text) > 3:
            return None
        slot = int(slot_text)
        remote = self.remotes.get(slot)
        if remote is None or remote.instance != instance:
            return None
        return slot, remote

    def send(self, kind: str, peer: str, payload: dict, now: float) -> list[PeerJSEvent]:
        """Relay the swarm's offer / answer (or "busy") / ice-candidate to `peer`. Dropped
        when `peer` is gone or the message makes no sense; an offer over the budget comes
        back at once as the peer's "busy" (the swarm tries again later)."""
        target = self._target(peer)
        if target is None:
            return [Ignored(f"{kind} for {peer}: not a peer of ours now")]
        slot, remote = target
        if kind == "offer":
            offer = _sdp(payload.get("offer"), "offer")
            if offer is None:
                return [Ignored("an offer without SDP")]
            if not self._offers_out.take(now):
                return [Relayed("answer", peer, {"hash": self.hash_hex,
                                                  "busy": "PeerJS offer budget spent"})]
            remote.connection, remote.offering = "dc_" + _word(self.rng, 12), True
            self._push("OFFER", slot, {"sdp": offer, "type": "data",
                                       "connectionId": remote.connection,
                                       "label": CHANNEL_LABEL, "reliable": True,
                                       "serialization": "raw"}, remote.instance)
        elif kind == "answer" and isinstance(payload.get("busy"), str):
            self._push("LEAVE", slot, {"type": "data", "connectionId": remote.connection,
                                       "busy": payload["busy"][:MAX_REASON]}, remote.instance)
            remote.connection = None
        elif kind == "answer":
            answer = _sdp(payload.get("answer"), "answer")
            if answer is None or remote.connection is None or remote.offering:
                return [Ignored("an answer to no offer of theirs")]
            self._push("ANSWER", slot, {"sdp": answer, "type": "data",
                                        "connectionId": remote.connection}, remote.instance)
        elif kind == "ice-candidate":
            cand = _candidate(payload.get("candidate"))
            if cand is None or remote.connection is None:
                return [Ignored("a candidate outside a negotiation")]
            self._push("CANDIDATE", slot, {"candidate": cand, "type": "data",
                                           "connectionId": remote.connection}, remote.instance)
        else:
            return [Ignored(f"a {kind} to send")]
        return []

    def goodbye(self) -> None:
        """LEAVE to every peer we know, so their swarms drop links still being set up."""
        if self.slot is None:
            return
        for slot, remote in self.remotes.items():
            self._push("LEAVE", slot, {"type": "data"}, remote.instance)
        self.remotes.clear()

    # -- receiving --

    def receive(self, text: str, now: float) -> list[PeerJSEvent]:
        """What one message from the server means."""
        if len(text) > MAX_MESSAGE:
            return [Ignored(f"a message of {len(text)} characters")]
        try:
            msg = json.loads(text)
        except ValueError:
            return [Ignored("not JSON")]
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            return [Ignored("not a PeerJS message")]
        kind = msg["type"]
        if kind in ("OPEN", "ID-TAKEN", "ERROR", "INVALID-KEY"):
            return self._server(kind, msg, now)
        if self.slot is None:
            return [Ignored(f"{kind[:20]} before OPEN")]
        slot = self._slot_of(msg.get("src"))
        if slot is None:
            return [Ignored("a src that is not another slot of our share")]
        if kind == "EXPIRE" or (kind == "LEAVE" and not isinstance(msg.get("payload"), dict)):
            # From the server: nobody took our message to that slot, or its holder went away.
            return self._forget(slot)
        payload = msg.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("p2p"), dict):
            return [Ignored(f"a {kind[:20]} without our p2p mark (not a p2p peer)")]
        mark = payload["p2p"]
        sender, to = mark.get("from"), mark.get("to")
        if not isinstance(sender, str) or not _INSTANCE.fullmatch(sender):
            return [Ignored("a malformed sender instance")]
        if to is not None and to != self.instance:
            return [Ignored("a message for the previous holder of our slot")]
        events: list[PeerJSEvent] = []
        remote = self.remotes.get(slot)
        if remote is not None and remote.instance != sender:
            events += self._forget(slot)  # the slot changed hands
            remote = None
        if remote is None:
            remote = self.remotes[slot] = Remote(sender)
        if to is None and not (kind == "CANDIDATE" and payload.get("say") == "hello"):
            return [*events, Ignored(f"a {kind[:20]} addressed to nobody")]
        return events + self._from_peer(kind, slot, remote, payload, now)

    def _server(self, kind: str, msg: dict, now: float) -> list[PeerJSEvent]:
        if kind == "OPEN":
            if self._trying is None or self.slot is not None:
                return [Ignored("an OPEN we did not ask for")]
            self.slot, self._trying, self._untried = self._trying, None, []
            self._heartbeat_at = now + HEARTBEAT_INTERVAL
            self._hellos()
            return [Opened(self.slot)]
        if kind == "ID-TAKEN":
            if self._trying is None:
                return [Ignored("an ID-TAKEN we did not ask for")]
            slot, self._trying = self._trying, None
            return [Taken(slot)]
        payload = msg.get("payload")
        reason = payload.get("msg") if isinstance(payload, dict) else None
        return [Refused(str(reason)[:MAX_REASON] if reason is not None else
                        "invalid key" if kind == "INVALID-KEY" else "an error")]

    def _slot_of(self, src: object) -> int | None:
        if not isinstance(src, str) or not src.startswith(self.base + "-"):
            return None
        tail = src[len(self.base) + 1:]
        if not tail.isdigit() or len(tail) > 3 or not tail.isascii():
            return None
        slot = int(tail)
        return slot if slot < self.slots and slot != self.slot else None

    def _forget(self, slot: int) -> list[PeerJSEvent]:
        remote = self.remotes.pop(slot, None)
        if remote is None:
            return [Ignored(f"nobody known at slot {slot}")]
        return [Left(self.peer_name(slot, remote.instance))]

    def _report(self, slot: int, remote: Remote, now: float) -> list[PeerJSEvent]:
        if remote.reported_at is not None and now - remote.reported_at < REPORT_INTERVAL:
            return [Ignored("a peer named to the swarm moments ago")]
        if not self._reports.take(now):
            return [Ignored("too many peers named this minute")]
        remote.reported_at = now
        return [Found([self.peer_name(slot, remote.instance)])]

    def _from_peer(self, kind: str, slot: int, remote: Remote, payload: dict,
                   now: float) -> list[PeerJSEvent]:
        assert self.slot is not None
        peer = self.peer_name(slot, remote.instance)
        conn = payload.get("connectionId")
        conn = conn if isinstance(conn, str) and _CONNECTION.fullmatch(conn) else None
        say = payload.get("say")
        if kind == "CANDIDATE" and say in ("hello", "here"):
            if slot < self.slot:  # the higher slot offers
                return self._report(slot, remote, now)
            if say == "hello":
                if remote.reported_at is not None and now - remote.reported_at < REPORT_INTERVAL:
                    return [Ignored("a repeated hello")]
                remote.reported_at = now
                self._push("CANDIDATE", slot, {"type": "data", "say": "here"}, remote.instance)
                return []
            return [Ignored("a 'here' from a higher slot")]
        if kind == "OFFER":
            offer = _sdp(payload.get("sdp"), "offer")
            if offer is None or conn is None:
                return [Ignored("an offer without SDP or connection id")]
            if not self._offers_in.take(now):
                return [Ignored("too many offers this minute")]
            remote.connection, remote.offering = conn, False
            return [Relayed("offer", peer, {"hash": self.hash_hex, "offer": offer})]
        if kind == "LEAVE" and not isinstance(payload.get("busy"), str):
            return self._forget(slot)  # it says goodbye
        if conn is None or conn != remote.connection:
            return [Ignored(f"a {kind[:20]} outside the negotiation under way")]
        if kind == "ANSWER":
            answer = _sdp(payload.get("sdp"), "answer")
            if answer is None or not remote.offering:
                return [Ignored("an answer to no offer of ours")]
            remote.offering = False
            return [Relayed("answer", peer, {"hash": self.hash_hex, "answer": answer})]
        if kind == "CANDIDATE":
            cand = _candidate(payload.get("candidate"))
            if cand is None:
                return [Ignored("a malformed candidate")]
            return [Relayed("ice-candidate", peer, {"hash": self.hash_hex, "candidate": cand})]
        if kind == "LEAVE" and remote.offering:  # "busy": no room for us now
            remote.offering, remote.connection = False, None
            return [Relayed("answer", peer, {"hash": self.hash_hex,
                                             "busy": payload["busy"][:MAX_REASON]})]
        return [Ignored(f"a {kind[:20]} that answers nothing")]
