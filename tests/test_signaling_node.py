"""The official JavaScript client (Node's socket.io-client v4) against `p2p serve-signal`.

tests/js/signal_scenario.js runs every event and rejection of docs/SIGNALING.md with
three clients; tests/js/signal_echo.js is a Node peer that python-socketio and /ws peers
signal in the same room.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from typing import Any

import pytest

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import JS_DIR, Peers, SignalProcess, unique  # noqa: E402

pytest_plugins = ["signal_helpers"]
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("node") is None or not (JS_DIR / "node_modules" / "socket.io-client").is_dir(),
        reason="needs node and `npm ci` in tests/js",
    ),
]

MODES = ["websocket", "polling", "default"]  # default: polling, then upgrade to WebSocket

EXPECTED_CHECKS = {
    "announce: peer-list and new-peer",
    "offer: reaches the target only, fields kept, fromPeer stamped",
    "answer: reaches the target only, fields kept, fromPeer stamped",
    "ice-candidate: reaches the target only, fields kept, fromPeer stamped",
    "a burst of 40 relays arrives whole and in order",
    "a stranger cannot message a peer it never met",
    "bad announce -> error bad-hash",
    "bad announce -> error bad-payload",
    "bad offer -> error bad-target",
    "bad offer -> error unknown-peer",
    "bad answer -> error bad-payload",
    "bad ice-candidate -> error too-large",
    "acknowledgements",
    "peer-left when a peer disconnects",
}


@pytest.mark.parametrize("mode", MODES)
def test_socketio_client_v4_passes_every_event(signal_server: SignalProcess, mode: str):
    run = subprocess.run(
        ["node", "signal_scenario.js", signal_server.url, mode],
        cwd=JS_DIR, capture_output=True, text=True, timeout=75,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    assert run.returncode == 0 and result.get("ok"), (result, run.stderr[-2000:])
    assert result["transport"] == ("polling" if mode == "polling" else "websocket")
    assert set(result["checks"]) == EXPECTED_CHECKS


class NodePeer:
    """tests/js/signal_echo.js as a process."""

    def __init__(self, url: str, room: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            ["node", "signal_echo.js", url, room, mode],
            cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )

    async def ready(self) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 20)
        info: dict[str, Any] = json.loads(line)
        assert "id" in info, info
        self.info = info  # {"id", "peers": its peer-list}
        return info["id"]

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.mark.parametrize("mode", MODES)
async def test_node_python_and_ws_peers_signal_each_other(signal_peers: Peers, mode: str):
    room = unique()
    node = NodePeer(signal_peers.url, room, mode)
    try:
        node_id = await node.ready()
        py = await signal_peers.sio("polling" if mode == "polling" else "websocket")
        ws = await signal_peers.ws()
        assert await py.announce(room) == [node_id]
        assert await ws.announce(room) == [node_id, py.id]

        await py.emit("offer", {"targetPeer": node_id, "sdp": "from python"})
        answer = await py.next("answer")
        assert answer["fromPeer"] == node_id
        assert answer["echo"] == {"targetPeer": node_id, "sdp": "from python", "fromPeer": py.id}

        await ws.send({"type": "offer", "targetPeer": node_id, "sdp": "from ws"})
        answer = await ws.next("answer")
        assert answer["fromPeer"] == node_id
        assert answer["echo"]["fromPeer"] == ws.id
        assert answer["echo"]["sdp"] == "from ws"
    finally:
        await asyncio.to_thread(node.stop)
