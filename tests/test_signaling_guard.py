"""`p2p serve-signal` against abusive or dead clients: rates, caps, tokens, TLS, timeouts.

Every refusal is an ``error {message, code}`` (or Socket.IO's CONNECT_ERROR with
``data.code``) and leaves everyone else served. Each test starts a server with the limits
it is about, small enough to reach quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import socketio

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import WAIT, Peers, SignalProcess, SioPeer, WsPeer, get_json, unique  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *extra: str) -> AsyncIterator[tuple[SignalProcess, Peers]]:
    server = SignalProcess(tmp_path, extra=extra)
    peers = Peers(server.url)
    try:
        yield server, peers
    finally:
        await peers.close()
        server.stop()


# -- rates ------------------------------------------------------------------------------


async def test_a_flood_is_refused_and_everyone_else_is_still_relayed(tmp_path: Path):
    async with serve(tmp_path, "--max-message-rate", "20") as (server, peers):
        room = unique()
        flooder, sink, a, b = [await peers.sio() for _ in range(4)]
        for p in (flooder, sink, a, b):
            await p.announce(room)
        # 1000 offers at once: 5 s of burst (100 events, the announce was one) get
        # through, the rest are refused at the rate the server allows, and the flooder
        # is read no faster than that.
        sent = 1000
        for i in range(sent):
            await flooder.sio.emit("offer", {"targetPeer": sink.id, "i": i})
        err = await flooder.next("error")
        assert err["code"] == "rate-limited" and err["event"] == "offer"
        assert "per second" in err["message"]
        # Meanwhile two other clients keep signalling each other, every message arriving.
        for i in range(20):
            await a.emit("offer", {"targetPeer": b.id, "i": i})
            assert (await b.next("offer"))["i"] == i
            await b.emit("answer", {"targetPeer": a.id, "i": i})
            assert (await a.next("answer"))["i"] == i
        stats = await get_json(server.url + "/stats")
        assert stats["rateLimited"] > 0
        received = sink.inbox.queues["offer"].qsize()
        assert 99 <= received < sent
        # In order, with gaps where offers were refused.
        got = [sink.inbox.queues["offer"].get_nowait()["i"] for _ in range(received)]
        assert got == sorted(got) and got[:99] == list(range(99))


async def test_announces_have_their_own_rate(tmp_path: Path):
    async with serve(tmp_path, "--max-announce-rate", "1") as (_server, peers):
        a = await peers.sio()
        acks = [await a.call("announce", {"hash": unique()}) for _ in range(7)]
        assert [ack["ok"] for ack in acks[:5]] == [True] * 5  # 5 s worth of burst
        refused = [ack for ack in acks[5:] if not ack["ok"]]
        assert refused and refused[0]["code"] == "rate-limited"
        assert (await a.next("error"))["code"] == "rate-limited"
        # Relays are not announces: still fine.
        b = await peers.sio()
        room = unique()
        await b.announce(room)
        assert (await a.call("offer", {"targetPeer": b.id}))["code"] == "unknown-peer"


async def test_ws_frames_are_rate_limited_too(tmp_path: Path):
    async with serve(tmp_path, "--max-message-rate", "2") as (_server, peers):
        w = await peers.ws()
        for i in range(30):
            await w.send({"type": "nonsense", "ack": i})
        codes = {(await w.next("error"))["code"] for _ in range(12)}
        assert codes == {"unknown-event", "rate-limited"}


# -- caps -------------------------------------------------------------------------------


async def test_a_peer_list_names_at_most_the_cap(tmp_path: Path):
    async with serve(tmp_path, "--max-peer-list", "3") as (_server, peers):
        room = unique()
        members = [await peers.ws() for _ in range(6)]
        for m in members:
            await m.announce(room)
        order = [m.id for m in members]
        newcomer = await peers.sio()
        listed = await newcomer.announce(room)
        assert len(listed) == 3
        assert set(listed) <= set(order)
        assert listed == sorted(listed, key=order.index)  # still in join order
        for k, m in enumerate(members):  # but everyone hears of the newcomer
            later = [(await m.next("new-peer"))["peerId"] for _ in range(len(members) - k)]
            assert later == [*order[k + 1 :], newcomer.id]


async def test_rooms_per_connection_are_capped(tmp_path: Path):
    async with serve(tmp_path, "--max-rooms", "2") as (_server, peers):
        a = await peers.sio()
        await a.announce(unique())
        await a.announce(unique())
        await a.emit("announce", {"hash": unique()})
        err = await a.next("error")
        assert (err["code"], err["event"]) == ("too-many-rooms", "announce")


async def test_connections_per_address_are_capped(tmp_path: Path):
    async with serve(tmp_path, "--max-conns-per-ip", "3") as (server, peers):
        first = await peers.sio()
        await peers.sio("polling")
        await peers.ws()
        # A fourth Socket.IO client is refused in the handshake, with a code.
        extra = SioPeer()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await extra.connect(server.url, "websocket")
        refusal = await extra.next("connect_error")
        assert refusal["data"]["code"] == "too-many-connections"
        assert "3 connections" in refusal["message"]
        # A fourth /ws client gets an error frame, then close code 1013 (try again later).
        w = await peers.ws(welcome=False)
        assert (await w.next("error"))["code"] == "too-many-connections"
        assert w._reader is not None
        await asyncio.wait_for(w._reader, WAIT)
        assert w.ws is not None and w.ws.close_code == 1013
        # One leaves: there is room again.
        await first.close()
        for _ in range(100):
            if (await get_json(server.url + "/stats"))["peers"] == 2:
                break
            await asyncio.sleep(0.05)
        assert (await peers.sio()).id
        stats = await get_json(server.url + "/stats")
        assert stats["refused"] == 2


# -- access token -----------------------------------------------------------------------


async def test_a_token_is_required_on_both_transports(tmp_path: Path):
    async with serve(tmp_path, "--token", "s3cret") as (server, peers):
        for auth in (None, {"token": "wrong"}, {"other": "s3cret"}):
            p = SioPeer()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await p.connect(server.url, "websocket", auth=auth)
            refusal = await p.next("connect_error")
            assert refusal["data"]["code"] == "bad-token", auth
            assert "token" in refusal["message"]
        ok = await peers.sio(auth={"token": "s3cret"})
        # Clients that cannot send Socket.IO auth may put it in the URL.
        in_url = SioPeer()
        await in_url.connect(server.url + "?token=s3cret", "polling")
        peers.made.append(in_url)

        for path in ("/ws", "/ws?token=nope"):
            w = await peers.ws(path, welcome=False)
            assert (await w.next("error"))["code"] == "bad-token"
            assert w._reader is not None
            await asyncio.wait_for(w._reader, WAIT)
            assert w.ws is not None and w.ws.close_code == 1008
        w = await peers.ws("/ws?token=s3cret")
        bearer = await peers.ws(headers={"Authorization": "Bearer s3cret"})
        room = unique()
        for p in (ok, in_url, w, bearer):
            await p.announce(room)
        stats = await get_json(server.url + "/stats")
        assert stats["peers"] == 4 and stats["refused"] == 5


# -- TLS --------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2p test signaling")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_serves_https_and_wss(tmp_path: Path):
    cert, key = self_signed(tmp_path)
    server = SignalProcess(tmp_path, extra=("--cert", str(cert), "--key", str(key)), wait=False)
    try:
        listening = server.wait_listening()
        url = listening["url"]
        assert url == f"https://127.0.0.1:{server.port}"
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/healthz", ssl=trusted) as r:
                assert await r.json() == {"ok": True}
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(url + "/healthz")  # not trusted by default
            ws = await s.ws_connect(url.replace("https", "wss") + "/ws", ssl=trusted)
            assert json.loads((await ws.receive()).data)["type"] == "welcome"
            await ws.close()
        # python-socketio over wss (p2p's own client trusting it through SSL_CERT_FILE is
        # in test_signaling_e2e.py).
        client = socketio.AsyncClient(reconnection=False, ssl_verify=False)
        try:
            await client.connect(url, transports=["websocket"], wait_timeout=WAIT)
            assert client.connected
        finally:
            await client.disconnect()
    finally:
        server.stop()


def test_a_bad_certificate_is_a_usage_error(tmp_path: Path):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    server = SignalProcess(tmp_path, extra=("--cert", str(tmp_path / "junk.pem")), wait=False)
    code = server.proc.wait(30)
    server.stop()
    assert code == 2
    assert server.stderr.strip().startswith("p2p: cannot use --cert")


# -- dead clients -----------------------------------------------------------------------


async def test_clients_that_stop_answering_pings_are_removed(tmp_path: Path):
    fast = ("--ping-interval", "0.5", "--ping-timeout", "0.5")
    async with serve(tmp_path, *fast) as (server, peers):
        room = unique()
        watcher = await peers.sio()
        await watcher.announce(room)
        async with aiohttp.ClientSession() as s:
            # A Socket.IO client spoken by hand that joins, announces, then goes silent
            # (as a process that hangs, or a connection whose other end vanished).
            sio_ws = await s.ws_connect(
                server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                autoping=False,
            )
            assert (await sio_ws.receive_str()).startswith("0")
            await sio_ws.send_str("40")
            sid = json.loads((await sio_ws.receive_str())[2:])["sid"]
            await sio_ws.send_str(f'42["announce",{{"hash":"{room}"}}]')
            # A /ws client that never answers WebSocket pings.
            mute = WsPeer()
            await mute.connect(server.url, autoping=False)
            await mute.announce(room)
            gone = {(await watcher.next("peer-left"))["peerId"] for _ in range(2)}
            assert gone == {sid, mute.id}
            await sio_ws.close()
            await mute.close()
        assert await (await peers.sio()).announce(room) == [watcher.id]
