"""Signaling server load test: N clients in K rooms relaying offer/answer pairs.

    python benchmarks/signal_load.py                      # 1000 clients, 100 rooms, 1000 msg/s
    python benchmarks/signal_load.py --saturate           # as fast as the server goes
    python benchmarks/signal_load.py --server asgi        # the same hub on uvicorn (*)
    python benchmarks/signal_load.py --server node-ref    # the design note's Node server
    python benchmarks/signal_load.py --server-cmd 'node x.js {port}'   # any server
    python benchmarks/signal_load.py --url http://127.0.0.1:8080 --server-pid 1234
    python benchmarks/signal_load.py --flood              # plus one client flooding
    python benchmarks/signal_load.py --nodes 2            # 2 serve-signal nodes + Redis

    (*) needs `pip install uvicorn httptools websockets`, which p2p itself does not use;
    node-ref needs `npm ci` in tests/js (it uses the `socket.io` package there).

Everything runs on loopback, in processes this script starts and always stops, for a
bounded time. The clients are raw engine.io-over-WebSocket connections (``40`` to join
the namespace, ``42["event",{...}]`` for events) spread over a few worker processes, so
that the load generator costs far less CPU than the server it measures.

Phases: connect + announce (client i joins room i mod K and learns its room's members
from peer-list / new-peer), then relay: a client sends ``offer`` to a random member of
its room, the member answers with ``answer``; both count as relayed messages. Every
message carries its send time (CLOCK_MONOTONIC is shared by the processes of one
machine), so the receiver records the one-way relay latency.

``--flood`` adds one more client, in a process of its own, that sends offers to a member
of its room as fast as its socket lets it, from the start of the relay phase to its
end: the latency of everyone else, compared with a run without it, says whether one
abusive client slows the others down (the server's rate limit is what should prevent
it). ``--nodes N`` starts N ``serve-signal --redis`` nodes sharing a redis-server
(started here too, on a free loopback port, without persistence); client i joins room
i mod K on node (i div K) mod N, so every room spans the nodes and (N-1)/N of the
relays cross nodes. CPU and RSS are then the sum over the nodes
and Redis.

Open-loop mode (default) sends offers on a fixed schedule so the relayed rate is
``--rate``; ``--saturate`` keeps ``--inflight`` offers outstanding per client instead,
to measure the most the server relays per CPU-second. Server CPU time and peak RSS come
from psutil on the server's process (and its children).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"


# --------------------------------------------------------------------------------------
# Worker process: a few hundred raw Socket.IO clients on one event loop


@dataclass
class _Client:
    index: int
    room: str
    ws: Any = None
    sid: str = ""
    peers: list[str] = field(default_factory=list)
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    joined: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _WorkerStats:
    offers_sent: int = 0
    offers_received: int = 0
    answers_received: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class _Worker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.stats = _WorkerStats()
        self.recording = False
        self.sending = False
        self.saturate = cfg["saturate"]
        self.plain = cfg["transport"] == "ws"  # /ws JSON frames instead of Socket.IO
        self.pad = "x" * cfg["payload_bytes"]
        self.tasks: set[asyncio.Task[Any]] = set()
        import orjson

        self.dumps = orjson.dumps
        self.loads = orjson.loads

    def offer(self, c: _Client) -> None:
        if not c.peers or c.ws is None or c.ws.closed:
            return
        target = random.choice(c.peers)
        self.stats.offers_sent += 1
        self.spawn(c.ws.send_str(self.frame("offer", target, time.monotonic())))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def frame(self, event: str, target: str, t: float) -> str:
        if self.plain:
            body = {"type": event, "targetPeer": target, "t": t, "sdp": self.pad}
            return self.dumps(body).decode()
        body = {"targetPeer": target, "t": t, "sdp": self.pad}
        return f'42["{event}",{self.dumps(body).decode()}]'

    def decode(self, data: str) -> tuple[str, Any] | None:
        """(event, payload) of a server frame, or None for engine.io control frames."""
        if self.plain:
            payload = self.loads(data)
            return payload["type"], payload
        if data.startswith("42"):
            event, payload = self.loads(data[2:])[:2]
            return event, payload
        return None

    async def reader(self, c: _Client) -> None:
        from aiohttp import WSMsgType

        loads = self.loads
        stats = self.stats
        async for msg in c.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data: str = msg.data
            decoded = self.decode(data)
            if decoded is not None:
                event, payload = decoded
                if event == "offer" and "flood" in payload:
                    continue  # from --flood's client: not part of the measured traffic
                if event == "offer":
                    now = time.monotonic()
                    if self.recording:
                        stats.offers_received += 1
                        stats.latencies.append(now - payload["t"])
                    await c.ws.send_str(self.frame("answer", payload["fromPeer"], now))
                elif event == "answer":
                    if self.recording:
                        stats.answers_received += 1
                        stats.latencies.append(time.monotonic() - payload["t"])
                    if self.saturate and self.sending:
                        self.offer(c)
                elif event == "peer-list":
                    c.peers.extend(p for p in payload["peers"] if p not in c.peers)
                    c.announced.set()
                elif event == "new-peer":
                    if payload["peerId"] not in c.peers:
                        c.peers.append(payload["peerId"])
                elif event == "peer-left":
                    with contextlib.suppress(ValueError):
                        c.peers.remove(payload["peerId"])
                elif event == "error":
                    stats.errors += 1
                elif event == "welcome":  # /ws: our id; announce right away
                    c.sid = payload["peerId"]
                    c.joined.set()
            elif data == "2":
                await c.ws.send_str("3")
            elif data.startswith("40"):
                c.sid = loads(data[2:])["sid"]
                c.joined.set()
            elif data.startswith("0"):
                await c.ws.send_str("40")

    async def connect(self, session: Any, c: _Client, sem: asyncio.Semaphore) -> None:
        urls = self.cfg["urls"]
        # Room i mod K; node (i div K) mod N: each room's members alternate between the
        # nodes, so about (N-1)/N of the relays cross nodes.
        node = (c.index // self.cfg["rooms"]) % len(urls)
        url = urls[node].replace("http", "ws", 1)
        url += "/ws" if self.plain else "/socket.io/?EIO=4&transport=websocket"
        async with sem:
            # Browsers and socket.io-client offer permessage-deflate; so do we, unless told
            # not to, so a server that accepts it pays for it here as it would in use.
            c.ws = await session.ws_connect(
                url, autoping=False, max_msg_size=0, compress=15 if self.cfg["deflate"] else 0
            )
            self.spawn(self.reader(c))
            await c.joined.wait()
            body = {"hash": c.room, "peerId": f"bench-{c.index}"}
            if self.plain:
                await c.ws.send_str(self.dumps({"type": "announce", **body}).decode())
            else:
                await c.ws.send_str(f'42["announce",{self.dumps(body).decode()}]')
            await c.announced.wait()

    async def run(self, conn: Any) -> None:
        import aiohttp

        cfg = self.cfg
        clients = [
            _Client(i, f"room-{i % cfg['rooms']:05d}")
            for i in range(cfg["worker"], cfg["clients"], cfg["workers"])
        ]
        loop = asyncio.get_running_loop()

        async def recv() -> Any:
            return await loop.run_in_executor(None, conn.recv)

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await recv() == "connect"
            sem = asyncio.Semaphore(cfg["connect_concurrency"])
            started = time.monotonic()
            await asyncio.gather(*(self.connect(session, c, sem) for c in clients))
            conn.send(("connected", time.monotonic() - started))

            msg = await recv()
            assert msg[0] == "relay"
            start_at, duration = msg[1], msg[2]
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            self.recording = self.sending = True
            end = start_at + duration
            if self.saturate:
                for _ in range(cfg["inflight"]):
                    for c in clients:
                        self.offer(c)
                await asyncio.sleep(max(0.0, end - time.monotonic()))
            else:
                # Offers + answers = rate; this worker's share of the offers.
                per_s = cfg["rate"] / 2 / cfg["workers"]
                sent = 0
                i = 0
                while (now := time.monotonic()) < end:
                    due = int((now - start_at) * per_s) - sent
                    for _ in range(due):
                        self.offer(clients[i % len(clients)])
                        i += 7  # stride so consecutive offers come from different rooms
                        sent += 1
                    await asyncio.sleep(0.002)
            self.sending = False
            await asyncio.sleep(cfg["drain"])
            self.recording = False
            s = self.stats
            conn.send(
                (
                    "done",
                    {
                        "offers_sent": s.offers_sent,
                        "offers_received": s.offers_received,
                        "answers_received": s.answers_received,
                        "errors": s.errors,
                        "latencies": s.latencies,
                    },
                )
            )
            assert await recv() == "close"
            await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None))


def _worker_main(cfg: dict[str, Any], conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        import uvloop

        uvloop.run(_Worker(cfg).run(conn))
    except ImportError:
        asyncio.run(_Worker(cfg).run(conn))


async def _flood(cfg: dict[str, Any], conn: Any) -> None:
    """One client that joins room 0 and sends offers to a member as fast as it can."""
    import aiohttp
    import orjson

    loop = asyncio.get_running_loop()
    url = cfg["urls"][0].replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    counts = {"sent": 0, "refused": 0}
    peers: list[str] = []
    joined = asyncio.Event()
    listed = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, autoping=False, max_msg_size=0)

        async def reader() -> None:
            async for msg in ws:
                data = msg.data
                if not isinstance(data, str):
                    continue
                if data == "2":
                    await ws.send_str("3")
                elif data.startswith("0"):
                    await ws.send_str("40")
                elif data.startswith("40"):
                    joined.set()
                elif data.startswith('42["peer-list"'):
                    peers.extend(orjson.loads(data[2:])[1]["peers"])
                    listed.set()
                elif data.startswith('42["new-peer"'):
                    peers.append(orjson.loads(data[2:])[1]["peerId"])
                elif data.startswith('42["error"'):
                    counts["refused"] += 1

        read = asyncio.ensure_future(reader())
        await joined.wait()
        await ws.send_str('42["announce",{"hash":"room-00000"}]')
        await listed.wait()
        conn.send("ready")
        start_at, duration = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        assert peers, "nobody else in room-00000"
        frame = '42["offer",' + orjson.dumps(
            {"targetPeer": peers[0], "flood": 1, "sdp": "f" * cfg["payload_bytes"]}
        ).decode() + "]"
        end = start_at + duration
        while time.monotonic() < end:
            # send_str waits for the socket to drain: the server's pace is the flood's.
            for _ in range(64):
                await ws.send_str(frame)
            counts["sent"] += 64
        await asyncio.sleep(cfg["drain"])
        conn.send(("done", counts))
        read.cancel()
        await ws.close()


def _flood_main(cfg: dict[str, Any], conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.run(_flood(cfg, conn))
    except ImportError:
        asyncio.run(_flood(cfg, conn))


# --------------------------------------------------------------------------------------
# Parent: start the server, drive the workers, measure the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


SERVERS = {
    # The real CLI, as users run it.
    # Every client comes from 127.0.0.1, so no per-address cap; the rate limits stay.
    "aiohttp": [sys.executable, "-m", "p2p_cli.main", "serve-signal", "--host", "127.0.0.1",
                "--port", "{port}", "--quiet", "--max-conns-per-ip", "0"],
    # The same hub on aiohttp with engine.io's stock WebSocket I/O (no FastSocket).
    "aiohttp-plain": [sys.executable, str(ROOT / "benchmarks" / "signal_plain_server.py"),
                      "{port}"],
    # The same hub served by uvicorn through python-socketio's ASGI app (stock I/O).
    "asgi": [sys.executable, str(ROOT / "benchmarks" / "signal_asgi_server.py"), "{port}"],
    # The design note's "Opción 1" on Node (needs `socket.io` in tests/js).
    "node-ref": ["node", str(ROOT / "benchmarks" / "signal_node_reference.js"), "{port}"],
    # The reference transcribed to python-socketio: the "straightforward" baseline.
    "py-ref": [sys.executable, str(ROOT / "tests" / "helpers" / "reference_signal_server.py"),
               "{port}"],
}


class _Sampler(threading.Thread):
    """Polls the server's CPU time and RSS (process tree) while the benchmark runs."""

    def __init__(self, *pids: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak_rss = 0
        self.stop_event = threading.Event()

    def tree(self) -> list[Any]:
        import psutil

        procs = list(self.procs)
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                procs += proc.children(recursive=True)
        return procs

    def cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def run(self) -> None:
        import psutil

        while not self.stop_event.wait(0.1):
            rss = 0
            for p in self.tree():
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _server_stats(url: str) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/stats", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


def _start(cmd: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["NODE_PATH"] = str(NODE_MODULES)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=None, start_new_session=True,
    )
    wait_port(port, proc)
    return proc


def run(args: argparse.Namespace) -> dict[str, Any]:
    servers: list[subprocess.Popen] = []
    workers: list[Any] = []
    conns: list[Any] = []
    sampler: _Sampler | None = None
    flooder: Any = None
    flood_conn: Any = None
    try:
        if args.url:
            urls = [args.url.rstrip("/")]
            pids = [args.server_pid] if args.server_pid else []
        else:
            template = shlex.split(args.server_cmd) if args.server_cmd else SERVERS[args.server]
            extra: list[str] = []
            if args.nodes > 1:
                redis_port = free_port()
                servers.append(_start(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                    redis_port,
                ))
                extra = ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
            urls = []
            for _ in range(args.nodes):
                port = free_port()
                cmd = [part.replace("{port}", str(port)) for part in template] + extra
                servers.append(_start(cmd, port))
                urls.append(f"http://127.0.0.1:{port}")
            pids = [s.pid for s in servers]
        url = urls[0]
        for u in urls:
            if not u.startswith(("http://127.", "http://localhost", "http://[::1]")):
                raise SystemExit("signal_load only targets loopback servers")
        sampler = _Sampler(*pids) if pids else None

        ctx = mp.get_context("spawn")
        cfg = {
            "urls": urls, "clients": args.clients, "rooms": args.rooms, "workers": args.workers,
            "rate": args.rate, "saturate": args.saturate, "inflight": args.inflight,
            "payload_bytes": args.payload_bytes, "drain": 1.0,
            "connect_concurrency": args.connect_concurrency, "deflate": not args.no_deflate,
            "transport": args.transport,
        }
        for w in range(args.workers):
            parent_conn, child_conn = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=({**cfg, "worker": w}, child_conn),
                            daemon=True)
            p.start()
            workers.append(p)
            conns.append(parent_conn)
        if args.flood:
            flood_conn, child_conn = ctx.Pipe()
            flooder = ctx.Process(target=_flood_main, args=({**cfg, "worker": -1}, child_conn),
                                  daemon=True)
            flooder.start()
        if sampler:
            sampler.start()

        def gather(what: str, timeout: float) -> list[Any]:
            out = []
            deadline = time.monotonic() + timeout
            for c in conns:
                if not c.poll(max(0.0, deadline - time.monotonic())):
                    raise SystemExit(f"workers did not report {what!r} within {timeout:.0f}s")
                msg = c.recv()
                assert msg[0] == what, msg
                out.append(msg[1])
            return out

        # This machine may be shared: record how busy it was, to read the figures by.
        load_before = os.getloadavg()[0]
        cpu0 = sampler.cpu() if sampler else 0.0
        t0 = time.monotonic()
        for c in conns:
            c.send("connect")
        gather("connected", args.connect_timeout)
        connect_s = time.monotonic() - t0
        cpu1 = sampler.cpu() if sampler else 0.0
        stats_before = _server_stats(url)
        nodes_before = [_server_stats(u) for u in urls]

        if flooder is not None:
            if not flood_conn.poll(args.connect_timeout):
                raise SystemExit("the flooding client did not connect")
            assert flood_conn.recv() == "ready"
        start_at = time.monotonic() + 0.5
        for c in conns:
            c.send(("relay", start_at, args.duration))
        if flooder is not None:
            flood_conn.send((start_at, args.duration))
        cpu2_wait = start_at - time.monotonic()
        time.sleep(max(0.0, cpu2_wait))
        cpu2 = sampler.cpu() if sampler else 0.0
        results = gather("done", args.duration + 30)
        # Workers stop sending at the deadline and then drain for a second; the server's
        # CPU for those messages is in the window too, and so is the idle second.
        elapsed = time.monotonic() - start_at
        cpu3 = sampler.cpu() if sampler else 0.0
        stats_after = _server_stats(url)
        flood: dict[str, Any] | None = None
        if flooder is not None and flood_conn.poll(30):
            flood = flood_conn.recv()[1]
        for c in conns:
            c.send("close")

        latencies = sorted(x for r in results for x in r["latencies"])
        received = sum(r["offers_received"] + r["answers_received"] for r in results)
        sent_offers = sum(r["offers_sent"] for r in results)
        server_relayed = None
        if stats_before and stats_after and "relayed" in stats_after:
            server_relayed = stats_after["relayed"] - stats_before["relayed"]
        relay_cpu = cpu3 - cpu2
        if len(urls) > 1 and server_relayed is not None:
            # Each node counts what its own clients sent: add them up.
            after = [(_server_stats(u) or {}).get("relayed", 0) for u in urls]
            server_relayed = sum(after) - sum((b or {}).get("relayed", 0) for b in nodes_before)
        report = {
            "server": args.url or args.server_cmd or args.server,
            "nodes": len(urls),
            "flood": flood,
            "mode": "saturate" if args.saturate else f"rate {args.rate:g}/s",
            "transport": args.transport,
            "clients": args.clients, "rooms": args.rooms, "workers": args.workers,
            "connect_announce_s": round(connect_s, 3),
            "connect_cpu_s": round(cpu1 - cpu0, 3) if sampler else None,
            "duration_s": args.duration,
            "relayed_received": received,
            "relayed_by_server": server_relayed,
            "offers_sent": sent_offers,
            "errors": sum(r["errors"] for r in results),
            "relayed_per_s": round(received / args.duration, 1),
            "latency_ms": {
                "p50": round(_percentile(latencies, 0.50) * 1000, 2),
                "p95": round(_percentile(latencies, 0.95) * 1000, 2),
                "p99": round(_percentile(latencies, 0.99) * 1000, 2),
                "max": round(latencies[-1] * 1000, 2) if latencies else None,
            },
            "server_cpu_s": round(relay_cpu, 3) if sampler else None,
            "server_cpu_util": round(relay_cpu / elapsed, 3) if sampler else None,
            "relayed_per_cpu_s": round(received / relay_cpu) if sampler and relay_cpu else None,
            "server_peak_rss_mb": round(sampler.peak_rss / 2**20, 1) if sampler else None,
            "loadavg_1min_before": round(load_before, 2),
        }
        # Let the workers close their sockets before the server goes.
        for p in workers:
            p.join(10)
        return report
    finally:
        if sampler:
            sampler.stop_event.set()
        for p in workers:
            if p.is_alive():
                p.terminate()
                p.join(5)
        if flooder is not None and flooder.is_alive():
            flooder.terminate()
            flooder.join(5)
        for server in reversed(servers):  # nodes first, then Redis
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    ap.add_argument("--rooms", type=int, default=100, help="rooms they spread over (100)")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="relayed messages per second, offers + answers (1000)")
    ap.add_argument("--duration", type=float, default=10.0, help="relay phase seconds (10)")
    ap.add_argument("--saturate", action="store_true",
                    help="send as fast as answers come back instead of at --rate")
    ap.add_argument("--inflight", type=int, default=1,
                    help="with --saturate: outstanding offers per client (1)")
    ap.add_argument("--payload-bytes", type=int, default=200,
                    help="size of the fake SDP in every message (200)")
    ap.add_argument("--transport", choices=["socket.io", "ws"], default="socket.io",
                    help="clients speak Socket.IO (default) or /ws JSON frames")
    ap.add_argument("--no-deflate", action="store_true",
                    help="do not offer permessage-deflate (browsers and Node clients do)")
    ap.add_argument("--workers", type=int,
                    help="load generator processes (default 1, or 2 with --saturate)")
    ap.add_argument("--connect-concurrency", type=int, default=64,
                    help="connections each worker opens at once (64)")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--server", choices=sorted(SERVERS), default="aiohttp",
                    help="which server to start (default: p2p serve-signal)")
    ap.add_argument("--server-cmd", help="start this instead; {port} is replaced")
    ap.add_argument("--nodes", type=int, default=1,
                    help="start this many server nodes sharing a redis-server (--redis)")
    ap.add_argument("--flood", action="store_true",
                    help="add one client that floods the server during the relay phase")
    ap.add_argument("--url", help="use a running server at this loopback URL instead")
    ap.add_argument("--server-pid", type=int, help="with --url: its pid, to measure CPU/RSS")
    ap.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = ap.parse_args()
    if args.workers is None:
        args.workers = 2 if args.saturate else 1
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return
    lat = report["latency_ms"]
    print(f"server                {report['server']} x {report['nodes']} node(s)  "
          f"({report['mode']}, {report['transport']} clients)")
    print(f"clients / rooms       {report['clients']} / {report['rooms']}")
    print(f"connect + announce    {report['connect_announce_s']} s "
          f"(server CPU {report['connect_cpu_s']} s)")
    print(f"relayed               {report['relayed_received']} in {report['duration_s']} s "
          f"= {report['relayed_per_s']} msg/s (server counted {report['relayed_by_server']}, "
          f"errors {report['errors']})")
    print(f"latency ms            p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  "
          f"max {lat['max']}")
    print(f"server CPU            {report['server_cpu_s']} s "
          f"({report['server_cpu_util']} of a core), peak RSS {report['server_peak_rss_mb']} MB")
    print(f"relayed per CPU-s     {report['relayed_per_cpu_s']}")
    if report["flood"] is not None:
        f = report["flood"]
        print(f"flooding client       sent {f['sent']} offers in {report['duration_s']} s, "
              f"{f['refused']} refused (error rate-limited)")
    print(f"machine load before   {report['loadavg_1min_before']} (1-min load average)")


if __name__ == "__main__":
    main()
