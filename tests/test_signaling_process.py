"""`p2p serve-signal` as a command: options, output, origins, and stopping cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest
import socketio

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import (  # noqa: E402
    P2P,
    WAIT,
    SignalProcess,
    SioPeer,
    WsPeer,
    free_port,
    get_json,
    unique,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_disconnects_everyone_and_exits_0(tmp_path: Path, sig: int):
    server = SignalProcess(tmp_path)
    room = unique()
    disconnected = asyncio.Event()
    a = SioPeer()
    a.sio.on("disconnect", lambda *reason: disconnected.set())
    b, w = SioPeer(), WsPeer()
    try:
        await a.connect(server.url, "websocket")
        await b.connect(server.url, "polling")
        await w.connect(server.url)
        for p in (a, b, w):
            await p.announce(room)
        code = await asyncio.to_thread(server.terminate, sig)
        assert code == 0, server.stderr
        await asyncio.wait_for(disconnected.wait(), WAIT)
        assert w.ws is not None
        await asyncio.wait_for(w._reader, WAIT)  # type: ignore[arg-type]
        assert w.ws.closed
    finally:
        for p in (a, b, w):
            await p.close()
        server.stop()
    kinds = [e["event"] for e in server.events()]
    assert kinds[0] == "listening"
    assert kinds[-2:] == ["stopping", "stopped"]
    stopping = server.events()[-2]
    assert stopping["stats"]["peers"] == 3
    assert "Traceback" not in server.stderr
    assert server.stdout == ""


async def test_json_mode_reports_where_it_listens(tmp_path: Path):
    server = SignalProcess(tmp_path)
    try:
        listening = server.wait_listening()
        assert listening["url"] == server.url
        assert listening["port"] == server.port
        assert listening["host"] == "127.0.0.1"
    finally:
        assert server.terminate() == 0


def test_text_mode_prints_the_url_on_stderr_and_nothing_on_stdout(tmp_path: Path):
    server = SignalProcess(tmp_path, ["--host", "127.0.0.1", "--port", "0"], wait=False)
    try:
        for _ in range(200):
            if "listening on" in server.stderr:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert "listening on http://127.0.0.1:" in server.stderr
    finally:
        assert server.terminate() == 0
    assert server.stdout == ""
    assert "stopping" in server.stderr


def test_quiet_mode_prints_nothing(tmp_path: Path):
    port = free_port()
    server = SignalProcess(
        tmp_path, ["--host", "127.0.0.1", "--port", str(port), "--quiet"], wait=False
    )
    # Up (and its signal handlers installed) once it answers; a loaded machine is slow.
    for _ in range(400):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        asyncio.run(asyncio.sleep(0.05))
    assert server.terminate() == 0
    assert server.stderr == ""
    assert server.stdout == ""


async def test_port_zero_picks_a_free_port(tmp_path: Path):
    server = SignalProcess(tmp_path, ["--host", "127.0.0.1", "--port", "0", "--json"])
    try:
        listening = server.wait_listening()
        assert listening["port"] > 0
        assert await get_json(listening["url"] + "/healthz") == {"ok": True}
    finally:
        assert server.terminate() == 0


async def test_port_and_host_come_from_the_environment(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "P2P_SIGNAL_HOST": "127.0.0.1"}
    server = SignalProcess(tmp_path, ["--json"], env=env)
    try:
        listening = server.wait_listening()
        assert (listening["host"], listening["port"]) == ("127.0.0.1", port)
        assert await get_json(f"http://127.0.0.1:{port}/healthz") == {"ok": True}
    finally:
        assert server.terminate() == 0


def test_a_busy_port_is_a_one_line_usage_error(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = SignalProcess(tmp_path, ["--host", "127.0.0.1", "--port", str(port)],
                               wait=False)
        code = server.proc.wait(30)
        server.stop()
    assert code == 2
    lines = server.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("p2p: cannot listen on 127.0.0.1:")
    assert "--port" in lines[0]


def test_help_documents_every_option():
    out = subprocess.run([P2P, "serve-signal", "--help"], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0
    options = (
        "--host", "--port", "--cors-origin", "--token", "--cert", "--key", "--redis",
        "--node-timeout", "--max-message-rate", "--max-announce-rate", "--max-rooms",
        "--max-peer-list", "--max-conns-per-ip", "--ping-interval", "--ping-timeout",
        "--quiet", "--json",
    )
    for option in options:
        assert option in out.stdout
    for env in ("PORT", "P2P_SIGNAL_HOST", "P2P_CORS_ORIGINS", "P2P_TOKEN", "P2P_REDIS_URL"):
        assert env in out.stdout


# -- origins ----------------------------------------------------------------------------


@pytest.fixture
def strict_server(tmp_path: Path):
    server = SignalProcess(
        tmp_path,
        extra=("--cors-origin", "https://good.example", "--cors-origin", "http://also.ok"),
    )
    try:
        yield server
    finally:
        server.stop()


async def _handshake(url: str, origin: str | None) -> aiohttp.ClientResponse:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as s, s.get(
        url + "/socket.io/?EIO=4&transport=polling", headers=headers
    ) as r:
        await r.read()
        return r


async def test_cors_origins_restrict_socketio(strict_server: SignalProcess):
    ok = await _handshake(strict_server.url, "https://good.example")
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert (await _handshake(strict_server.url, "http://also.ok")).status == 200
    assert (await _handshake(strict_server.url, "https://evil.example")).status == 400
    # Non-browser clients send no Origin; they are not the ones CORS protects against.
    assert (await _handshake(strict_server.url, None)).status == 200


async def test_cors_origins_restrict_ws(strict_server: SignalProcess):
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(
                strict_server.url.replace("http", "ws") + "/ws",
                headers={"Origin": "https://evil.example"},
            )
        assert refused.value.status == 403
        ws = await s.ws_connect(
            strict_server.url.replace("http", "ws") + "/ws",
            headers={"Origin": "https://good.example"},
        )
        assert (await ws.receive_json(timeout=WAIT))["type"] == "welcome"
        await ws.close()


async def test_any_origin_by_default(tmp_path: Path):
    server = SignalProcess(tmp_path)
    try:
        r = await _handshake(server.url, "https://anywhere.example")
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"
        async with aiohttp.ClientSession() as s, s.get(
            server.url + "/stats", headers={"Origin": "https://anywhere.example"}
        ) as stats:
            assert stats.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"
    finally:
        assert server.terminate() == 0


async def test_socketio_client_with_auth_is_accepted(tmp_path: Path):
    """Our client sends {"token": ...} as Socket.IO auth; this server needs none."""
    server = SignalProcess(tmp_path)
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(server.url, auth={"token": "t"}, transports=["websocket"],
                             wait_timeout=WAIT)
        assert client.connected
    finally:
        await client.disconnect()
        server.stop()
