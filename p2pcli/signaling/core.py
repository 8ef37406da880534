"""What the signaling hub does with each connection and each event (sans-IO).

`SignalCore` holds every rule the server applies, whatever the transport: who is admitted
(the token, then one of the address's `Limits.max_per_ip` slots), how fast a connection
may send (its `ConnectionMeter`; over the rate, an ``error rate-limited`` and a pause in
reading it), what an announce or a relay answers and to whom (`Rooms`, schema.py), and
who is told when a peer leaves. It takes decoded input and the caller's clock (`now`)
and returns an `Outcome`: the acknowledgement, the text frames to send, in order, and how
long to stop reading the sender. It does no I/O; server.py moves the frames.

With a cluster (cluster.py) two steps wait on Redis in between, so they come back to the
caller half done: an announce returns `Announced` (the caller may replace the peer-list
with the cluster's, then calls `SignalCore.announced`), and a relay to a peer this node
does not have returns its validated `Relay` for the cluster to route.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import orjson

from .codec import event_frame, relayed_frame
from .limits import AddressCounter, ConnectionMeter, Limits
from .rooms import Joined, Rooms
from .schema import (
    ErrorCode,
    Relay,
    SignalSchemaError,
    check_size,
    parse_announce,
    parse_relay,
)

#: The acknowledgement of a relayed message that was delivered (or handed on).
OK: Final[dict[str, object]] = {"ok": True}


class Frame(NamedTuple):
    """A text frame to send to one connection.

    A tuple rather than a frozen dataclass: one is made per relayed message, and a frozen
    dataclass takes three times as long to build.
    """

    peer: str
    """The connection's peer id."""
    text: str
    """The whole frame, in that connection's transport's format (codec.py)."""


@dataclass(slots=True)
class Outcome:
    """What handling one event asks of the adapter, in this order."""

    ack: dict[str, object]
    """The acknowledgement (Socket.IO ack, or the /ws ``ack`` frame's fields)."""
    frames: list[Frame] = field(default_factory=list)
    """Frames to send, in order."""
    pause: float = 0.0
    """Seconds to stop reading the sender's connection (it is over its rate): what it
    sends meanwhile waits in the socket buffers, so a flood slows its sender down (TCP
    back-pressure) and costs one refusal per token, not one per message."""


@dataclass(frozen=True, slots=True)
class Announced:
    """An accepted announce, before its answers are sent (see `SignalCore.announced`)."""

    room: str
    """The room (content hash) announced."""
    new: bool
    """The peer was not in the room before (others are told with ``new-peer``)."""
    joined: Joined
    """This node's peer-list and whom to tell."""


@dataclass(slots=True)
class Session:
    """An engine.io session, from its opening to its end (Socket.IO connected or not)."""

    address: str
    """The client's IP address."""
    counted: bool
    """Whether it holds one of its address's slots (none was free otherwise: it is
    refused at CONNECT)."""


@dataclass(frozen=True, slots=True)
class Departure:
    """What a connection's end asks of the adapter."""

    rooms: set[str]
    """The rooms it was in (a cluster removes it from them)."""
    frames: list[Frame]
    """``peer-left`` to each peer that shared a room with it, once each."""


class SignalCore:
    """Admission, rate limits and the answers to every client event, for one node."""

    def __init__(
        self,
        rooms: Rooms | None = None,
        limits: Limits | None = None,
        token: str | None = None,
        *,
        clustered: bool = False,
    ) -> None:
        self.limits = limits = limits or Limits()
        self.rooms = rooms = rooms if rooms is not None else Rooms()
        rooms.max_rooms_per_peer = limits.max_rooms
        rooms.max_peer_list = limits.max_peer_list
        self.token = token
        """Shared secret every connection must present; None: no token needed."""
        self.clustered = clustered
        """Peers this node does not have may be on other nodes (relays go to the cluster)."""
        self.addresses = AddressCounter(limits.max_per_ip)
        self.sessions: dict[str, Session] = {}
        """engine.io sid -> its admission state."""
        self.meters: dict[str, ConnectionMeter] = {}
        """Peer id -> its rate limits."""
        self.address_of: dict[str, str] = {}
        """Peer id -> the address whose slot it holds itself (not through a session)."""
        self.closing = False
        """The server is stopping: nobody is told about peers leaving."""

    # -- admission -------------------------------------------------------------------------

    # An engine.io session is a connection as soon as it opens: it counts toward the
    # per-address cap from then (the adapter closes it unless it connects in time).
    # Otherwise sessions that never authenticate could be held open without limit.

    def session_opened(self, session: str, address: str) -> None:
        """An engine.io session opened from `address`: it takes a slot if one is free."""
        self.sessions[session] = Session(address, self.addresses.acquire(address))

    def session_closed(self, session: str) -> None:
        """An engine.io session ended: its slot is free again."""
        state = self.sessions.pop(session, None)
        if state is not None and state.counted:
            self.addresses.release(state.address)

    def connect(
        self,
        peer_id: str,
        transport: str,
        token: object,
        address: str,
        session: str | None = None,
    ) -> SignalSchemaError | None:
        """Admit and register a connection; the refusal if it is not admitted.

        `session`: the engine.io session a Socket.IO connection belongs to; it took its
        address's slot when it opened, or found none free. Without one (/ws, or an
        engine.io session the adapter did not see open) a slot is taken now, and freed by
        `disconnect`.
        """
        state = self.sessions.get(session) if session is not None else None
        refusal = self._check_token(token)
        if refusal is None and (
            (state is not None and not state.counted)
            or (state is None and not self.addresses.acquire(address))
        ):
            refusal = SignalSchemaError(
                ErrorCode.TOO_MANY_CONNECTIONS,
                f"{self.limits.max_per_ip} connections are already open from {address}",
            )
        if refusal is not None:
            self.rooms.stats.refused += 1
            return refusal
        if state is None:
            self.address_of[peer_id] = address
        self.meters[peer_id] = ConnectionMeter.for_limits(self.limits)
        self.rooms.connect(peer_id, transport)
        return None

    def token_ok(self, token: object) -> bool:
        """Whether `token` admits a connection (for the /announce tracker too)."""
        return self._check_token(token) is None

    def _check_token(self, token: object) -> SignalSchemaError | None:
        if self.token is None or (
            # Constant time, so the token cannot be guessed a character at a time.
            isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode())
        ):
            return None
        return SignalSchemaError(
            ErrorCode.BAD_TOKEN,
            "this signaling server needs an access token, and "
            + ("none was given" if not token else "the one given is wrong"),
        )

    def disconnect(self, peer_id: str) -> Departure:
        """A connection ended: it leaves its rooms, its neighbours are told (unless the
        server is stopping, when telling each about the others would cost the square of
        the number of clients). Unknown ids are ignored."""
        rooms = set(self.rooms.rooms_of(peer_id))
        self.meters.pop(peer_id, None)
        address = self.address_of.pop(peer_id, None)
        if address is not None:
            self.addresses.release(address)
        others = self.rooms.disconnect(peer_id)
        if self.closing:
            return Departure(rooms, [])
        left = {"peerId": peer_id}
        return Departure(rooms, self._event_frames(others, "peer-left", left))

    # -- client events ---------------------------------------------------------------------

    def announce(self, sender: str, data: object, now: float) -> Outcome | Announced:
        """An ``announce``: the refusal, or the accepted step (see `announced`)."""
        refused = self._throttle(sender, "announce", now)
        if refused is not None:
            return refused
        try:
            room = parse_announce(data)
            # Announces are not relayed, so their size is checked on its own.
            check_size("announce", len(orjson.dumps(data)))
            new = room not in self.rooms.rooms_of(sender)
            joined = self.rooms.announce(sender, room)
        except SignalSchemaError as e:
            return self.refuse(sender, "announce", e)
        return Announced(room, new, joined)

    def announced(
        self, sender: str, step: Announced, peers: list[str] | None = None
    ) -> Outcome:
        """The answers to an accepted announce: the announcer's ``peer-list`` (`peers`,
        the cluster's, or this node's), and ``new-peer`` to whom `step` says."""
        if peers is None:
            peers = step.joined.peers
        # `hash` is an extension: a client in several rooms can tell which one is meant.
        frames = self._event_frames([sender], "peer-list", {"peers": peers, "hash": step.room})
        news = {"peerId": sender, "hash": step.room}
        frames += self._event_frames(step.joined.notify, "new-peer", news)
        return Outcome({"ok": True, "peers": peers}, frames)

    def relay(self, sender: str, event: str, data: object, now: float) -> Outcome | Relay:
        """An ``offer`` / ``answer`` / ``ice-candidate``: delivered or refused, or (with a
        cluster, for a peer this node does not have) the `Relay` for the cluster."""
        refused = self._throttle(sender, event, now)
        if refused is not None:
            return refused
        try:
            relay = parse_relay(event, data)
            if self.clustered and relay.target not in self.rooms.peers:
                return relay
            frame = self.relayed(relay.target, event, self.rooms.route(sender, relay))
        except SignalSchemaError as e:
            return self.refuse(sender, event, e)
        self.rooms.stats.relayed += 1
        return Outcome(OK, [] if frame is None else [frame])

    def relayed_remotely(self) -> Outcome:
        """The cluster took a relayed message for another node."""
        self.rooms.stats.relayed += 1
        return Outcome(OK)

    def relayed(self, target: str, event: str, payload: dict[str, object]) -> Frame | None:
        """A relayed message for `target` (None if it is gone); SignalSchemaError if it is
        too large once encoded for `target`'s transport."""
        peer = self.rooms.peers.get(target)
        if peer is None:
            return None
        return Frame(target, relayed_frame(peer.transport, event, payload))

    def unknown_event(self, sender: str, event: object, now: float) -> Outcome:
        """A Socket.IO event the server does not know: ignored, as by the reference
        server (no error event); a client that asked for an acknowledgement is told
        why. `event` is whatever the client put first in its packet."""
        name = event if isinstance(event, str) else repr(event)[:100]
        refused = self._throttle(sender, name, now)
        if refused is not None:
            return refused
        return Outcome(
            {"ok": False, "code": ErrorCode.UNKNOWN_EVENT, "error": f"unknown event {name!r}"}
        )

    def unknown_type(self, sender: str, kind: str, now: float) -> Outcome:
        """A /ws frame whose ``type`` the server does not know: an error event."""
        refused = self._throttle(sender, kind, now)
        if refused is not None:
            return refused
        error = SignalSchemaError(ErrorCode.UNKNOWN_EVENT, f"unknown type {kind!r}")
        return self.refuse(sender, kind, error)

    def bad_frame(self, sender: str, error: SignalSchemaError, now: float) -> Outcome:
        """A /ws frame that is not a JSON object with a ``type``."""
        refused = self._throttle(sender, None, now)
        return refused if refused is not None else self.refuse(sender, None, error)

    def refuse(self, peer_id: str, event: str | None, error: SignalSchemaError) -> Outcome:
        """Answer bad input with an ``error`` event and a negative acknowledgement."""
        self.rooms.stats.errors += 1
        body: dict[str, object] = {"message": error.message, "code": error.code}
        if event is not None:
            body["event"] = event
        nack: dict[str, object] = {"ok": False, "code": error.code, "error": error.message}
        return Outcome(nack, self._event_frames([peer_id], "error", body))

    def _throttle(self, peer_id: str, event: str | None, now: float) -> Outcome | None:
        """None if `peer_id` may send `event` now; else its refusal, with a pause."""
        meter = self.meters.get(peer_id)
        if meter is None:
            return None
        wait = meter.admit(event or "", now)
        if not wait:
            return None
        self.rooms.stats.rate_limited += 1
        limits = self.limits
        outcome = self.refuse(peer_id, event, SignalSchemaError(
            ErrorCode.RATE_LIMITED,
            f"too many messages: this server takes {limits.message_rate:g} events and "
            f"{limits.announce_rate:g} announces per second from one connection",
        ))
        # A little past the refill: timers may fire early by their resolution (uvloop's
        # is a millisecond), which would refuse the next event too, for nothing.
        outcome.pause = min(wait * 1.1 + 0.002, 1.0)
        return outcome

    # -- server-made events ----------------------------------------------------------------

    def event(self, peer_id: str, event: str, payload: dict[str, object]) -> Frame | None:
        """A server-made event (``ice-config``, or one the cluster delivers) for
        `peer_id`; None if it is not connected."""
        frames = self._event_frames([peer_id], event, payload)
        return frames[0] if frames else None

    def _event_frames(
        self, peer_ids: list[str], event: str, payload: dict[str, object]
    ) -> list[Frame]:
        # Encoded once per transport, not once per recipient: a peer-left goes to a
        # whole room.
        texts: dict[str, str] = {}
        frames = []
        for peer_id in peer_ids:
            peer = self.rooms.peers.get(peer_id)
            if peer is None:
                continue
            text = texts.get(peer.transport)
            if text is None:
                text = texts[peer.transport] = event_frame(peer.transport, event, payload)
            frames.append(Frame(peer_id, text))
        return frames
