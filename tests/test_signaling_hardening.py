"""Issue 12's signaling holes, each tested as a class: every name, every transport.

1. No client packet reaches a handler the server registered for itself (connect,
   disconnect, the catch-all...), whatever the name or transport.
2. Every session's send queue is bounded; a long-polling client that never fetches is
   cut off like a WebSocket client that stops reading.
3. An engine.io session counts toward --max-conns-per-ip from its opening, and is
   closed unless it connects to Socket.IO within --connect-timeout.
4. A relayed message addressed to its sender's own id goes to nobody.
5. SIGTERM stops the server in a bounded time with thousands of clients, each told.
6. TURN credentials are never handed to anonymous clients unless the operator says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import (  # noqa: E402
    ROOT,
    Peers,
    RawSio,
    SignalProcess,
    SioPeer,
    WsPeer,
    get_json,
    unique,
)

from p2pcli.signaling.limits import Limits  # noqa: E402
from p2pcli.signaling.schema import RELAY_EVENTS  # noqa: E402
from p2pcli.signaling.server import SignalHub, SignalServer, start_signal_server  # noqa: E402

pytest_plugins = ["signal_helpers"]
pytestmark = pytest.mark.timeout(120)

SIO_TRANSPORTS = ["websocket", "polling"]
ALL_TRANSPORTS = [*SIO_TRANSPORTS, "ws"]


@contextlib.asynccontextmanager
async def in_process(**options: Any) -> AsyncIterator[SignalServer]:
    """The real server in the test's own event loop, so a test can read its state."""
    server = await start_signal_server("127.0.0.1", 0, **options)
    try:
        yield server
    finally:
        await server.close()


# -- 1. reserved and internal event names ------------------------------------------------


def _reserved_names() -> list[str]:
    """Every event name a client must not be able to dispatch to a server handler.

    python-socketio's reserved names, the Socket.IO protocol's (JS server and client),
    engine.io's handler names, the server's own handlers other than the client events,
    the catch-all, and the events only the server sends.
    """
    hub = SignalHub()
    client_events = {"announce", *RELAY_EVENTS}
    own = {str(name) for name in hub.sio.handlers.get("/", {})} - client_events
    return sorted({
        *socketio.AsyncServer.reserved_events,
        "connect", "connect_error", "disconnect", "disconnecting", "newListener",
        "removeListener", "message", "*", *own,
        "peer-list", "new-peer", "peer-left", "error", "ice-config", "welcome", "ack",
    })


RESERVED = _reserved_names()


def _payloads(victim: str) -> list[list[Any]]:
    """Arguments an attacker sends with each name: none, an environ-like dict claiming
    an address (what `connect` reads), that plus auth, another peer's id (what the
    catch-all reads as the sender), a disconnect reason."""
    environ = {"REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": "", "HTTP_HOST": "x"}
    return [[], [environ], [environ, {"token": "x"}], [victim], ["client disconnect"]]


def _state(hub: SignalHub) -> dict[str, Any]:
    """What a replayed connect/disconnect used to change."""
    return {
        "addresses": dict(hub.core.addresses.open),
        "peers": {p: sorted(peer.rooms) for p, peer in hub.rooms.peers.items()},
        "rooms": {r: list(m) for r, m in hub.rooms.rooms.items()},
        "sids": dict(hub._eio_sids),
        "ws": sorted(hub._ws),
        "connects": hub.rooms.stats.connects,
        "sessions": {k: (s.address, s.counted)
                     for k, s in hub.core.sessions.items()},
    }


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
async def test_no_client_event_reaches_a_server_internal_handler(transport: str):
    async with in_process(limits=Limits(max_per_ip=4)) as server:
        hub = server.hub
        room = unique()
        victim = await RawSio(server.url).open()
        attacker_sio: RawSio | None = None
        attacker_ws: WsPeer | None = None
        try:
            await victim.emit("announce", {"hash": room})
            await victim.next_event("peer-list")
            if transport == "ws":
                attacker_ws = await WsPeer().connect(server.url)
                attacker = attacker_ws.id
                await attacker_ws.announce(room)
            else:
                attacker_sio = await RawSio(server.url, transport).open()
                attacker = attacker_sio.sid
                await attacker_sio.emit("announce", {"hash": room})
                await attacker_sio.next_event("peer-list")
            await victim.next_event("new-peer")
            before = _state(hub)
            meters = dict(hub.core.meters)
            victim_tokens = hub.core.meters[victim.sid].messages.tokens

            n = 0
            for name in RESERVED:
                for args in _payloads(victim.sid):
                    n += 1
                    if attacker_ws is not None:
                        frame: dict[str, Any] = {"data": args}
                        if args and isinstance(args[0], dict):
                            frame.update(args[0])
                        await attacker_ws.send({**frame, "type": name, "ack": n})
                    else:
                        assert attacker_sio is not None
                        await attacker_sio.emit(name, *args, ack=n)
            # Each is answered as the unknown event it is, in order, so all were handled.
            for i in range(1, n + 1):
                if attacker_ws is not None:
                    ack = await attacker_ws.next("ack")
                    assert ack["ack"] == i
                else:
                    assert attacker_sio is not None
                    ack = await attacker_sio.ack(i)
                assert ack is not None and ack["ok"] is False, (i, ack)
                assert ack["code"] == "unknown-event", (i, ack)

            # Nothing moved: rooms, per-address counts, sessions, rate meters.
            assert _state(hub) == before
            for peer, meter in meters.items():
                assert hub.core.meters[peer] is meter, peer
            assert hub.core.meters[victim.sid].messages.tokens == victim_tokens
            # The attacker is still known: it is relayed to.
            await victim.emit("offer", {"targetPeer": attacker, "n": 1})
            if attacker_ws is not None:
                assert (await attacker_ws.next("offer"))["fromPeer"] == victim.sid
                await attacker_ws.close()
            else:
                assert attacker_sio is not None
                assert (await attacker_sio.next_event("offer"))["fromPeer"] == victim.sid
                await attacker_sio.close()
            # ... and once it leaves, it is gone: no ghost in the room, no slot held.
            assert await victim.next_event("peer-left") == {"peerId": attacker}
            for _ in range(100):
                if hub.core.addresses.open == {"127.0.0.1": 1}:
                    break
                await asyncio.sleep(0.05)
            assert hub.core.addresses.open == {"127.0.0.1": 1}
            assert hub.rooms.rooms == {room: {victim.sid: None}}
            assert list(hub.rooms.peers) == [victim.sid]
        finally:
            for c in (attacker_sio, attacker_ws, victim):
                if c is not None:
                    await c.close()


# -- 2. bounded send queues --------------------------------------------------------------


@pytest.mark.parametrize("fetches", [0, 1])
async def test_a_polling_peer_that_stops_fetching_is_cut_off(tmp_path: Path, fetches: int):
    """Whether it never GETs once connected, or made one GET (answered) and stopped,
    a long-polling client that keeps answering pings is cut off once its queue is full."""
    server = SignalProcess(tmp_path)
    peers = Peers(server.url)
    victim = RawSio(server.url, "polling")
    try:
        room = unique()
        flooder = await peers.sio()
        await flooder.announce(room)
        await victim.open(read=False, pong_every=0.5)
        await victim.emit("announce", {"hash": room})
        assert (await flooder.next("new-peer"))["peerId"] == victim.sid
        for _ in range(fetches):
            await victim.fetch_once()
        blob = "x" * 32_000
        # 6.4 MB: far past the 1 MiB bound.
        for _ in range(200):
            await flooder.emit("offer", {"targetPeer": victim.sid, "blob": blob})
            if not flooder.inbox.queues["peer-left"].empty():
                break
        assert await flooder.next("peer-left") == {"peerId": victim.sid}
        assert (await get_json(server.url + "/stats"))["peers"] == 1
        # The flooder is still served.
        assert (await flooder.call("announce", {"hash": unique()}))["ok"] is True
    finally:
        await victim.close()
        await peers.close()
        server.stop()


def test_the_queue_counts_what_it_holds():
    from engineio import packet

    from p2pcli.signaling.eio_websocket import SizedQueue

    q = SizedQueue()
    q.put_nowait(packet.Packet(packet.MESSAGE, data="x" * 1000))
    q.put_nowait(packet.Packet(packet.NOOP))
    q.put_nowait(None)
    assert q.size == 1000 + 16 + 16
    q.get_nowait()
    assert q.size == 32
    q.get_nowait()
    q.get_nowait()
    assert q.size == 0


# -- 3. sessions that never connect ------------------------------------------------------


@pytest.mark.parametrize("transport", SIO_TRANSPORTS)
async def test_sessions_without_a_socketio_connection_count_and_are_closed(
    tmp_path: Path, transport: str
):
    server = SignalProcess(tmp_path, extra=("--connect-timeout", "1", "--max-conns-per-ip", "3"))
    made: list[RawSio] = []

    async def raw(**kw: Any) -> RawSio:
        c = RawSio(server.url, transport)
        made.append(c)
        return await c.open(**kw)

    try:
        # Three kinds of session with no Socket.IO connection, all answering pings:
        # never connected; connected then left the namespace; and (below) refused.
        idle = await raw(connect=False)
        left = await raw()
        await left.send("41")
        other = await raw(connect=False)
        # They fill the address's three slots: a real client is refused, with the code.
        refused = SioPeer()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(server.url, "websocket")
        assert (await refused.next("connect_error"))["data"]["code"] == "too-many-connections"
        late = await raw(connect=False)
        await late.send("40")
        error = await late.next_packet(lambda p: p.startswith("44"))
        assert json.loads(error[2:])["data"]["code"] == "too-many-connections"
        # Each is closed, with a goodbye, soon after --connect-timeout.
        for c in (idle, left, other, late):
            await c.wait_closed()
            assert c.clean, c.eio_sid
        # Then the address has its slots back.
        ok = SioPeer()
        await ok.connect(server.url, transport)
        assert ok.id
        await ok.close()
    finally:
        for c in made:
            await c.close()
        server.stop()


# -- 4. messages to oneself --------------------------------------------------------------


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
async def test_a_message_to_ones_own_id_reaches_nobody(signal_peers: Peers, transport: str):
    room = unique()
    other = await signal_peers.sio()
    me: SioPeer | WsPeer = (
        await signal_peers.ws() if transport == "ws" else await signal_peers.sio(transport)
    )
    await other.announce(room)
    await me.announce(room)
    for i, event in enumerate(sorted(RELAY_EVENTS)):
        body = {"targetPeer": me.id, "sdp": "v=0", "candidate": "c"}
        if isinstance(me, WsPeer):
            await me.send({"type": event, **body, "ack": i})
            nack = await me.next("ack")
        else:
            nack = await me.call(event, body)
        assert (nack["ok"], nack["code"]) == (False, "unknown-peer"), event
        err = await me.next("error")
        assert (err["code"], err["event"]) == ("unknown-peer", event)
    # A round trip through the other peer, so anything relayed to me would be here by now.
    if isinstance(me, WsPeer):
        await me.send({"type": "offer", "targetPeer": other.id})
    else:
        await me.emit("offer", {"targetPeer": other.id})
    await other.next("offer")
    await other.emit("answer", {"targetPeer": me.id})
    assert (await me.next("answer"))["fromPeer"] == other.id
    for event in RELAY_EVENTS:
        assert me.inbox.queues[event].empty(), event


# -- 5. stopping with thousands of clients -----------------------------------------------


@pytest.mark.timeout(400)
def test_sigterm_with_thousands_of_clients_tells_each_and_exits_soon():
    """2,000 clients over the three transports (benchmarks/signal_stop.py, which measures
    10,000): every one is told goodbye and the server exits 0 well inside the wait.
    Before the fix, long-polling clients were dropped untold and the wait grew with
    the square of the clients (peer-left to everyone about everyone)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "signal_stop.py"), "--clients", "2000",
         "--workers", "2", "--stop-timeout", "20", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=380,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["failed"] == 0
    assert sum(report["connected"].values()) == 2000
    assert report["exited"] and report["exit_code"] == 0, report
    assert report["clean"] == report["connected"], report
    assert sum(report["dropped"].values()) == 0, report


# -- 6. TURN credentials and anonymous clients -------------------------------------------

TURN_SETUPS = {
    "issued": ["--ice-server", "turn:127.0.0.1:3478", "--turn-secret", "s3cret"],
    "fixed": ["--ice-server", "turn:user:pass@127.0.0.1:3478"],
    "turns-and-stun": ["--ice-server", "stun:127.0.0.1:3478",
                       "--ice-server", "turns:127.0.0.1:5349", "--turn-secret", "s3cret"],
}


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("setup", sorted(TURN_SETUPS))
def test_turn_without_a_token_is_refused_unless_open_relay(
    tmp_path: Path, setup: str, json_mode: bool
):
    mode = ["--json"] if json_mode else []
    base = ["--host", "127.0.0.1", "--port", "0", *mode, *TURN_SETUPS[setup]]
    refused = SignalProcess(tmp_path, args=base, wait=False)
    try:  # a server that does not refuse must still be stopped
        code = refused.proc.wait(30)
    finally:
        refused.stop()
    assert code == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p2p: "), refused.stderr
    assert "--token" in lines[0] and "--open-relay" in lines[0]
    assert "Traceback" not in refused.stderr

    for extra, open_relay in ((["--token", "t"], False), (["--open-relay"], True)):
        server = SignalProcess(tmp_path, args=[*base, *extra], wait=False)
        try:
            if json_mode:
                server.wait_listening()
                ice = next(e for e in server.events() if e["event"] == "ice-servers")
                assert ice["open_relay"] is open_relay
            else:
                for _ in range(200):
                    if "listening on" in server.stderr or server.proc.poll() is not None:
                        break
                    subprocess.run(["sleep", "0.05"])
                assert "listening on" in server.stderr, server.stderr
                assert ("--open-relay" in server.stderr) is open_relay, server.stderr
        finally:
            server.stop()


def test_stun_alone_needs_no_token(tmp_path: Path):
    server = SignalProcess(tmp_path, extra=("--ice-server", "stun:127.0.0.1:3478"))
    try:
        ice = next(e for e in server.events() if e["event"] == "ice-servers")
        assert ice["open_relay"] is False
    finally:
        server.stop()


async def test_tracker_sockets_count_toward_the_per_address_cap():
    """/announce is a connection like /ws and Socket.IO: it takes one of the address's
    --max-per-ip slots while open and frees it when closed, so one address cannot hold
    tracker sockets without bound."""
    import aiohttp

    async with in_process(limits=Limits(max_per_ip=2)) as server:
        url = server.url.replace("http://", "ws://") + "/announce"
        sio = await RawSio(server.url).open()
        try:
            async with aiohttp.ClientSession() as http:
                first = await http.ws_connect(url)
                assert server.hub.core.addresses.open == {"127.0.0.1": 2}
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url)
                assert refused.value.status == 429
                await first.close()
                for _ in range(100):  # the server sees the close a few loop turns later
                    if server.hub.core.addresses.open == {"127.0.0.1": 1}:
                        break
                    await asyncio.sleep(0.01)
                again = await http.ws_connect(url)
                await again.close()
        finally:
            await sio.close()
