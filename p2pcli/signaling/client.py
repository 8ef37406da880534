"""Signaling client: meet peers by content hash through a Socket.IO server.

Speaks only the reference events (announce, peer-list, new-peer, offer, answer,
ice-candidate) plus our server's optional `peer-left`, so it works through any server
that implements the design note's "Opción 1".

When the connection drops, for whatever reason (the server restarted, was killed, or
closed it), the client reconnects with back-off, trying the next of its URLs first (a
cluster's other node), then the others in turn, and announces its rooms again, since a
server forgets a peer when it drops. WebRTC connections already made do not need the
server and carry on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import socketio

from ..errors import SignalUnreachable, UsageError

log = logging.getLogger(__name__)

#: Seconds between reconnection attempts: the first, and the most after doubling at
#: each round through the URLs (each wait is randomized down to half, so that clients
#: of a server that restarted do not all come back at once).
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 5.0


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
            # Reconnection is ours (`_reconnect`): python-socketio's retries one URL only
            # and does not reconnect after the server closed the session.
            reconnection=False,
            handle_sigint=False,  # our runner turns Ctrl-C into a clean, resumable stop
            logger=False,
            engineio_logger=False,
        )
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._refusal: object = None  # the last CONNECT_ERROR the server sent
        self._own_sids: set[str] = set()  # every id this client had, across reconnections
        # Pending while the ice-config handler runs (it may check the servers for
        # seconds): the events after it wait, so no connection uses the old servers.
        self._ice_gate: asyncio.Future[None] | None = None
        self._register()

    def _register(self) -> None:
        sio = self.sio
        h = self.handlers

        @sio.event
        async def connect() -> None:
            sid = self.sio.get_sid()
            if sid:
                self._own_sids.add(sid)
            # First connection and every reconnection: the server lost our rooms.
            for content_id in self.announced:
                await self._emit_announce(content_id)

        @sio.event
        async def connect_error(data: object = None) -> None:
            self._refusal = data

        @sio.event
        async def disconnect(*reason: object) -> None:
            if not self._closing and self._reconnecting is None:
                log.info("lost the signaling server at %s; reconnecting", self.url)
                self._reconnecting = asyncio.ensure_future(self._reconnect())

        @sio.on("peer-list")
        async def _peer_list(data: object) -> None:
            await self._ice_settled()
            if isinstance(data, dict) and isinstance(data.get("peers"), list):
                # Our own earlier ids may still be listed (a cluster node that died has
                # not been reaped yet): never offer to ourselves.
                peers = [p for p in data["peers"] if isinstance(p, str)]
                await _call(h.peer_list, [p for p in peers if p not in self._own_sids])

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
                await self._ice_settled()
                if isinstance(data, dict) and isinstance(data.get("fromPeer"), str):
                    await _call(h.signal, kind, data["fromPeer"], data)

            sio.on(kind, _relay)

        @sio.on("ice-config")
        async def _ice_config(data: object) -> None:
            if isinstance(data, dict):
                # Set before any await, so every later event finds it (see _ice_settled).
                gate = self._ice_gate = asyncio.get_running_loop().create_future()
                try:
                    await _call(h.ice_config, data)
                finally:
                    gate.set_result(None)

        @sio.on("error")
        async def _error(data: object) -> None:
            log.warning("signaling server error: %s", data)

    async def _ice_settled(self) -> None:
        """Wait for an ice-config that arrived before this event to be applied.

        python-engineio runs each received message in its own task, started in arrival
        order; the ice-config task sets the gate in its first step, so later events see
        it, and they all wake together, in order, when it is done.
        """
        gate = self._ice_gate
        if gate is not None and not gate.done():
            await asyncio.shield(gate)

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid()

    async def connect(self) -> None:
        """Connect to the first server that answers, trying each `retries` times.

        Raises SignalUnreachable when none answers, and UsageError when a server refused
        the access token and none accepted it (trying again would not help).
        """
        last: Exception | None = None
        refused: str | None = None
        for attempt in range(max(1, self.retries)):
            if attempt:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 4))
            for url in self.urls:
                try:
                    await self._connect_once(url)
                    return
                except _CONNECT_ERRORS as e:
                    last = e
                    code, message = _refusal(self._refusal)
                    if code == "bad-token":
                        refused = f"the signaling server at {url} refused the access token"
                        refused += f" ({message})" if message else ""
                    elif message:
                        last = ConnectionError(message)
            if refused:
                raise UsageError(
                    f"{refused}; give the right one with --token (or P2P_TOKEN), or use the "
                    "link from the seeder, which carries it"
                )
        where = ", ".join(self.urls)
        reason = _reason(last)
        hint = "check the URL (--signal / P2P_SIGNAL) and that the server is running"
        if "certificate" in reason.lower():
            hint = (
                "the server's TLS certificate is not trusted here; if it is self-signed, "
                "point SSL_CERT_FILE at it (a PEM file)"
            )
        raise SignalUnreachable(
            f"cannot reach the signaling server at {where} ({reason}); {hint}"
        )

    async def _connect_once(self, url: str) -> None:
        self._refusal = None
        auth = {"token": self.token} if self.token else None
        try:
            await self.sio.connect(
                url,
                auth=auth,
                transports=["websocket", "polling"],
                wait_timeout=self.timeout,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.sio.disconnect()
            raise
        self.url = url

    async def _reconnect(self) -> None:
        """Reconnect after a drop: the next URL first, then round the list, backing off."""
        try:
            start = self.urls.index(self.url) + 1 if self.url in self.urls else 0
            delay = RECONNECT_FIRST
            attempt = 0
            while not self._closing:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                url = self.urls[(start + attempt) % len(self.urls)]
                attempt += 1
                try:
                    await self._connect_once(url)
                except _CONNECT_ERRORS as e:
                    log.info("reconnecting to %s failed: %s", url, _reason(e))
                    if attempt % len(self.urls) == 0:
                        delay = min(delay * 2, RECONNECT_MAX)
                    continue
                log.info("reconnected to the signaling server at %s", url)
                return
        finally:
            self._reconnecting = None

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
        self._closing = True
        task = self._reconnecting
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


_CONNECT_ERRORS = (TimeoutError, socketio.exceptions.ConnectionError, OSError, ValueError)


def _refusal(data: object) -> tuple[str | None, str]:
    """(code, message) of a CONNECT_ERROR payload: ``{message, data: {code}}``."""
    if isinstance(data, dict):
        inner = data.get("data")
        code = inner.get("code") if isinstance(inner, dict) else None
        return (code if isinstance(code, str) else None), str(data.get("message") or "")
    return None, ""


def _reason(e: BaseException | None) -> str:
    """What went wrong, in one line: the innermost cause, which the Socket.IO and
    Engine.IO layers hide behind a bare "Connection error"."""
    if e is None:
        return "no answer"
    seen: set[int] = set()
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in reversed(chain):
        text = str(err).strip()
        if text:
            return text.splitlines()[0][:200]
    return type(e).__name__


async def _call(fn: Callable, *args: object) -> None:
    result = fn(*args)
    if asyncio.iscoroutine(result):
        await result
