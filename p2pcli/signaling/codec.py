"""The text frames the server sends and the few it decodes itself (sans-IO).

Both transports carry JSON text. Socket.IO v5 over engine.io: an EVENT packet is
``2["event",{...}]`` (engine.io adds its own ``4`` in front), so a frame is encoded once
with orjson and handed to engine.io's ``send(sid, data)`` instead of going through
python-socketio's generic emit, which builds a packet object, looks the sid up as a room
and starts a task per recipient. The plain WebSocket (/ws): one JSON object whose
``type`` is the event name (docs/SIGNALING.md).
"""

from __future__ import annotations

import json as stdlib_json
from typing import Final

import orjson

from .schema import RELAY_EVENTS, check_size

#: `Peer.transport` of a Socket.IO connection (the other is `WS`).
SOCKET_IO: Final = "socket.io"
#: `Peer.transport` of a plain-WebSocket (/ws) connection.
WS: Final = "ws"


class OrjsonCodec:
    """The ``json`` module python-socketio and engine.io use, backed by orjson.

    They call ``dumps(obj, separators=...)`` and ``loads(text)``. orjson refuses a few
    things the standard library accepts (non-string keys, integers over 64 bits); those
    fall back to it rather than fail. Note engine.io installs this process-wide (it is a
    class attribute of its Packet), so Socket.IO clients in the same process use it too;
    it is a drop-in replacement, so they are none the worse.
    """

    @staticmethod
    def dumps(obj: object, **kwargs: object) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:
            return stdlib_json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes, **kwargs: object) -> object:
        return orjson.loads(text)


def event_frame(transport: str, event: str, payload: dict[str, object]) -> str:
    """A server-made event (peer-list, new-peer, peer-left, error, ice-config...)."""
    if transport == WS:
        return OrjsonCodec.dumps({"type": event, **payload})
    return f'2["{event}",{OrjsonCodec.dumps(payload)}]'


def relayed_frame(transport: str, event: str, payload: dict[str, object]) -> str:
    """A relayed message as its target receives it; SignalSchemaError if too large.

    The size checked is the payload's encoding as the target gets it: on /ws the event
    name travels in `type`, overwriting a payload field of that name (docs/SIGNALING.md),
    so `payload` is changed in place then.
    """
    if transport == WS:
        payload["type"] = event
        body = orjson.dumps(payload)
        check_size(event, len(body))
        return body.decode()
    body = orjson.dumps(payload)
    check_size(event, len(body))
    return f'2["{event}",{body.decode()}]'


def ws_ack_frame(ack: int | str, result: dict[str, object]) -> str:
    """The /ws answer to a frame that carried ``ack``."""
    return orjson.dumps({"type": "ack", "ack": ack, **result}).decode()


def ws_welcome_frame(peer_id: str) -> str:
    """The first /ws frame: the client's id, as Socket.IO's handshake gives ``socket.id``."""
    return orjson.dumps({"type": "welcome", "peerId": peer_id}).decode()


def ws_refusal_frame(code: str, message: str) -> str:
    """Why a /ws connection is refused (sent just before closing it)."""
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


def fast_relay(text: str) -> tuple[str, object] | None:
    """The event and payload of a ``42["offer",{...}]`` frame; None for anything that is
    not a relay event (python-socketio handles those)."""
    try:
        frame = orjson.loads(text[2:])
    except orjson.JSONDecodeError:
        return None
    if type(frame) is not list or not frame or frame[0] not in RELAY_EVENTS:
        return None
    return frame[0], frame[1] if len(frame) > 1 else None
