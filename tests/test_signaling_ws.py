"""The plain-WebSocket transport (/ws, design note "Opción 3") and raw protocol abuse.

/ws peers and Socket.IO peers share rooms, so each can signal the other. The second half
feeds malformed frames to both transports: the server answers or ignores them and keeps
serving everyone else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket

import aiohttp
import pytest

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import WAIT, Peers, SignalProcess, get_json, unique  # noqa: E402

pytest_plugins = ["signal_helpers"]
pytestmark = pytest.mark.timeout(60)

SID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20}$")


async def test_a_ws_client_is_told_its_id_shaped_like_a_socketio_sid(signal_peers: Peers):
    w = await signal_peers.ws()
    s = await signal_peers.sio()
    assert SID_SHAPE.match(w.id)
    assert SID_SHAPE.match(s.id)
    assert w.id != s.id


async def test_ws_and_socketio_peers_meet_in_one_room(signal_peers: Peers):
    room = unique()
    s = await signal_peers.sio()
    w = await signal_peers.ws()
    assert await s.announce(room) == []
    assert await w.announce(room) == [s.id]
    assert await s.next("new-peer") == {"peerId": w.id, "hash": room}
    s2 = await signal_peers.sio("polling")
    assert await s2.announce(room) == [s.id, w.id]
    assert await w.next("new-peer") == {"type": "new-peer", "peerId": s2.id, "hash": room}


async def test_ws_to_socketio_relay_keeps_fields_and_stamps_fromPeer(signal_peers: Peers):
    room = unique()
    s = await signal_peers.sio()
    w = await signal_peers.ws()
    await s.announce(room)
    await w.announce(room)
    frame = {"type": "offer", "targetPeer": s.id, "sdp": "v=0", "fromPeer": "forged", "n": 1}
    await w.send(frame)
    # `type` is a field like any other once it leaves /ws: an RTCSessionDescription-shaped
    # payload ({type, sdp}) arrives whole.
    assert await s.next("offer") == {**frame, "fromPeer": w.id}


async def test_socketio_to_ws_relay_carries_the_event_in_type(signal_peers: Peers):
    room = unique()
    s = await signal_peers.sio("polling")
    w = await signal_peers.ws()
    await s.announce(room)
    await w.announce(room)
    for event in ("offer", "answer", "ice-candidate"):
        await s.emit(event, {"targetPeer": w.id, "candidate": "c", "fromPeer": "forged"})
        got = await w.next(event)
        assert got == {
            "type": event,
            "targetPeer": w.id,
            "candidate": "c",
            "fromPeer": s.id,
        }


async def test_ws_to_ws_relay(signal_peers: Peers):
    room = unique()
    a, b = await signal_peers.ws(), await signal_peers.ws()
    await a.announce(room)
    await b.announce(room)
    await b.send({"type": "ice-candidate", "targetPeer": a.id, "candidate": "x"})
    got = await a.next("ice-candidate")
    assert got["fromPeer"] == b.id and got["candidate"] == "x"


async def test_the_bare_root_path_speaks_ws_too(signal_peers: Peers):
    """The note's "Opción 3" client connects to ws://host:port itself."""
    room = unique()
    a = await signal_peers.ws("/")
    b = await signal_peers.ws("/ws")
    await a.announce(room)
    assert await b.announce(room) == [a.id]


async def test_ws_acknowledgements(signal_peers: Peers):
    room = unique()
    a, b = await signal_peers.ws(), await signal_peers.ws()
    await a.send({"type": "announce", "hash": room, "ack": 1})
    assert await a.next("ack") == {"type": "ack", "ack": 1, "ok": True, "peers": []}
    await b.send({"type": "announce", "hash": room, "ack": "b1"})
    assert (await b.next("ack"))["peers"] == [a.id]
    await b.send({"type": "offer", "targetPeer": a.id, "ack": 2})
    assert await b.next("ack") == {"type": "ack", "ack": 2, "ok": True}
    # `ack` is framing: it is not relayed.
    assert "ack" not in await a.next("offer")
    await b.send({"type": "offer", "targetPeer": "nobody", "ack": 3})
    nack = await b.next("ack")
    assert (nack["ok"], nack["code"], nack["ack"]) == (False, "unknown-peer", 3)


async def test_a_ws_peer_that_leaves_is_announced(signal_peers: Peers):
    room = unique()
    s = await signal_peers.sio()
    w = await signal_peers.ws()
    await s.announce(room)
    await w.announce(room)
    await w.close()
    assert await s.next("peer-left") == {"peerId": w.id}


BAD_FRAMES = [
    ("not json", "bad-payload"),
    ("[1, 2]", "bad-payload"),
    ('"text"', "bad-payload"),
    ("{}", "bad-payload"),
    ('{"type": 5}', "bad-payload"),
    ('{"type": "dance"}', "unknown-event"),
    ('{"type": "announce"}', "bad-hash"),
    ('{"type": "announce", "hash": 1}', "bad-hash"),
    ('{"type": "offer"}', "bad-target"),
    ('{"type": "answer", "targetPeer": "nobody"}', "unknown-peer"),
    ('{"type": "offer", "targetPeer": "x", "sdp": "' + "z" * 70_000 + '"}', "too-large"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_ws_frames_get_an_error(signal_peers: Peers, frame: str, code: str):
    w = await signal_peers.ws()
    await w.announce(unique())
    await w.send(frame)
    err = await w.next("error")
    assert err["code"] == code
    assert err["message"]
    # The connection goes on.
    await w.send({"type": "announce", "hash": unique()})
    await w.next("peer-list")


@pytest.mark.parametrize("mib", [2, 16])
async def test_a_ws_frame_over_the_hard_limit_closes_that_connection_only(
    signal_peers: Peers, signal_server: SignalProcess, mib: int
):
    room = unique()
    a, b = await signal_peers.ws(), await signal_peers.ws()
    await a.announce(room)
    await b.announce(room)
    big = await signal_peers.ws()
    # The server closes the connection as soon as the frame's header announces more
    # than it reads, often while the client is still writing the rest: then the write
    # fails (connection lost). Either outcome of the write is the server's refusal;
    # 16 MiB makes the race the usual case, so both outcomes are exercised.
    with contextlib.suppress(ConnectionError):
        await big.send("x" * (mib * 1024 * 1024))
    assert big.ws is not None and big._reader is not None
    await asyncio.wait_for(big._reader, WAIT)  # ends once the connection is closed
    assert big.ws.closed
    await b.send({"type": "offer", "targetPeer": a.id})
    await a.next("offer")


# -- raw Socket.IO abuse -----------------------------------------------------------------


async def _raw_socketio(
    url: str, session: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse:
    """An engine.io WebSocket joined to the main namespace, spoken to by hand."""
    ws = await session.ws_connect(
        url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    )
    assert (await ws.receive_str(timeout=WAIT)).startswith("0{")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=WAIT)).startswith("40{")
    return ws


async def _next_event(ws: aiohttp.ClientWebSocketResponse, name: str) -> object:
    while True:
        text = await ws.receive_str(timeout=WAIT)
        if text.startswith("42"):
            event, *args = json.loads(text[2:])
            if event == name:
                return args[0] if args else None


GARBAGE = [
    "42garbage",
    "42[",
    '42["offer"',
    "42{}",
    "42[]",
    "42[1,2]",
    '42[null,{"targetPeer":"x"}]',
    '42["offer",{"targetPeer":"x"},"extra",{}]',
    "4",
    "9",
    "",
    "43",
    "45",
    '451-["offer",{"_placeholder":true,"num":0}]',
    '42/nope,["announce",{"hash":"x"}]',
    '421["announce",{"hash":5}]',
    "2probe",
    "5",
    "40",
    "41",
]


async def test_malformed_socketio_frames_do_not_disturb_other_clients(
    signal_peers: Peers, signal_server: SignalProcess
):
    room = unique()
    a, b = await signal_peers.sio(), await signal_peers.sio("polling")
    await a.announce(room)
    await b.announce(room)
    async with aiohttp.ClientSession() as session:
        for text in GARBAGE:
            vandal = await _raw_socketio(signal_server.url, session)
            await vandal.send_str(text)
            await vandal.send_bytes(b"\x00\xff binary junk")
            await vandal.close()
        # One raw client that keeps misbehaving on one connection, then behaves.
        raw = await _raw_socketio(signal_server.url, session)
        for text in GARBAGE[:8]:
            await raw.send_str(text)
        await raw.send_str('42["offer",{"targetPeer":"nobody"}]')
        assert (await _next_event(raw, "error"))["code"] == "unknown-peer"  # type: ignore[index]
        await raw.close()
    await b.emit("offer", {"targetPeer": a.id, "sdp": "still fine"})
    assert (await a.next("offer"))["sdp"] == "still fine"
    assert await get_json(signal_server.url + "/healthz") == {"ok": True}
    assert signal_server.proc.poll() is None
    # Library complaints are rate-limited NDJSON lines, never raw tracebacks.
    assert "Traceback" not in signal_server.stderr


async def test_long_polling_payload_over_the_size_limit_is_refused(
    signal_server: SignalProcess,
):
    url = signal_server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        async with session.post(url + f"&sid={sid}", data="4" + "x" * (2 * 1024 * 1024)) as r:
            assert r.status >= 400
    assert await get_json(signal_server.url + "/healthz") == {"ok": True}


@pytest.mark.parametrize("kind", ["ws", "socket.io"])
async def test_a_peer_that_stops_reading_is_cut_off_not_waited_for(
    signal_peers: Peers, signal_server: SignalProcess, kind: str
):
    """A peer must not be able to stall the peers that send to it by not reading."""
    room = unique()
    slow = await asyncio.to_thread(_silent_peer, signal_server.port, room, kind)
    try:
        flooder = await signal_peers.sio()
        await asyncio.sleep(0.2)  # let the silent peer's announce land first
        assert slow.peer_id in await flooder.announce(room)
        blob = "x" * 60_000
        # ~9 MB: more than the kernel buffers of both ends plus the server's 1 MiB.
        for _ in range(150):
            await flooder.emit("offer", {"targetPeer": slow.peer_id, "blob": blob})
        assert await flooder.next("peer-left") == {"peerId": slow.peer_id}
        # The flooder itself was never blocked, and is still served.
        assert (await flooder.call("announce", {"hash": unique()}))["ok"] is True
    finally:
        slow.sock.close()


class _SilentPeer:
    def __init__(self, sock: socket.socket, peer_id: str) -> None:
        self.sock = sock
        self.peer_id = peer_id


def _silent_peer(port: int, room: str, kind: str) -> _SilentPeer:
    """A WebSocket client with a tiny receive buffer that announces `room`, then never reads.

    Spoken by hand over a raw socket, since client libraries keep reading in the background.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    path = "/ws" if kind == "ws" else "/socket.io/?EIO=4&transport=websocket"
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head

    def read_frame() -> str:
        nonlocal buf
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
            buf += sock.recv(4096)
        n = buf[1] & 0x7F
        assert n < 126
        text, buf = buf[2 : 2 + n].decode(), buf[2 + n :]
        return text

    def send_frame(text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        sock.sendall(
            bytes([0x81, 0x80 | len(payload)])
            + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )

    if kind == "ws":
        peer_id = json.loads(read_frame())["peerId"]
        send_frame(json.dumps({"type": "announce", "hash": room}))
    else:
        assert read_frame().startswith("0{")
        send_frame("40")
        peer_id = json.loads(read_frame()[2:])["sid"]
        send_frame('42["announce",' + json.dumps({"hash": room}) + "]")
    return _SilentPeer(sock, peer_id)
