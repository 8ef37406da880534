"""The design note's "Opción 1" signaling server, transcribed to python-socketio.

Only the reference events, none of our extensions (no peer-left, no validation, no room
check on relays): seed and fetch must work through a server like this one.
Run: python reference_signal_server.py PORT
"""

from __future__ import annotations

import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(cors_allowed_origins="*", async_mode="aiohttp")
app = web.Application()
sio.attach(app)
rooms: dict[str, set[str]] = {}


@sio.on("announce")
async def announce(sid, data):
    h = data["hash"]
    rooms.setdefault(h, set()).add(sid)
    await sio.enter_room(sid, h)
    peers = [p for p in rooms[h] if p != sid]
    await sio.emit("peer-list", {"peers": peers}, to=sid)
    await sio.emit("new-peer", {"peerId": sid}, room=h, skip_sid=sid)


for _event in ("offer", "answer", "ice-candidate"):

    async def relay(sid, data, _event=_event):
        await sio.emit(_event, {**data, "fromPeer": sid}, to=data["targetPeer"])

    sio.on(_event, relay)


@sio.event
async def disconnect(sid, *args):
    for h in list(rooms):
        rooms[h].discard(sid)
        if not rooms[h]:
            del rooms[h]


if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
