"""Validation of signaling event payloads (sans-IO).

Every payload a client sends goes through one of the functions here before the server
acts on it. They take already-decoded JSON values (``object``) and return either a
normalized value or raise `SignalSchemaError`, whose ``code`` is sent back to the client
in an ``error`` event. Nothing here raises anything else, whatever the input: the
hypothesis tests in tests/test_signaling_schema.py hold that line.
"""

from __future__ import annotations

import re
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

#: Longest SDP accepted in a relayed ``sdp`` field. A browser's offer with every candidate
#: inlined is 2 to 10 KiB; a real one is nowhere near this.
MAX_SDP_LEN: Final = 32 * 1024

#: Longest ICE candidate line accepted (``candidate:...``). Real ones are about 100 to 250
#: characters.
MAX_CANDIDATE_LEN: Final = 2048

#: Longest ``sdpMid`` / ``usernameFragment`` accepted in a candidate.
MAX_MID_LEN: Final = 256

#: Largest ``sdpMLineIndex`` accepted (an index into the SDP's media sections).
MAX_MLINE_INDEX: Final = 65535

#: Events a client may relay to one other peer; the payload is forwarded untouched apart
#: from ``fromPeer``.
RELAY_EVENTS: Final = frozenset({"offer", "answer", "ice-candidate"})

#: What peer ids look like: Socket.IO sids and our /ws ids are URL-safe base64.
_PEER_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_PEER_ID_LEN}}}")

#: Control characters (C0, DEL, C1): never in a room name; they would corrupt logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ErrorCode:
    """Machine-readable ``code`` of an ``error`` event (docs/SIGNALING.md "Errors")."""

    BAD_PAYLOAD = "bad-payload"  # not a JSON object, or not JSON at all (/ws)
    BAD_HASH = "bad-hash"  # hash missing, not a string, empty, too long, control characters
    BAD_TARGET = "bad-target"  # targetPeer missing, not a string, too long, not an id's shape
    BAD_SDP = "bad-sdp"  # sdp not a string (or {type, sdp} object), or too long
    BAD_CANDIDATE = "bad-candidate"  # candidate, sdpMid or sdpMLineIndex of a wrong type/size
    UNKNOWN_PEER = "unknown-peer"  # target not connected, or shares no room with sender
    TOO_LARGE = "too-large"  # encoded message over MAX_MESSAGE_BYTES
    TOO_MANY_ROOMS = "too-many-rooms"  # peer announced more hashes than allowed
    UNKNOWN_EVENT = "unknown-event"  # event name (or /ws "type") the server does not know
    RATE_LIMITED = "rate-limited"  # over the connection's messages/s or announces/s
    TOO_MANY_CONNECTIONS = "too-many-connections"  # over the connections allowed per address
    BAD_TOKEN = "bad-token"  # the server needs an access token and this one is missing/wrong


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
    room = check_room(data.get("hash"), "announce")
    peer_id = data.get("peerId")
    if peer_id is not None and (not isinstance(peer_id, str | int) or len(str(peer_id)) > 256):
        raise SignalSchemaError(
            ErrorCode.BAD_PAYLOAD, "announce 'peerId', when given, must be a short string"
        )
    return room


def check_room(room: object, event: str) -> str:
    """A room name: a string of 1 to `MAX_HASH_LEN` characters, no control characters."""
    if not isinstance(room, str) or not room:
        raise SignalSchemaError(ErrorCode.BAD_HASH, f"{event} needs 'hash', a non-empty string")
    if len(room) > MAX_HASH_LEN:
        raise SignalSchemaError(
            ErrorCode.BAD_HASH, f"'hash' is longer than {MAX_HASH_LEN} characters"
        )
    if _CONTROL.search(room):
        raise SignalSchemaError(ErrorCode.BAD_HASH, "'hash' contains control characters")
    return room


def parse_relay(event: str, data: object) -> Relay:
    """Validate an ``offer`` / ``answer`` / ``ice-candidate`` payload."""
    if not isinstance(data, dict):
        raise SignalSchemaError(
            ErrorCode.BAD_PAYLOAD, f"{event} expects an object with 'targetPeer'"
        )
    target = data.get("targetPeer")
    if not isinstance(target, str) or not _PEER_ID.fullmatch(target):
        raise SignalSchemaError(
            ErrorCode.BAD_TARGET, f"{event} needs 'targetPeer', the id of a peer in your room"
        )
    # The fields WebRTC signaling is made of are checked wherever clients put them (flat,
    # or nested as RTCSessionDescription / RTCIceCandidate objects); other fields are the
    # clients' business and only bounded by the message size.
    if "hash" in data:
        check_room(data["hash"], event)
    for key in ("sdp", "offer", "answer"):
        if key in data:
            _check_sdp(event, key, data[key])
    _check_candidate(event, data)
    nested = data.get("candidate")
    if isinstance(nested, dict):
        _check_candidate(event, nested)
    return Relay(target, data)


def _check_sdp(event: str, key: str, value: object) -> None:
    if isinstance(value, dict):  # {type, sdp}, as RTCSessionDescription serializes
        value = value.get("sdp")
        if value is None:
            return
    if value is None:
        return
    if not isinstance(value, str):
        raise SignalSchemaError(
            ErrorCode.BAD_SDP, f"{event} '{key}' must be an SDP string or a {{type, sdp}} object"
        )
    if len(value) > MAX_SDP_LEN:
        raise SignalSchemaError(
            ErrorCode.BAD_SDP, f"{event} SDP is over {MAX_SDP_LEN} characters"
        )


def _check_candidate(event: str, fields: dict[str, object]) -> None:
    """`candidate`, `sdpMid`, `sdpMLineIndex`, `usernameFragment` of an ICE candidate."""
    cand = fields.get("candidate")
    if not (cand is None or isinstance(cand, dict)) and (
        not isinstance(cand, str) or len(cand) > MAX_CANDIDATE_LEN
    ):
        raise SignalSchemaError(
            ErrorCode.BAD_CANDIDATE,
            f"{event} 'candidate' must be a string of at most {MAX_CANDIDATE_LEN} "
            "characters (or an RTCIceCandidate object)",
        )
    for key in ("sdpMid", "usernameFragment"):
        value = fields.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_MID_LEN):
            raise SignalSchemaError(
                ErrorCode.BAD_CANDIDATE,
                f"{event} '{key}' must be a string of at most {MAX_MID_LEN} characters",
            )
    index = fields.get("sdpMLineIndex")
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_MLINE_INDEX
    ):
        raise SignalSchemaError(
            ErrorCode.BAD_CANDIDATE,
            f"{event} 'sdpMLineIndex' must be an integer from 0 to {MAX_MLINE_INDEX}",
        )


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
