"""Signaling client: meet peers by content hash through a Socket.IO server.

Speaks only the reference events (announce, peer-list, new-peer, offer, answer,
ice-candidate) plus our server's optional `peer-left`, so it works through any server
that implements the design note's "Opción 1". python-socketio reconnects on its own; we
announce again on every (re)connection, since the server forgets us when we drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import socketio

from ..errors import SignalUnreachable, UsageError

log = logging.getLogger(__name__)

DEFAULT_SIGNAL = "http://127.0.0.1:8080"


def normalize_url(url: str) -> str:
    """Socket.IO clients want http(s); accept ws(s) too, and a bare host:port."""
    u = url.strip()
    if "://" not in u:
        u = "http://" + u
    parts = urlsplit(u)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"signaling URL {url!r} is not an http(s):// or ws(s):// URL")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


@dataclass
class SignalHandlers:
    """Callbacks for what the server tells us; each may be a coroutine function."""

    peer_list: Callable[[list[str]], Awaitable[None] | None] = lambda peers: None
    new_peer: Callable[[str], Awaitable[None] | None] = lambda peer: None
    peer_left: Callable[[str], Awaitable[None] | None] = lambda peer: None
    signal: Callable[[str, str, dict], Awaitable[None] | None] = lambda kind, peer, data: None
    ice_config: Callable[[dict], Awaitable[None] | None] = lambda cfg: None


@dataclass
class SignalingClient:
    urls: list[str]
    handlers: SignalHandlers
    token: str | None = None
    retries: int = 3
    timeout: float = 10.0
    announced: set[str] = field(default_factory=set)
    peer_id: str = ""
    url: str | None = None

    def __post_init__(self) -> None:
        self.urls = [normalize_url(u) for u in self.urls]
        self.sio = socketio.AsyncClient(
            reconnection=True,
            handle_sigint=False,  # our runner turns Ctrl-C into a clean, resumable stop
            reconnection_delay=0.5,
            reconnection_delay_max=5,
            randomization_factor=0.5,
            logger=False,
            engineio_logger=False,
        )
        self._register()

    def _register(self) -> None:
        sio = self.sio
        h = self.handlers

        @sio.event
        async def connect() -> None:
            # First connection and every reconnection: the server lost our rooms.
            for content_id in self.announced:
                await self._emit_announce(content_id)

        @sio.on("peer-list")
        async def _peer_list(data: object) -> None:
            if isinstance(data, dict) and isinstance(data.get("peers"), list):
                await _call(h.peer_list, [p for p in data["peers"] if isinstance(p, str)])

        @sio.on("new-peer")
        async def _new_peer(data: object) -> None:
            if isinstance(data, dict) and isinstance(data.get("peerId"), str):
                await _call(h.new_peer, data["peerId"])

        @sio.on("peer-left")
        async def _peer_left(data: object) -> None:
            if isinstance(data, dict) and isinstance(data.get("peerId"), str):
                await _call(h.peer_left, data["peerId"])

        for kind in ("offer", "answer", "ice-candidate"):

            async def _relay(data: object, kind: str = kind) -> None:
                if isinstance(data, dict) and isinstance(data.get("fromPeer"), str):
                    await _call(h.signal, kind, data["fromPeer"], data)

            sio.on(kind, _relay)

        @sio.on("ice-config")
        async def _ice_config(data: object) -> None:
            if isinstance(data, dict):
                await _call(h.ice_config, data)

        @sio.on("error")
        async def _error(data: object) -> None:
            log.warning("signaling server error: %s", data)

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid()

    async def connect(self) -> None:
        """Connect to the first server that answers, trying each `retries` times."""
        last: Exception | None = None
        auth = {"token": self.token} if self.token else None
        for attempt in range(max(1, self.retries)):
            for url in self.urls:
                try:
                    await self.sio.connect(
                        url,
                        auth=auth,
                        transports=["websocket", "polling"],
                        wait_timeout=self.timeout,
                    )
                    self.url = url
                    return
                except (TimeoutError, socketio.exceptions.ConnectionError, OSError) as e:
                    last = e
                    with contextlib.suppress(Exception):
                        await self.sio.disconnect()
            await asyncio.sleep(min(0.5 * 2**attempt, 4))
        where = ", ".join(self.urls)
        raise SignalUnreachable(
            f"cannot reach the signaling server at {where} ({_reason(last)}); "
            "check the URL (--signal / P2P_SIGNAL) and that the server is running"
        )

    async def announce(self, content_id: str, peer_id: str) -> None:
        self.peer_id = peer_id
        self.announced.add(content_id)
        await self._emit_announce(content_id)

    async def _emit_announce(self, content_id: str) -> None:
        with contextlib.suppress(socketio.exceptions.BadNamespaceError):
            await self.sio.emit("announce", {"hash": content_id, "peerId": self.peer_id})

    async def send(self, kind: str, target: str, payload: dict) -> None:
        with contextlib.suppress(socketio.exceptions.BadNamespaceError):
            await self.sio.emit(kind, {**payload, "targetPeer": target})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


def _reason(e: Exception | None) -> str:
    if e is None:
        return "no answer"
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]


async def _call(fn: Callable, *args: object) -> None:
    result = fn(*args)
    if asyncio.iscoroutine(result):
        await result
