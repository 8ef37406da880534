"""How long `p2p serve-signal` takes to stop on SIGTERM with N clients connected.

    python benchmarks/signal_stop.py                      # 10,000 clients in 100 rooms
    python benchmarks/signal_stop.py --clients 2000 --json
    python benchmarks/signal_stop.py --url http://127.0.0.1:8080 --server-pid 1234

Starts the real CLI on a free loopback port (or uses a running server), connects raw
clients from a few worker processes (Socket.IO over WebSocket, plain /ws, and Socket.IO
long-polling, in the proportions of ``--mix``), has each announce room i mod K, then
sends SIGTERM and reports:

- ``stop_seconds``: from SIGTERM to the server's exit (``--stop-timeout`` caps the wait;
  past it the server is killed and ``exited`` is false);
- ``clean``: clients that were told goodbye (a WebSocket close frame, or engine.io's
  CLOSE packet on long-polling) rather than seeing their connection drop, per transport.

The clients are raw engine.io/Socket.IO text frames over aiohttp (``0{..}``, ``40``,
``42["announce",..]``, answering ``2`` with ``3``), so thousands cost the load generator
little. tests/test_signaling_process.py runs this script with 2,000 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from signal_load import free_port, wait_port  # run as a script: benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("socket.io", "ws", "polling")


# --------------------------------------------------------------------------------------
# Worker process: raw clients on one event loop


class _Counts:
    def __init__(self) -> None:
        self.connected = {t: 0 for t in TRANSPORTS}
        self.failed = 0
        self.clean = {t: 0 for t in TRANSPORTS}
        self.dropped = {t: 0 for t in TRANSPORTS}


async def _ws_client(session: Any, url: str, kind: str, room: str, counts: _Counts,
                     ready: asyncio.Event) -> None:
    import aiohttp

    base = url.replace("http", "ws", 1)
    path = "/ws" if kind == "ws" else "/socket.io/?EIO=4&transport=websocket"
    try:
        ws = await session.ws_connect(base + path, max_msg_size=0)
        first = (await ws.receive(timeout=30)).data
        if kind == "ws":
            assert json.loads(first)["type"] == "welcome", first
            await ws.send_str(json.dumps({"type": "announce", "hash": room}))
        else:
            assert first.startswith("0{"), first
            await ws.send_str("40")
            assert (await ws.receive(timeout=30)).data.startswith("40"), "no CONNECT"
            await ws.send_str('42["announce",' + json.dumps({"hash": room}) + "]")
    except Exception:
        counts.failed += 1
        ready.set()
        return
    counts.connected[kind] += 1
    ready.set()
    clean = False
    async for msg in _messages(ws):
        if msg.type is aiohttp.WSMsgType.TEXT:
            if msg.data == "2":  # engine.io ping
                with contextlib.suppress(Exception):
                    await ws.send_str("3")
        elif msg.type is aiohttp.WSMsgType.CLOSE:
            clean = True  # the server said goodbye with a close frame
            break
        else:
            break
    (counts.clean if clean else counts.dropped)[kind] += 1
    with contextlib.suppress(Exception):
        await ws.close()


async def _messages(ws: Any) -> Any:
    while True:
        msg = await ws.receive()
        yield msg
        if msg.type.name in ("CLOSE", "CLOSED", "CLOSING", "ERROR"):
            return


async def _polling_client(session: Any, url: str, room: str, counts: _Counts,
                          ready: asyncio.Event) -> None:
    base = url + "/socket.io/?EIO=4&transport=polling"
    try:
        async with session.get(base, timeout=30) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        base += f"&sid={sid}"
        async with session.post(base, data="40", timeout=30) as r:
            assert r.status == 200
        async with session.get(base, timeout=30) as r:
            assert (await r.text()).startswith("40")
        body = '42["announce",' + json.dumps({"hash": room}) + "]"
        async with session.post(base, data=body, timeout=30) as r:
            assert r.status == 200
    except Exception:
        counts.failed += 1
        ready.set()
        return
    counts.connected["polling"] += 1
    ready.set()
    clean = False
    with contextlib.suppress(Exception):
        while True:
            async with session.get(base, timeout=120) as r:
                if r.status != 200:
                    break
                packets = (await r.text()).split("\x1e")
            if "1" in packets:  # engine.io CLOSE
                clean = True
                break
            if "2" in packets:
                async with session.post(base, data="3", timeout=30) as r:
                    pass
    (counts.clean if clean else counts.dropped)["polling"] += 1


async def _worker(cfg: dict[str, Any], conn: Any) -> None:
    import aiohttp

    counts = _Counts()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(cfg["concurrency"])
        tasks = []

        async def one(i: int, kind: str) -> None:
            ready = asyncio.Event()
            await sem.acquire()
            room = f"room-{i % cfg['rooms']}"
            if kind == "polling":
                coro = _polling_client(session, cfg["url"], room, counts, ready)
            else:
                coro = _ws_client(session, cfg["url"], kind, room, counts, ready)
            task = asyncio.ensure_future(coro)
            tasks.append(task)
            await ready.wait()
            sem.release()

        await asyncio.gather(*(one(i, kind) for i, kind in cfg["clients"]))
        conn.send({"connected": counts.connected, "failed": counts.failed})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stopping"
        # Every client ends once the server closes it (or the parent gives up on it).
        await asyncio.wait(tasks, timeout=cfg["drain_timeout"])
        for task in tasks:
            task.cancel()
        conn.send({"clean": counts.clean, "dropped": counts.dropped})


def _worker_main(cfg: dict[str, Any], conn: Any) -> None:
    asyncio.run(_worker(cfg, conn))


# --------------------------------------------------------------------------------------
# Parent


def _mix(spec: str) -> list[tuple[str, int]]:
    """"socket.io:6,ws:3,polling:1" -> weights."""
    out = []
    for part in spec.split(","):
        name, _, weight = part.partition(":")
        if name not in TRANSPORTS:
            raise SystemExit(f"--mix: unknown transport {name!r} (one of {TRANSPORTS})")
        out.append((name, int(weight or 1)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    proc: subprocess.Popen | None = None
    workers: list[Any] = []
    conns: list[Any] = []
    pid = args.server_pid
    url = args.url
    try:
        if url is None:
            port = free_port()
            cmd = [sys.executable, "-m", "p2p_cli.main", "serve-signal", "--host", "127.0.0.1",
                   "--port", str(port), "--quiet", "--max-conns-per-ip", "0",
                   "--max-announce-rate", "0", "--max-message-rate", "0"]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=None,
                                    start_new_session=True)
            pid = proc.pid
            url = f"http://127.0.0.1:{port}"
            wait_port(port, proc, timeout=30.0)
        if pid is None:
            raise SystemExit("--url needs --server-pid, to send SIGTERM")
        weights = _mix(args.mix)
        kinds = [k for k, w in weights for _ in range(w)]
        plan = [(i, kinds[i % len(kinds)]) for i in range(args.clients)]
        n_workers = max(1, min(args.workers, args.clients))
        ctx = mp.get_context("fork")
        for w in range(n_workers):
            parent, child = ctx.Pipe()
            cfg = {"url": url, "rooms": args.rooms, "clients": plan[w::n_workers],
                   "concurrency": args.concurrency, "drain_timeout": args.stop_timeout + 5}
            p = ctx.Process(target=_worker_main, args=(cfg, child), daemon=True)
            p.start()
            workers.append(p)
            conns.append(parent)
        started = time.monotonic()
        connected = {t: 0 for t in TRANSPORTS}
        failed = 0
        for c in conns:
            if not c.poll(args.connect_timeout):
                raise SystemExit(f"clients not connected within {args.connect_timeout}s")
            got = c.recv()
            failed += got["failed"]
            for t, n in got["connected"].items():
                connected[t] += n
        connect_seconds = time.monotonic() - started
        time.sleep(args.settle)
        for c in conns:
            c.send("stopping")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        exited = False
        code = None
        if proc is not None:
            try:
                code = proc.wait(args.stop_timeout)
                exited = True
            except subprocess.TimeoutExpired:
                pass
        else:
            deadline = t0 + args.stop_timeout
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    exited = True
                    break
                time.sleep(0.01)
        stop_seconds = time.monotonic() - t0
        if not exited and proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        clean = {t: 0 for t in TRANSPORTS}
        dropped = {t: 0 for t in TRANSPORTS}
        for c in conns:
            if c.poll(args.stop_timeout + 15):
                got = c.recv()
                for t in TRANSPORTS:
                    clean[t] += got["clean"][t]
                    dropped[t] += got["dropped"][t]
        return {
            "clients": args.clients,
            "connected": connected,
            "failed": failed,
            "connect_seconds": round(connect_seconds, 2),
            "exited": exited,
            "exit_code": code,
            "stop_seconds": round(stop_seconds, 3),
            "clean": clean,
            "dropped": dropped,
        }
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join(5)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10_000, help="connections (10,000)")
    ap.add_argument("--rooms", type=int, default=100, help="rooms they announce (100)")
    ap.add_argument("--mix", default="socket.io:6,ws:3,polling:1",
                    help="transports and their weights (socket.io:6,ws:3,polling:1)")
    ap.add_argument("--workers", type=int, default=4, help="client processes (4)")
    ap.add_argument("--concurrency", type=int, default=64, help="connects in flight per worker")
    ap.add_argument("--connect-timeout", type=float, default=300.0)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between the last connect and SIGTERM (1)")
    ap.add_argument("--stop-timeout", type=float, default=60.0,
                    help="seconds to wait for the server to exit before killing it (60)")
    ap.add_argument("--url", help="use a running server at this loopback URL instead")
    ap.add_argument("--server-pid", type=int, help="with --url: its pid, to send SIGTERM")
    ap.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = ap.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{sum(report['connected'].values())} of {args.clients} clients connected "
          f"in {report['connect_seconds']}s ({report['connected']}; failed {report['failed']})")
    if report["exited"]:
        print(f"server exited {report['exit_code']} {report['stop_seconds']}s after SIGTERM")
    else:
        print(f"server still running {report['stop_seconds']}s after SIGTERM: killed")
    print(f"told goodbye: {report['clean']}; dropped: {report['dropped']}")


if __name__ == "__main__":
    main()
