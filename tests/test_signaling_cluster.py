"""Several `p2p serve-signal --redis` nodes acting as one (p2pcli/signaling/cluster.py).

A real redis-server (Debian's, installed by scripts/test-all) runs on a free loopback
port for each test, without persistence, and is stopped after it. The nodes are real
`p2p serve-signal` processes; peers are python-socketio, /ws, Node socket.io-client and
real `p2p seed` / `p2p fetch` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Procs, make_file, need, sha256, wait_port

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import (  # noqa: E402
    JS_DIR,
    P2P,
    Peers,
    SignalProcess,
    free_port,
    get_json,
    unique,
)

pytestmark = pytest.mark.timeout(180)

#: --node-timeout for these tests: a dead node's peers go within this plus one beat.
NODE_TIMEOUT = 4.0


class RedisServer:
    """redis-server on a free loopback port, no persistence; restartable on that port."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def nodes(tmp_path: Path, redis: RedisServer, n: int = 2) -> Iterator[list[SignalProcess]]:
    made = [
        SignalProcess(tmp_path, extra=("--redis", redis.url, "--node-timeout", str(NODE_TIMEOUT)))
        for _ in range(n)
    ]
    try:
        yield made
    finally:
        for node in made:
            node.stop()


async def wait_stats(url: str, pred, what: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            stats = await get_json(url + "/stats")
            if pred(stats):
                return stats
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s; last /stats {stats}")


# -- one swarm over two nodes ------------------------------------------------------------


async def test_peers_on_two_nodes_meet_relay_and_leave(tmp_path: Path, redis: RedisServer):
    with nodes(tmp_path, redis) as (a, b):
        on_a, on_b = Peers(a.url), Peers(b.url)
        try:
            room = unique()
            x = await on_a.sio()
            y = await on_b.ws()
            z = await on_b.sio("polling")
            assert await x.announce(room) == []
            assert await y.announce(room) == [x.id]
            assert (await x.next("new-peer")) == {"peerId": y.id, "hash": room}
            assert await z.announce(room) == [x.id, y.id]
            assert (await x.next("new-peer"))["peerId"] == z.id
            assert (await y.next("new-peer"))["peerId"] == z.id
            # Relays cross nodes, both ways and to either transport, fields kept.
            await x.emit("offer", {"targetPeer": y.id, "sdp": "v=0", "n": [1]})
            assert await y.next("offer") == {
                "type": "offer", "targetPeer": y.id, "sdp": "v=0", "n": [1], "fromPeer": x.id
            }
            await y.send({"type": "answer", "targetPeer": x.id, "sdp": "v=1"})
            assert (await x.next("answer"))["fromPeer"] == y.id
            assert (await x.call("ice-candidate", {"targetPeer": z.id, "candidate": ""})) == {
                "ok": True
            }
            assert (await z.next("ice-candidate"))["fromPeer"] == x.id
            # The relay rule holds across nodes: a stranger on B cannot reach A's peer.
            stranger = await on_b.sio()
            await stranger.announce(unique())
            await stranger.emit("offer", {"targetPeer": x.id})
            assert (await stranger.next("error"))["code"] == "unknown-peer"
            await x.inbox.nothing("offer")
            # Leaving is told on every node, once.
            z_id = z.id
            await z.close()
            assert await x.next("peer-left") == {"peerId": z_id}
            assert await y.next("peer-left") == {"type": "peer-left", "peerId": z_id}
            stats = await wait_stats(b.url, lambda s: s["cluster"]["peers"] == 3, "3 peers")
            assert stats["node"] and stats["peers"] == 2  # y and the stranger
            cluster = stats["cluster"]
            assert (cluster["peers"], cluster["rooms"], cluster["nodes"]) == (3, 2, 2)
            assert cluster["redis"] == "ok"
            assert stats["relayedToNodes"] >= 1 and stats["relayedFromNodes"] >= 2
        finally:
            await on_a.close()
            await on_b.close()


@pytest.mark.skipif(
    not (JS_DIR / "node_modules" / "socket.io-client").is_dir(),
    reason="needs node and `npm ci` in tests/js",
)
async def test_a_browser_style_client_on_b_sees_peers_announced_on_a(
    tmp_path: Path, redis: RedisServer
):
    from test_signaling_node import NodePeer

    need("node")
    with nodes(tmp_path, redis) as (a, b):
        on_a = Peers(a.url)
        room = unique()
        node = None
        try:
            x = await on_a.sio()
            await x.announce(room)
            node = NodePeer(b.url, room, "default")
            node_id = await node.ready()
            assert node.info["peers"] == [x.id]
            assert (await x.next("new-peer"))["peerId"] == node_id
            await x.emit("offer", {"targetPeer": node_id, "sdp": "from A"})
            answer = await x.next("answer")
            assert answer["fromPeer"] == node_id
            assert answer["echo"]["fromPeer"] == x.id and answer["echo"]["sdp"] == "from A"
        finally:
            if node is not None:
                await asyncio.to_thread(node.stop)
            await on_a.close()


def test_seed_on_one_node_fetch_on_the_other(procs: Procs, tmp_path: Path, redis: RedisServer):
    with nodes(tmp_path, redis) as (a, b):
        src = make_file(tmp_path / "movie.bin", 3 * 2**20 + 12345)
        _, link = procs.seed(src, a.url)
        f = procs.fetch(link, "--signal", b.url, "-o", str(tmp_path / "out.bin"))
        assert f.wait(120) == 0, f.stderr[-3000:]
        assert sha256(tmp_path / "out.bin") == sha256(src)


# -- failures -----------------------------------------------------------------------------


async def test_a_killed_node_fails_over_and_its_peers_are_reaped(
    procs: Procs, tmp_path: Path, redis: RedisServer
):
    with nodes(tmp_path, redis) as (a, b):
        src = make_file(tmp_path / "movie.bin", 2 * 2**20)
        seeder, link = procs.seed(src, f"{a.url},{b.url}")
        room = link.split("://")[1].split("?")[0]
        on_a, on_b = Peers(a.url), Peers(b.url)
        try:
            stale = await on_a.sio()
            await stale.announce(room)
            watcher = await on_b.sio()
            before = await watcher.announce(room)
            stale_id = stale.id
            assert stale_id in before and len(before) == 2  # the seeder and `stale`
            old_seeder = next(p for p in before if p != stale_id)

            a.terminate(signal.SIGKILL)
            killed = time.monotonic()
            # A fetcher on B, waiting for peers: the seeder comes over to B and serves it.
            f = procs.fetch(link, "--signal", b.url, "-o", str(tmp_path / "out.bin"),
                            "--timeout", "60")
            # (the fetcher may come and go meanwhile: its peer-left is not the point)
            left: set[str] = set()
            while not {stale_id, old_seeder} <= left:
                left.add((await watcher.next("peer-left", 3 * NODE_TIMEOUT + 20))["peerId"])
            reaped_after = time.monotonic() - killed
            listed = await (await on_b.sio()).announce(room)
            assert stale_id not in listed and old_seeder not in listed
            assert await asyncio.to_thread(f.wait, 120) == 0, f.stderr[-3000:]
            assert sha256(tmp_path / "out.bin") == sha256(src)
            stats = await get_json(b.url + "/stats")
            assert stats["cluster"]["nodes"] == 1
            print(f"node A's peers gone from B {reaped_after:.1f} s after SIGKILL "
                  f"(--node-timeout {NODE_TIMEOUT:g})")
            assert seeder.p.poll() is None
        finally:
            await on_a.close()
            await on_b.close()


async def test_swarms_are_rebuilt_after_redis_restarts_empty(
    procs: Procs, tmp_path: Path, redis: RedisServer
):
    with nodes(tmp_path, redis) as (a, b):
        src = make_file(tmp_path / "movie.bin", 2 * 2**20)
        _, link = procs.seed(src, a.url)
        await wait_stats(b.url, lambda s: s["cluster"]["rooms"] == 1, "the seeder announced")
        redis.kill()
        redis.start()  # same port, nothing in it
        # The nodes notice their rooms are gone, close their clients' connections, and
        # the clients reconnect and announce again.
        await wait_stats(
            b.url, lambda s: s["cluster"]["redis"] == "ok" and s["cluster"]["rooms"] == 1
            and s["cluster"]["nodes"] == 2, "the swarm rebuilt",
        )
        f = procs.fetch(link, "--signal", b.url, "-o", str(tmp_path / "out.bin"))
        assert await asyncio.to_thread(f.wait, 120) == 0, f.stderr[-3000:]
        assert sha256(tmp_path / "out.bin") == sha256(src)


# -- configuration ------------------------------------------------------------------------


def test_an_unreachable_redis_is_a_usage_error(tmp_path: Path):
    server = SignalProcess(
        tmp_path, extra=("--redis", f"redis://127.0.0.1:{free_port()}/0"), wait=False
    )
    code = server.proc.wait(30)
    server.stop()
    assert code == 2, server.stderr
    lines = [line for line in server.stderr.splitlines() if line.startswith("p2p:")]
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], server.stderr


def _without_redis(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`p2p serve-signal ARGS` in a Python where `import redis` fails."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from p2p_cli.main import main\n"
        f"sys.argv = ['p2p', 'serve-signal', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=Path(P2P).parent, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        start_new_session=True,
    )


def test_without_the_redis_package(tmp_path: Path):
    # --redis says what to install...
    p = _without_redis(tmp_path, "--redis", "redis://127.0.0.1:6379/0", "--port", "0")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert "pip install 'p2p[cluster]'" in err.decode()
    # ...and without it the server needs no Redis at all.
    port = free_port()
    p = _without_redis(tmp_path, "--host", "127.0.0.1", "--port", str(port), "--quiet")
    try:
        wait_port(port)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.communicate(timeout=30)
    assert p.returncode == 0
