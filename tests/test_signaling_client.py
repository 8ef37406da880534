"""The Socket.IO client our seeders and fetchers use (p2pcli/signaling/client.py).

Against real `p2p serve-signal` processes: it fails over to its next URL when its server
dies, announces again, comes back after a server restart on the same port, and says why
it could not connect.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from p2pcli.errors import SignalUnreachable, UsageError
from p2pcli.signaling.client import SignalHandlers, SignalingClient

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import WAIT, SignalProcess, SioPeer, free_port, unique  # noqa: E402

pytestmark = pytest.mark.timeout(90)


class Recorder:
    def __init__(self) -> None:
        self.peer_lists: asyncio.Queue[list[str]] = asyncio.Queue()
        self.handlers = SignalHandlers(peer_list=self.peer_lists.put_nowait)


async def test_fails_over_to_the_next_url_and_announces_again(tmp_path: Path):
    a, b = SignalProcess(tmp_path), SignalProcess(tmp_path)
    rec = Recorder()
    client = SignalingClient([a.url, b.url], rec.handlers, timeout=WAIT)
    watcher = SioPeer()
    try:
        await client.connect()
        assert client.url == a.url
        room = unique()
        await client.announce(room, "me")
        assert await asyncio.wait_for(rec.peer_lists.get(), WAIT) == []
        await watcher.connect(b.url, "websocket")
        await watcher.announce(room)
        a.terminate(signal.SIGKILL)
        # On B, announced again, with a new id: the watcher hears of it...
        new = (await watcher.next("new-peer"))["peerId"]
        assert client.url == b.url and client.sid == new
        # ...and the client got B's peer-list, with the watcher in it.
        assert await asyncio.wait_for(rec.peer_lists.get(), WAIT) == [watcher.id]
    finally:
        await watcher.close()
        await client.close()
        a.stop()
        b.stop()


async def test_comes_back_to_a_server_restarted_on_the_same_port(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--host", "127.0.0.1", "--port", str(port), "--json"]
    first = SignalProcess(tmp_path, args)
    rec = Recorder()
    client = SignalingClient([url], rec.handlers, timeout=WAIT)
    watcher = SioPeer()
    try:
        await client.connect()
        room = unique()
        await client.announce(room, "me")
        await rec.peer_lists.get()
        # A clean stop (SIGTERM) closes the sessions: python-socketio alone would not
        # reconnect after that; this client does.
        assert await asyncio.to_thread(first.terminate) == 0
        second = SignalProcess(tmp_path, args)
        try:
            await watcher.connect(url, "websocket")
            listed = await watcher.announce(room)
            got = await asyncio.wait_for(rec.peer_lists.get(), 30)
            if not got:  # it came back and announced before the watcher did
                assert listed == [client.sid]
            else:
                assert got == [watcher.id]
        finally:
            await watcher.close()
            second.stop()
    finally:
        await client.close()
        first.stop()


async def test_a_refused_token_is_a_usage_error_at_once(tmp_path: Path):
    server = SignalProcess(tmp_path, extra=("--token", "right"))
    try:
        client = SignalingClient([server.url], SignalHandlers(), token="wrong", retries=5)
        with pytest.raises(UsageError) as e:
            await asyncio.wait_for(client.connect(), 5)  # no retries: they would not help
        assert "refused the access token" in e.value.message
        await client.close()
        client = SignalingClient([server.url], SignalHandlers(), token="right")
        await client.connect()
        await client.close()
    finally:
        server.stop()


async def test_nobody_listening_is_unreachable():
    url = f"http://127.0.0.1:{free_port()}"
    client = SignalingClient([url], SignalHandlers(), retries=1)
    with pytest.raises(SignalUnreachable) as e:
        await client.connect()
    assert url in e.value.message and "--signal" in e.value.message
    await client.close()
