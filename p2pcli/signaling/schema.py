"""Validation of signaling event payloads (sans-IO).

Every payload a client sends goes through one of the functions here before the server
acts on it. They take already-decoded JSON values (``object``) and return either a
normalized value or raise `SignalSchemaError`, whose ``code`` is sent back to the client
in an ``error`` event. Nothing here raises anything else, whatever the input: the
hypothesis tests in tests/test_signaling_schema.py hold that line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

#: Longest room name (content hash) accepted. Our own hashes are 64 hex digits; the
#: reference server takes any string, so we allow more, but bounded, because the name is
#: kept in memory and echoed in logs.
MAX_HASH_LEN: Final = 256

#: Longest peer id accepted in ``targetPeer``. Ids we hand out are 20 characters.
MAX_PEER_ID_LEN: Final = 64

#: Largest relayed message in bytes, once encoded. An SDP offer with every candidate
#: inlined is a few KiB; 64 KiB leaves room and keeps one client from flooding another.
MAX_MESSAGE_BYTES: Final = 64 * 1024

#: Events a client may relay to one other peer; the payload is forwarded untouched apart
#: from ``fromPeer``.
RELAY_EVENTS: Final = frozenset({"offer", "answer", "ice-candidate"})


class ErrorCode:
    """Machine-readable ``code`` of an ``error`` event (docs/SIGNALING.md "Errors")."""

    BAD_PAYLOAD = "bad-payload"  # not a JSON object, or not JSON at all (/ws)
    BAD_HASH = "bad-hash"  # hash missing, not a string, empty or too long
    BAD_TARGET = "bad-target"  # targetPeer missing, not a string, empty or too long
    UNKNOWN_PEER = "unknown-peer"  # target not connected, or shares no room with sender
    TOO_LARGE = "too-large"  # encoded message over MAX_MESSAGE_BYTES
    TOO_MANY_ROOMS = "too-many-rooms"  # peer announced more hashes than allowed
    UNKNOWN_EVENT = "unknown-event"  # event name (or /ws "type") the server does not know


class SignalSchemaError(Exception):
    """A client sent something the server will not act on.

    ``code`` is one of `ErrorCode`; ``message`` is a sentence for the client's developer.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Relay:
    """A validated ``offer`` / ``answer`` / ``ice-candidate`` payload."""

    target: str
    """Peer id the message is for (the payload's ``targetPeer``)."""
    payload: dict[str, object]
    """The payload as sent, every field kept (``targetPeer`` and ``fromPeer`` included)."""


@dataclass(frozen=True, slots=True)
class WsMessage:
    """One decoded frame from the plain-WebSocket (/ws) transport."""

    type: str
    """Event name, from the frame's ``type`` field."""
    data: dict[str, object]
    """The frame object, ``type`` included and ``ack`` removed: the event's payload."""
    ack: int | str | None
    """The frame's ``ack`` field if it asked for an acknowledgement, else None."""


def parse_announce(data: object) -> str:
    """Return the room name of an ``announce {hash, peerId}`` payload.

    ``peerId`` is ignored, as in the reference server: peers are known by the id the
    server gave their connection.
    """
    if not isinstance(data, dict):
        raise SignalSchemaError(ErrorCode.BAD_PAYLOAD, "announce expects an object {hash}")
    room = data.get("hash")
    if not isinstance(room, str) or not room:
        raise SignalSchemaError(ErrorCode.BAD_HASH, "announce needs 'hash', a non-empty string")
    if len(room) > MAX_HASH_LEN:
        raise SignalSchemaError(
            ErrorCode.BAD_HASH, f"'hash' is longer than {MAX_HASH_LEN} characters"
        )
    return room


def parse_relay(event: str, data: object) -> Relay:
    """Validate an ``offer`` / ``answer`` / ``ice-candidate`` payload."""
    if not isinstance(data, dict):
        raise SignalSchemaError(
            ErrorCode.BAD_PAYLOAD, f"{event} expects an object with 'targetPeer'"
        )
    target = data.get("targetPeer")
    if not isinstance(target, str) or not target or len(target) > MAX_PEER_ID_LEN:
        raise SignalSchemaError(
            ErrorCode.BAD_TARGET, f"{event} needs 'targetPeer', the id of a peer in your room"
        )
    return Relay(target, data)


def check_size(event: str, size: int) -> None:
    """Refuse a relayed message whose encoding is over `MAX_MESSAGE_BYTES`."""
    if size > MAX_MESSAGE_BYTES:
        raise SignalSchemaError(
            ErrorCode.TOO_LARGE,
            f"{event} is {size} bytes; the server relays at most {MAX_MESSAGE_BYTES}",
        )


def parse_ws_frame(frame: str | bytes) -> WsMessage:
    """Decode one /ws text frame: a JSON object whose ``type`` names the event."""
    # Checked before decoding so an oversized frame costs no parsing. The limit is a bit
    # above MAX_MESSAGE_BYTES because fromPeer is added before the relayed size check.
    if len(frame) > MAX_MESSAGE_BYTES:
        raise SignalSchemaError(
            ErrorCode.TOO_LARGE, f"frame is over {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise SignalSchemaError(ErrorCode.BAD_PAYLOAD, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise SignalSchemaError(ErrorCode.BAD_PAYLOAD, "frame must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise SignalSchemaError(
            ErrorCode.BAD_PAYLOAD, "frame needs 'type', the event name as a string"
        )
    # `ack` is framing, like Socket.IO's ack id: it is not part of what gets relayed.
    ack = data.pop("ack", None)
    if isinstance(ack, bool) or not isinstance(ack, int | str):
        ack = None
    return WsMessage(kind, data, ack)
