"""Helpers for the signaling tests: a real `p2p serve-signal` process and scripted peers.

Test modules load the fixtures (signal_server, signal_peers) with

    pytest_plugins = ["signal_helpers"]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

ROOT = Path(__file__).resolve().parent.parent
P2P = str(Path(sys.executable).parent / "p2p")
JS_DIR = ROOT / "tests" / "js"
EVENTS = ("peer-list", "new-peer", "peer-left", "offer", "answer", "ice-candidate", "error")
WAIT = 10.0  # seconds any single expected event may take; generous for a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SignalProcess:
    """`p2p serve-signal` on a free loopback port, logging NDJSON to a file.

    `args` replaces the default options (``--host 127.0.0.1 --port PORT --json``) when
    given; `wait` False skips waiting for the "listening" event.
    """

    def __init__(
        self,
        workdir: Path,
        args: list[str] | None = None,
        *,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err_path = workdir / f"serve-signal-{self.port}.err"
        self.out_path = workdir / f"serve-signal-{self.port}.out"
        self._err = open(self.err_path, "wb")
        self._out = open(self.out_path, "wb")
        if args is None:
            args = ["--host", "127.0.0.1", "--port", str(self.port), "--json", *extra]
        self.proc = subprocess.Popen(
            [P2P, "serve-signal", *args],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
            start_new_session=True,
        )
        if wait:
            self.wait_listening()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_listening(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e.get("event") == "listening":
                    return e
            if self.proc.poll() is not None:
                raise AssertionError(f"serve-signal exited {self.proc.returncode}:\n{self.stderr}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"serve-signal did not start in {timeout}s:\n{self.stderr}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._err.close()
        self._out.close()


@pytest.fixture(scope="module")
def signal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignalProcess]:
    """One server for a test module; tests use their own room names."""
    server = SignalProcess(tmp_path_factory.mktemp("signal"))
    try:
        yield server
    finally:
        server.stop()


def unique(prefix: str = "room") -> str:
    return f"{prefix}-{os.urandom(6).hex()}"


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200, r.status
        assert r.content_type == "application/json"
        return await r.json()


@dataclass
class Inbox:
    """Events received, by name, awaitable in order."""

    queues: dict[str, asyncio.Queue[Any]] = field(
        default_factory=lambda: defaultdict(asyncio.Queue)
    )

    def put(self, event: str, data: Any) -> None:
        self.queues[event].put_nowait(data)

    async def next(self, event: str, timeout: float = WAIT) -> Any:
        try:
            return await asyncio.wait_for(self.queues[event].get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {event!r} event within {timeout}s") from None

    async def nothing(self, event: str, wait: float = 0.3) -> None:
        """Assert no `event` arrives within `wait` seconds (after a round trip settles)."""
        await asyncio.sleep(wait)
        assert self.queues[event].empty(), f"unexpected {event}: {self.queues[event]._queue}"  # type: ignore[attr-defined]


class SioPeer:
    """A python-socketio AsyncClient that records every signaling event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox = Inbox()
        for event in (*EVENTS, "connect_error"):
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(*args: Any) -> None:
            self.inbox.put(event, args[0] if args else None)

        return record

    @property
    def id(self) -> str:
        sid = self.sio.get_sid()
        assert sid
        return sid

    async def connect(self, url: str, transport: str, auth: Any = None) -> SioPeer:
        await asyncio.wait_for(
            self.sio.connect(url, transports=[transport], wait_timeout=WAIT, auth=auth), WAIT
        )
        return self

    async def emit(self, event: str, *args: Any) -> None:
        await self.sio.emit(event, args[0] if len(args) == 1 else args)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=WAIT)

    async def next(self, event: str, timeout: float = WAIT) -> Any:
        return await self.inbox.next(event, timeout)

    async def announce(self, room: str) -> list[str]:
        await self.sio.emit("announce", {"hash": room, "peerId": "ignored"})
        return (await self.next("peer-list"))["peers"]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), WAIT)


class WsPeer:
    """A client of the plain-WebSocket transport (/ws)."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.id = ""
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, url: str, path: str = "/ws", *, welcome: bool = True,
                      **kw: Any) -> WsPeer:
        self._session = aiohttp.ClientSession()
        self.ws = await self._session.ws_connect(url.replace("http", "ws", 1) + path, **kw)
        self._reader = asyncio.ensure_future(self._read())
        if welcome:
            self.id = (await self.next("welcome"))["peerId"]
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.inbox.put(data["type"], data)

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def next(self, event: str, timeout: float = WAIT) -> Any:
        return await self.inbox.next(event, timeout)

    async def announce(self, room: str) -> list[str]:
        await self.send({"type": "announce", "hash": room})
        return (await self.next("peer-list"))["peers"]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.ws is not None:
                await asyncio.wait_for(self.ws.close(), WAIT)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._session is not None:
            await self._session.close()


class Peers:
    """Makes peers connected to one server and closes them all at the end of a test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[SioPeer | WsPeer] = []

    async def sio(self, transport: str = "websocket", auth: Any = None) -> SioPeer:
        peer = SioPeer()
        self.made.append(peer)
        return await peer.connect(self.url, transport, auth)

    async def ws(self, path: str = "/ws", **kw: Any) -> WsPeer:
        peer = WsPeer()
        self.made.append(peer)
        return await peer.connect(self.url, path, **kw)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.made))


@pytest.fixture
async def signal_peers(signal_server: SignalProcess) -> Any:
    made = Peers(signal_server.url)
    try:
        yield made
    finally:
        await made.close()


class RawSio:
    """A Socket.IO client spoken by hand, frame by frame, over WebSocket or long-polling.

    Client libraries refuse or rewrite some packets (reserved event names, a CONNECT
    left out); this sends exactly what a test says. A background reader collects what
    the server sends (`packets`) and answers engine.io pings, unless `read` is False:
    then nothing is fetched at all (a long-polling client that never GETs) and pings
    are answered blindly every `pong_every` seconds instead.
    """

    def __init__(self, url: str, transport: str = "websocket") -> None:
        assert transport in ("websocket", "polling")
        self.url = url
        self.transport = transport
        self.sid = ""  # the Socket.IO sid (peer id) once connected
        self.eio_sid = ""
        self.packets: asyncio.Queue[str] = asyncio.Queue()
        self.closed = asyncio.Event()  # the server ended the session
        self.clean = False  # ... and said so (WebSocket close frame, engine.io CLOSE)
        self._session = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._base = ""

    async def open(self, *, connect: bool = True, auth: Any = None, read: bool = True,
                   pong_every: float = 1.0) -> RawSio:
        """Open the engine.io session; with `connect`, join the main namespace too."""
        if self.transport == "websocket":
            self._ws = await self._session.ws_connect(
                self.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
            )
            first = await self._ws.receive_str(timeout=WAIT)
        else:
            self._base = self.url + "/socket.io/?EIO=4&transport=polling"
            async with self._session.get(self._base, timeout=_timeout()) as r:
                first = await r.text()
        assert first.startswith("0{"), first
        self.eio_sid = json.loads(first[1:])["sid"]
        self._base += f"&sid={self.eio_sid}"
        if connect:
            await self.send("40" + (json.dumps(auth) if auth is not None else ""))
            if self.transport == "polling":
                async with self._session.get(self._base, timeout=_timeout()) as r:
                    answer = await r.text()
            else:
                assert self._ws is not None
                answer = await self._ws.receive_str(timeout=WAIT)
            assert answer.startswith("40{"), answer
            self.sid = json.loads(answer[2:])["sid"]
        if read:
            self._tasks.append(asyncio.ensure_future(self._read()))
        else:
            self._tasks.append(asyncio.ensure_future(self._pong(pong_every)))
        return self

    async def send(self, *packets: str) -> None:
        """Send engine.io packets (``42[...]`` is a Socket.IO event)."""
        if self.transport == "websocket":
            assert self._ws is not None
            for p in packets:
                await self._ws.send_str(p)
        else:
            async with self._session.post(
                self._base, data="\x1e".join(packets), timeout=_timeout()
            ) as r:
                if r.status != 200:
                    raise ConnectionError(f"POST answered {r.status}")

    async def emit(self, event: str, *args: Any, ack: int | None = None) -> None:
        await self.send(f"42{'' if ack is None else ack}" + json.dumps([event, *args]))

    async def ack(self, ack: int, timeout: float = WAIT) -> Any:
        """The acknowledgement ``43<ack>[...]``'s first value."""
        text = await self.next_packet(lambda p: p.startswith(f"43{ack}["), timeout)
        values = json.loads(text[2 + len(str(ack)):])
        return values[0] if values else None

    async def next_event(self, name: str, timeout: float = WAIT) -> Any:
        text = await self.next_packet(
            lambda p: p.startswith("42[") and json.loads(p[2:])[0] == name, timeout
        )
        args = json.loads(text[2:])[1:]
        return args[0] if args else None

    async def next_packet(self, match: Any, timeout: float = WAIT) -> str:
        """The next packet `match(text)` accepts (earlier ones are dropped)."""
        async def find() -> str:
            while True:
                text = await self.packets.get()
                if match(text):
                    return text

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching packet within {timeout}s") from None

    async def _read(self) -> None:
        try:
            if self.transport == "websocket":
                assert self._ws is not None
                async for msg in self._ws:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        await self._got(msg.data)
                self.clean = self._ws.close_code not in (None, 1006)
            else:
                while True:
                    async with self._session.get(self._base, timeout=_timeout(60)) as r:
                        if r.status != 200:
                            break
                        body = await r.text()
                    for text in body.split("\x1e"):
                        await self._got(text)
                    if self.clean:
                        break
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            pass
        finally:
            self.closed.set()

    async def _got(self, text: str) -> None:
        if text == "2":
            await self.send("3")
        elif text == "1":
            self.clean = True
        else:
            self.packets.put_nowait(text)

    async def _pong(self, every: float) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
            while True:
                await asyncio.sleep(every)
                await self.send("3")
        self.closed.set()

    async def fetch_once(self) -> None:
        """Long-polling: one GET, whose packets are kept (for a client that reads once,
        then stops)."""
        async with self._session.get(self._base, timeout=_timeout()) as r:
            assert r.status == 200, r.status
            for text in (await r.text()).split("\x1e"):
                self.packets.put_nowait(text)

    async def wait_closed(self, timeout: float = WAIT) -> None:
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"session still open after {timeout}s") from None

    async def close(self) -> None:
        """Leave as a client library does: engine.io's CLOSE packet, then hang up."""
        if not self.closed.is_set() and self.eio_sid:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("1"), WAIT)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            if self._ws is not None:
                await asyncio.wait_for(self._ws.close(), WAIT)
        await self._session.close()


def _timeout(total: float = WAIT) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)
