"""The signaling server: python-socketio and a plain-WebSocket endpoint on one aiohttp app.

The I/O adapter around `SignalCore` (core.py), which holds every rule: `SignalHub` hands
it what clients send, with the clock, and sends the frames it returns (codec.py encodes
them); it holds no rule of its own. Two transports share one core, so a Socket.IO peer
and a /ws peer meet in the same room and signal each other.

Relaying is the hot path, so frames go to engine.io's documented ``send(sid, data)``
rather than through python-socketio's generic emit (codec.py says why), and relayed
Socket.IO frames can skip python-socketio altogether (eio_websocket.py's fast path).

docs/SIGNALING.md is the protocol this implements.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

import engineio
import orjson
import socketio
from aiohttp import WSMsgType, web
from engineio import async_socket as eio_async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from ..rendezvous.wstracker import MAX_MESSAGE as TRACKER_MAX_MESSAGE
from .codec import (
    SOCKET_IO,
    WS,
    OrjsonCodec,
    fast_relay,
    ws_ack_frame,
    ws_refusal_frame,
    ws_welcome_frame,
)
from .core import Frame, Outcome, SignalCore
from .eio_websocket import BoundedSocket, FastEvent, FastSocket, SizedQueue
from .limits import Limits
from .log import LibraryError, Listening, LogBudget, SignalLog, Stopped, Stopping, no_log
from .rooms import Rooms, new_peer_id
from .schema import RELAY_EVENTS, ErrorCode, Relay, SignalSchemaError, parse_ws_frame
from .tracker import TrackerHub
from .turncreds import IceConfig
from .web import add_web_routes

if TYPE_CHECKING:
    from .cluster import Cluster

#: Largest engine.io packet / WebSocket frame read at all; bigger ones close the
#: connection. Between schema.MAX_MESSAGE_BYTES and this, a message gets an error event.
MAX_FRAME_BYTES: Final = 1024 * 1024

#: A /ws peer whose unsent output grows past this is not reading: it is disconnected
#: rather than allowed to make senders wait (see `_WsPeer.send`).
WS_MAX_BUFFERED: Final = 1024 * 1024

#: Engine.IO ping interval and timeout, socket.io's defaults: a client that stops
#: answering is disconnected (and leaves its rooms) within their sum.
PING_INTERVAL: Final = 25.0
PING_TIMEOUT: Final = 20.0

#: With Redis: a node silent this long is dead, and its peers are removed.
NODE_TIMEOUT: Final = 10.0

#: Seconds an engine.io session may stay open without being connected to Socket.IO
#: (no CONNECT yet, or after a DISCONNECT): it is closed then. Until then it counts
#: toward the per-address cap like any connection.
CONNECT_TIMEOUT: Final = 10.0

#: Seconds a refused Socket.IO session stays open so that the client can read why
#: (CONNECT_ERROR, with its code) before it is closed.
REFUSED_GRACE: Final = 1.0

#: Seconds `SignalHub.close_all` lets clients take their goodbye (close frame, CLOSE
#: packet) before it cuts the connections that are left.
SHUTDOWN_GRACE: Final = 1.0

#: The events a Socket.IO client may send. Any other name, the library's reserved ones
#: (``connect``, ``disconnect``...) included, goes to the unknown-event handler: a client
#: packet must never reach a handler the server registered for its own use.
CLIENT_EVENTS: Final = frozenset({"announce", *RELAY_EVENTS})

#: The name the unknown-event handler is registered under. Clients can send it too, but
#: it is not in CLIENT_EVENTS, so it is treated like every other unknown name.
_UNKNOWN_EVENT: Final = "\x00unknown"

#: Key under which make_app() stores the hub, for routes other modules add.
HUB_KEY: Final = web.AppKey("p2p_signal_hub", "SignalHub")


class _EioWebSocket(eio_aiohttp.WebSocket):
    """engine.io's aiohttp WebSocket wrapper, without per-message deflate.

    aiohttp's WebSocketResponse accepts permessage-deflate whenever a client offers it,
    and browsers and Node's client always do; compressing every ~200-byte signaling
    message costs far more CPU than the bytes it saves (Node's server has it off by
    default for the same reason).
    """

    response: web.WebSocketResponse

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self.response = self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._sock.send_str(message)
        else:
            await self._sock.send_bytes(message)


class _EioServer(engineio.AsyncServer):
    """engine.io's server, whose sessions' send queues count their bytes (`SizedQueue`)."""

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return SizedQueue(*args, **kwargs)


class _SocketIOServer(socketio.AsyncServer):
    """python-socketio's server, guarded, with engine.io sessions switched to our class.

    - Client events are dispatched by name only when the name is in `CLIENT_EVENTS`;
      every other name (``connect``, ``disconnect``, ``*``...) goes to the hub's
      unknown-event handler. python-socketio's own guard keeps reserved names from its
      catch-all handler only, not from a handler registered under that name, which is
      how ``connect``/``disconnect`` are registered.
    - engine.io creates the session object itself and then reports the connection here,
      before any traffic; that is the one place to switch its class (`FastSocket`, or
      `BoundedSocket` when it is off: subclasses that add no state, so the switch is
      safe) and to tell the hub (`session_opened` / `session_closed`).
    """

    fast_event: FastEvent | None = None
    fast_websocket: bool = False
    session_opened: Callable[[str, dict[str, Any]], None] | None = None
    session_closed: Callable[[str], None] | None = None

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return _EioServer

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> Any:
        event = data[0] if isinstance(data, list) and data else None
        if not (isinstance(event, str) and event in CLIENT_EVENTS):
            # The name becomes the first argument of the unknown-event handler.
            rest = data[1:] if isinstance(data, list) else []
            data = [_UNKNOWN_EVENT, event, *rest]
        return await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        result = await super()._handle_eio_connect(eio_sid, environ)
        sock = self.eio.sockets.get(eio_sid)
        if type(sock) is eio_async_socket.AsyncSocket:
            if self.fast_websocket:
                sock.__class__ = FastSocket
                cast(FastSocket, sock).fast_event = self.fast_event
            else:
                sock.__class__ = BoundedSocket
        if self.session_opened is not None:
            self.session_opened(eio_sid, environ)
        return result

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            if self.session_closed is not None:
                self.session_closed(eio_sid)


class _LogBridge(logging.Handler):
    """Route python-socketio/engine.io errors to `SignalLog`, a few per minute at most.

    They log a traceback for every malformed packet a client sends; a client must not be
    able to flood the server's log (or break its NDJSON) that way.
    """

    def __init__(self, log: SignalLog, per_minute: int = 10) -> None:
        super().__init__(logging.ERROR)
        self._log = log
        self._budget = LogBudget(per_minute)

    def emit(self, record: logging.LogRecord) -> None:
        if self._budget.allow(time.monotonic()):
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                # The exception, not its traceback: one line that says what was wrong.
                message += f": {record.exc_info[1]!r}"
            self._log(LibraryError(source=record.name, message=message[:300]))


def _library_logger(name: str, log: SignalLog) -> logging.Logger:
    # A private Logger (not from logging.getLogger) so two servers in one process, or
    # the user's logging config, do not share handlers with ours.
    logger = logging.Logger(name, logging.ERROR)
    logger.addHandler(_LogBridge(log))
    logger.propagate = False
    return logger


@dataclass(slots=True)
class _WsPeer:
    """A /ws connection."""

    ws: web.WebSocketResponse
    # Typed as WriteTransport for its buffer methods; uvloop's transports have them but
    # are not registered as asyncio.WriteTransport, so no isinstance() check here.
    transport: asyncio.WriteTransport | None

    async def send(self, text: str) -> None:
        # Never wait for a peer that does not read: awaiting its drain would stall the
        # sender's own read loop. Over the limit it is cut off and cleaned up like any
        # other disconnect.
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            return
        if transport.get_write_buffer_size() > WS_MAX_BUFFERED:
            transport.abort()
            return
        await self.ws.send_str(text)


class _Timers:
    """One pending call of `fire(key)` per key, on the running loop's clock."""

    def __init__(self, fire: Callable[[str], None]) -> None:
        self._fire = fire
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._handles)

    def start(self, key: str, after: float) -> None:
        """Call `fire(key)` `after` seconds from now, instead of any pending call."""
        self.cancel(key)
        self._handles[key] = asyncio.get_running_loop().call_later(after, self._due, key)

    def cancel(self, key: str) -> None:
        handle = self._handles.pop(key, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _due(self, key: str) -> None:
        del self._handles[key]
        self._fire(key)


@dataclass
class SignalHub:
    """Connections of both transports, bound to one `SignalCore` (and, with Redis, a cluster).

    The adapter: it hands what clients send to the core (core.py) and sends the frames
    it returns, runs the timers (the connect deadline, ice-config refreshes) and shuts
    down. What is allowed, and what is answered to whom, is the core's to say.
    """

    cors_origins: Sequence[str] | None = None
    log: SignalLog = no_log
    rooms: Rooms = field(default_factory=Rooms)
    started: float = field(default_factory=time.monotonic)
    async_mode: str = "aiohttp"
    """python-socketio's async mode; "asgi" only serves benchmarks/signal_asgi_server.py."""
    fast_websocket: bool = True
    """Use `FastSocket` for WebSocket sessions (aiohttp mode only)."""
    limits: Limits = field(default_factory=Limits)
    """Rates and caps per connection and per address (limits.py)."""
    token: str | None = None
    """Shared secret clients must present (Socket.IO ``auth.token``, ``?token=``)."""
    ping_interval: float = PING_INTERVAL
    """Seconds between pings, on both transports."""
    ping_timeout: float = PING_TIMEOUT
    """Seconds a client has to answer a ping before it is disconnected."""
    redis_url: str | None = None
    """Share rooms with other nodes through this Redis (cluster.py); None: one process."""
    node_timeout: float = NODE_TIMEOUT
    """With Redis: seconds after which a silent node's peers are removed from the cluster."""
    ice_config: IceConfig | None = None
    """STUN/TURN servers (and per-client TURN credentials) sent as `ice-config` on connect."""
    connect_timeout: float = CONNECT_TIMEOUT
    """Seconds an engine.io session may stay open without a Socket.IO connection."""

    def __post_init__(self) -> None:
        self.cluster: Cluster | None = None
        if self.redis_url:
            from .cluster import Cluster  # imports redis, which only a cluster needs

            self.cluster = Cluster(self, self.redis_url, node_timeout=self.node_timeout)
        self.core = SignalCore(
            self.rooms, self.limits, self.token, clustered=self.cluster is not None
        )
        self.sio = _socketio_server(self)
        if self.sio.fast_websocket:
            self.sio.fast_event = self._sio_fast_event
        self.sio.session_opened = self._session_opened
        self.sio.session_closed = self._session_closed
        # engine.io sid -> when it is closed unless it connects to Socket.IO first
        self._session_timers = _Timers(self._session_expired)
        self._eio_sids: dict[str, str] = {}  # Socket.IO sid -> engine.io sid
        self._sids: dict[str, str] = {}  # engine.io sid -> Socket.IO sid (namespace "/")
        self._ws: dict[str, _WsPeer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # peer id -> when its ice-config (issued TURN credentials) is sent again
        self._ice_timers = _Timers(lambda peer_id: self._spawn(self._send_ice_config(peer_id)))
        self._register()

    # -- Socket.IO ---------------------------------------------------------------------

    def _register(self) -> None:
        # Only these names; `_SocketIOServer._handle_event` sends every other name a
        # client uses (connect and disconnect included) to `_sio_unknown`.
        sio = self.sio
        sio.on("connect", self._sio_connect)
        sio.on("disconnect", self._sio_disconnect)
        sio.on("announce", self._sio_announce)
        for event in RELAY_EVENTS:
            sio.on(event, self._sio_relay_handler(event))
        sio.on(_UNKNOWN_EVENT, self._sio_unknown)

    # An engine.io session counts toward its address's cap from its opening (the core
    # keeps the count), and must connect to Socket.IO within `connect_timeout`.

    def _session_opened(self, eio_sid: str, environ: dict[str, Any]) -> None:
        self.core.session_opened(eio_sid, _environ_address(environ))
        self._session_timers.start(eio_sid, self.connect_timeout)

    def _session_closed(self, eio_sid: str) -> None:
        self._session_timers.cancel(eio_sid)
        self.core.session_closed(eio_sid)

    def _session_expired(self, eio_sid: str) -> None:
        if eio_sid in self.core.sessions and eio_sid not in self._sids:
            # engine.io's own disconnect: a CLOSE packet, then the session is dropped.
            self._spawn(self.sio.eio.disconnect(eio_sid))

    async def _sio_connect(self, sid: str, environ: dict, auth: object = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is None:  # clients that cannot send auth may put it in the URL
            token = _query_token(environ.get("QUERY_STRING", ""))
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        refusal = self.core.connect(sid, SOCKET_IO, token, _environ_address(environ), eio_sid)
        if refusal is not None:
            if eio_sid in self.core.sessions:
                self._session_timers.start(eio_sid, REFUSED_GRACE)
            # Socket.IO's CONNECT_ERROR: clients see `message`, and `data.code`.
            raise socketio.exceptions.ConnectionRefusedError(
                refusal.message, {"code": refusal.code}
            )
        self._session_timers.cancel(eio_sid)
        self._eio_sids[sid] = eio_sid
        self._sids[eio_sid] = sid
        self._ice_config_after_connect(sid)

    async def _sio_disconnect(self, sid: str, reason: object = None) -> None:
        eio_sid = self._eio_sids.pop(sid, None)
        if eio_sid is None:
            return  # refused at connect: never joined
        self._sids.pop(eio_sid, None)
        if eio_sid in self.core.sessions and not self.core.closing:
            # Left the namespace but kept the engine.io session: connect again or go.
            self._session_timers.start(eio_sid, self.connect_timeout)
        await self._gone(sid)

    async def _sio_fast_event(self, eio_sid: str, text: str) -> bool:
        """Handle a relayed message straight from its frame (see eio_websocket.py).

        Declines (returns False) anything python-socketio should see instead: a session
        not (yet) connected to the main namespace, or a frame that is not a relay event.
        """
        sid = self._sids.get(eio_sid)
        relay = None if sid is None else fast_relay(text)
        if relay is None:
            return False
        await self._relay(sid, *relay)
        return True

    async def _sio_announce(self, sid: str, *args: object) -> dict[str, object]:
        return await self._announce(sid, args[0] if args else None)

    def _sio_relay_handler(self, event: str) -> Callable[..., Any]:
        async def handler(sid: str, *args: object) -> dict[str, object]:
            return await self._relay(sid, event, args[0] if args else None)

        return handler

    async def _sio_unknown(self, sid: str, event: object, *args: object) -> dict[str, object]:
        return await self._carry_out(self.core.unknown_event(sid, event, time.monotonic()))

    # -- /ws -----------------------------------------------------------------------------

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        """The plain-WebSocket transport (design note "Opción 3"), at /ws and /."""
        if not _origin_allowed(request, self.cors_origins):
            raise web.HTTPForbidden(text="origin not allowed\n")
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=MAX_FRAME_BYTES, heartbeat=self.ping_interval
        )
        await ws.prepare(request)
        transport = cast("asyncio.WriteTransport | None", request.transport)
        if transport is not None:
            # Above WS_MAX_BUFFERED we disconnect; until then aiohttp must never pause
            # the writer (which would block the sender), so its high-water mark is above.
            transport.set_write_buffer_limits(high=4 * WS_MAX_BUFFERED)
        peer_id = new_peer_id()
        refusal = self.core.connect(peer_id, WS, _ws_token(request), str(request.remote))
        if refusal is not None:
            # A browser cannot read an HTTP status from a failed WebSocket handshake, so
            # the refusal is a frame, then a close: 1008 policy violation (token), 1013
            # try again later (too many connections).
            await ws.send_str(ws_refusal_frame(refusal.code, refusal.message))
            close_code = 1008 if refusal.code == ErrorCode.BAD_TOKEN else 1013
            await ws.close(code=close_code, message=refusal.code.encode())
            return ws
        peer = self._ws[peer_id] = _WsPeer(ws, transport)
        try:
            # Tell the client its id, as Socket.IO's handshake does (socket.id).
            await peer.send(ws_welcome_frame(peer_id))
            await self._send_ice_config(peer_id)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    await self._ws_frame(peer_id, peer, msg.data)
        finally:
            self._ws.pop(peer_id, None)
            await self._gone(peer_id)
        return ws

    async def _ws_frame(self, peer_id: str, peer: _WsPeer, frame: str | bytes) -> None:
        try:
            msg = parse_ws_frame(frame)
        except SignalSchemaError as e:
            await self._carry_out(self.core.bad_frame(peer_id, e, time.monotonic()))
            return
        kind = msg.type
        if kind in RELAY_EVENTS:
            result = await self._relay(peer_id, kind, msg.data)
        elif kind == "announce":
            result = await self._announce(peer_id, msg.data)
        else:
            result = await self._carry_out(
                self.core.unknown_type(peer_id, kind, time.monotonic())
            )
        if msg.ack is not None:
            await peer.send(ws_ack_frame(msg.ack, result))

    # -- the events, whatever the transport ----------------------------------------------

    async def _announce(self, sender: str, data: object) -> dict[str, object]:
        step = self.core.announce(sender, data, time.monotonic())
        if isinstance(step, Outcome):
            return await self._carry_out(step)
        peers = None
        if self.cluster is not None:
            local = len(self.rooms.rooms.get(step.room, ()))
            peers = await self.cluster.announce(sender, step.room, new=step.new, local=local)
            if sender not in self.rooms.peers:  # left while Redis answered
                await self.cluster.leave(sender, {step.room})
                return {"ok": False, "code": ErrorCode.UNKNOWN_PEER, "error": "disconnected"}
        return await self._carry_out(self.core.announced(sender, step, peers))

    async def _relay(self, sender: str, event: str, data: object) -> dict[str, object]:
        step = self.core.relay(sender, event, data, time.monotonic())
        if isinstance(step, Relay):  # for a peer of another node
            assert self.cluster is not None
            try:
                await self.cluster.relay(sender, self.rooms.rooms_of(sender), event, step)
            except SignalSchemaError as e:
                step = self.core.refuse(sender, event, e)
            else:
                step = self.core.relayed_remotely()
        # `_carry_out`, inlined: this is the hot path, and a coroutine less per message
        # is measurable there.
        for frame in step.frames:
            await self._send(frame)
        if step.pause:
            await asyncio.sleep(step.pause)
        return step.ack

    async def _carry_out(self, outcome: Outcome) -> dict[str, object]:
        """Send what the core said to, pause reading if it said so; return the ack."""
        for frame in outcome.frames:
            await self._send(frame)
        if outcome.pause:
            await asyncio.sleep(outcome.pause)
        return outcome.ack

    async def _send(self, frame: Frame | None) -> None:
        if frame is None:
            return
        eio_sid = self._eio_sids.get(frame.peer)
        if eio_sid is not None:
            await self.sio.eio.send(eio_sid, frame.text)
            return
        peer = self._ws.get(frame.peer)
        if peer is not None:
            await peer.send(frame.text)

    async def _gone(self, peer_id: str) -> None:
        self._ice_timers.cancel(peer_id)
        departure = self.core.disconnect(peer_id)
        for frame in departure.frames:
            await self._send(frame)
        if self.cluster is not None and departure.rooms:
            await self.cluster.leave(peer_id, departure.rooms)

    # -- ice-config (turncreds.py): STUN/TURN servers for each client --------------------

    def _ice_config_after_connect(self, sid: str) -> None:
        """Socket.IO: python-socketio sends CONNECT only after the connect handler returns,
        and no event may precede it; so send from a task once the session is connected."""
        if self.ice_config is not None:
            self._spawn(self._ice_config_when_connected(sid))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ice_config_when_connected(self, sid: str) -> None:
        # CONNECT goes out within a few loop turns, long before the client can announce;
        # polling each turn keeps ice-config ahead of the peer-list that follows.
        for turn in range(500):
            if self.sio.manager.is_connected(sid, "/"):
                await self._send_ice_config(sid)
                return
            if sid not in self.rooms.peers:
                return
            await asyncio.sleep(0 if turn < 100 else 0.01)

    async def _send_ice_config(self, peer_id: str) -> None:
        """Send `ice-config`; with issued TURN credentials, again before they expire."""
        ice = self.ice_config
        if ice is None or peer_id not in self.rooms.peers:
            return
        payload = ice.payload(peer_id, time.time())
        await self._send(self.core.event(peer_id, "ice-config", payload))
        if ice.refresh_after:
            self._ice_timers.start(peer_id, ice.refresh_after)

    # -- what the cluster (cluster.py) asks of this node ----------------------------------

    def local_members(self, room: str) -> Iterable[str]:
        """This node's peers in `room`."""
        return self.rooms.rooms.get(room, ())

    def is_local(self, peer_id: str) -> bool:
        return peer_id in self.rooms.peers

    async def deliver(self, target: str, event: str, payload: dict[str, object]) -> None:
        """Deliver a message another node relayed (it checked the relay rule and size)."""
        with contextlib.suppress(SignalSchemaError):
            await self._send(self.core.relayed(target, event, payload))

    async def send_event(self, peer_id: str, event: str, payload: dict[str, object]) -> None:
        await self._send(self.core.event(peer_id, event, payload))

    async def drop_all(self) -> None:
        """Close every connection, so that clients reconnect and announce again.

        The transport is closed (not a Socket.IO disconnect, after which clients would
        not reconnect by themselves), as if the network had dropped.
        """
        await _drop(self.sio, list(self._sids), list(self._ws.values()))

    # -- HTTP and shutdown ---------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """This node's figures (the /stats document, less the cluster's)."""
        body = self.rooms.snapshot(time.monotonic() - self.started)
        if self.cluster is not None:
            body["node"] = self.cluster.node_id
            body["relayedToNodes"] = self.cluster.relayed_out
            body["relayedFromNodes"] = self.cluster.relayed_in
        return body

    async def full_stats(self) -> dict[str, object]:
        """The /stats document: this node's figures, and with Redis the cluster's."""
        body = self.stats()
        if self.cluster is not None:
            body["cluster"] = await self.cluster.stats()
        return body

    async def close_all(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Disconnect every client (server shutdown), in about `grace` seconds at most.

        Everyone is told at once and cheaply (`_say_goodbye`). The per-connection
        bookkeeping (python-socketio's and engine.io's disconnect handlers, peer-left to
        every neighbour) is skipped: the process is stopping, and with 10,000 clients
        that work alone took seconds (peer-left alone grows with the square of the
        clients). With Redis, this node's peers still leave the cluster's rooms. Whoever
        has not taken its goodbye after `grace` seconds is cut off, so stopping takes
        the same short time whatever the number of clients.
        """
        self.core.closing = True
        self._session_timers.cancel_all()
        # With thousands of connections the heap is large, and the tasks made below
        # trigger full garbage collections that took over a second by themselves.
        gc.freeze()
        try:
            leaving = None if self.cluster is None else self._leave_cluster()
            await _say_goodbye(self.sio, list(self._ws.values()), grace, leaving)
        finally:
            gc.unfreeze()

    async def _leave_cluster(self) -> None:
        """With Redis: take this node's Socket.IO peers out of the cluster's rooms (its
        /ws peers leave as their handlers end)."""
        for sid in list(self._eio_sids):
            await self._gone(sid)


def _socketio_server(hub: SignalHub) -> _SocketIOServer:
    """python-socketio's server, configured from `hub`'s fields."""
    origins: str | list[str] = "*" if not hub.cors_origins else list(hub.cors_origins)
    sio = _SocketIOServer(
        client_manager=hub.cluster.manager if hub.cluster is not None else None,
        async_mode=hub.async_mode,
        cors_allowed_origins=origins,
        json=OrjsonCodec,
        # Handlers never block, so run them inline: a task per event costs more
        # than the handler itself. It also means a handler that waits (the rate
        # limiter does) stops reading from that connection only.
        async_handlers=False,
        max_http_buffer_size=MAX_FRAME_BYTES,
        ping_interval=hub.ping_interval,
        ping_timeout=hub.ping_timeout,
        logger=_library_logger("p2pcli.signaling.socketio", hub.log),
        engineio_logger=_library_logger("p2pcli.signaling.engineio", hub.log),
    )
    if hub.async_mode == "aiohttp":
        # engine.io picks its WebSocket class from this per-server table; swap in
        # ours (a copy, so other engine.io servers in the process keep theirs).
        sio.eio._async = {**sio.eio._async, "websocket": _EioWebSocket}
    sio.fast_websocket = hub.fast_websocket and hub.async_mode == "aiohttp"
    return sio


async def _drop(
    sio: socketio.AsyncServer, eio_sids: list[str], ws_peers: list[_WsPeer]
) -> None:
    """Close these connections' transports (a WebSocket close 1012 on /ws), within 5 s."""
    sockets = [sio.eio.sockets.get(eio_sid) for eio_sid in eio_sids]
    closing = [peer.ws.close(code=1012, message=b"service restart") for peer in ws_peers]
    closing += [sock.close(wait=False, abort=True) for sock in sockets if sock is not None]
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=5)


async def _say_goodbye(
    sio: socketio.AsyncServer,
    ws_peers: list[_WsPeer],
    grace: float,
    also: Coroutine[Any, Any, None] | None,
) -> None:
    """Close every connection of both transports within about `grace` seconds.

    A close frame on /ws; engine.io's CLOSE packet then a close frame on Socket.IO over
    WebSocket; the CLOSE packet for the pending GET on long-polling. `also` runs
    alongside, bounded the same way. Then whoever is left is cut off.
    """
    goodbyes: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(peer.ws.close(code=1001, message=b"server shutting down"))
        for peer in ws_peers
    ]
    for sock in list(sio.eio.sockets.values()):
        if sock.closed or sock.closing:
            continue
        # engine.io's close (and the disconnect handlers it runs) is a no-op from now.
        sock.closing = True
        ws = getattr(sock, "_ws", None)
        if ws is not None:
            goodbyes.append(asyncio.ensure_future(_eio_ws_goodbye(ws)))
        else:
            sock.queue.put_nowait(eio_packet.Packet(eio_packet.CLOSE))
            sock.queue.put_nowait(None)  # then end engine.io's stock WebSocket writer
            goodbyes.append(asyncio.ensure_future(sock.queue.join()))
    if also is not None:
        goodbyes.append(asyncio.ensure_future(also))
    if goodbyes:
        await asyncio.wait(goodbyes, timeout=grace)
    for task in goodbyes:
        task.cancel()
    for peer in ws_peers:
        if peer.transport is not None:
            peer.transport.abort()
    for sock in list(sio.eio.sockets.values()):
        sock.closed = True
        transport = getattr(sock, "_transport", None)
        if transport is not None:
            transport.abort()
    sio.eio.sockets.clear()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sio.shutdown(), timeout=grace)


def _environ_address(environ: dict[str, Any]) -> str:
    request = environ.get("aiohttp.request")
    return str(request.remote if request is not None else environ.get("REMOTE_ADDR"))


async def _eio_ws_goodbye(ws: web.WebSocketResponse) -> None:
    """engine.io's CLOSE packet, then a WebSocket close frame (without waiting long for
    the client's reply: the caller cancels this after its grace period)."""
    with contextlib.suppress(Exception):
        await ws.send_str("1")
        await ws.close(code=1001, message=b"server shutting down")


def _query_token(query: str) -> str | None:
    values = urllib.parse.parse_qs(query).get("token")
    return values[0] if values else None


def _ws_token(request: web.Request) -> str | None:
    """/ws clients pass the token as ``?token=`` (browsers cannot set headers on a
    WebSocket) or as ``Authorization: Bearer TOKEN``."""
    token = request.query.get("token")
    if token is None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
    return token


def _origin_allowed(request: web.Request, origins: Sequence[str] | None) -> bool:
    """A request without an Origin (not from a web page), or from an allowed one."""
    origin = request.headers.get("Origin")
    return not origin or not origins or origin in origins


def _json_response(request: web.Request, hub: SignalHub, body: object) -> web.Response:
    headers = {}
    origin = request.headers.get("Origin")
    if origin and _origin_allowed(request, hub.cors_origins):
        headers["Access-Control-Allow-Origin"] = origin
    return web.Response(
        body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def tracker_handler(hub: SignalHub) -> Callable[[web.Request], Coroutine[Any, Any,
                                                                         web.StreamResponse]]:
    """/announce: the WebTorrent WebSocket tracker protocol (signaling/tracker.py), so
    WebTorrent clients and `--tracker` can use this server as a tracker. Its peers are not
    the signaling rooms' (another protocol); a server with a token wants it here too."""
    tracker = TrackerHub()
    sockets: dict[object, web.WebSocketResponse] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        if not _origin_allowed(request, hub.cors_origins):
            raise web.HTTPForbidden(text="origin not allowed\n")
        if not hub.core.token_ok(_ws_token(request)):
            raise web.HTTPForbidden(text="this tracker needs ?token=\n")
        # A tracker connection counts toward its address's --max-per-ip like any other,
        # or one address could hold open sockets without bound through /announce.
        address = request.remote or ""
        if not hub.core.addresses.acquire(address):
            raise web.HTTPTooManyRequests(
                text=f"{hub.core.limits.max_per_ip} connections are already open from "
                f"{address}\n")
        ws = web.WebSocketResponse(compress=False, max_msg_size=4 * TRACKER_MAX_MESSAGE,
                                   heartbeat=hub.ping_interval)
        conn = object()
        try:
            await ws.prepare(request)
            sockets[conn] = ws
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                for target, text in tracker.message(conn, msg.data, time.monotonic()):
                    sock = sockets.get(target)
                    if sock is not None and not sock.closed:
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await sock.send_str(text)
        finally:
            tracker.closed(conn)
            sockets.pop(conn, None)
            hub.core.addresses.release(address)
        return ws

    return handler


def make_app(
    hub: SignalHub | None = None,
    *,
    cors_origins: Sequence[str] | None = None,
    log: SignalLog = no_log,
    **hub_options: Any,
) -> web.Application:
    """The aiohttp application: Socket.IO at /socket.io/, /ws, /announce (a WebTorrent
    tracker), /healthz, /stats.

    `hub_options` are `SignalHub` fields (limits, token, ping_interval, redis_url...).
    Other modules may add routes to it (``app[HUB_KEY]`` is the hub) before it runs.
    """
    hub = hub or SignalHub(cors_origins=cors_origins, log=log, **hub_options)
    app = web.Application()
    app[HUB_KEY] = hub
    hub.sio.attach(app)

    async def healthz(request: web.Request) -> web.Response:
        return _json_response(request, hub, {"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return _json_response(request, hub, await hub.full_stats())

    async def index(request: web.Request) -> web.StreamResponse:
        # "Opción 3" clients connect to the bare ws://host:port; serve them here too.
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await hub.ws_handler(request)
        return web.Response(
            text="p2p signaling server: Socket.IO at /socket.io/, WebSocket at /ws, "
            "GET /stats, GET /healthz\n"
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_get("/ws", hub.ws_handler)
    app.router.add_get("/announce", tracker_handler(hub))
    add_web_routes(app, index)  # the player page at / and /watch/<hash>; docs/BROWSER.md

    async def on_startup(app: web.Application) -> None:
        if hub.cluster is not None:
            await hub.cluster.start()

    async def on_shutdown(app: web.Application) -> None:
        await hub.close_all()
        if hub.cluster is not None:
            await hub.cluster.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


@dataclass
class SignalServer:
    """A running signaling server (see `start_signal_server`)."""

    host: str
    port: int
    app: web.Application
    runner: web.AppRunner
    tls: bool = False

    @property
    def hub(self) -> SignalHub:
        return self.app[HUB_KEY]

    @property
    def url(self) -> str:
        """A URL clients on this machine can use (a wildcard bind becomes loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def close(self) -> None:
        """Disconnect every client and stop listening."""
        await self.runner.cleanup()


async def start_signal_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    cors_origins: Sequence[str] | None = None,
    log: SignalLog = no_log,
    app: web.Application | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **hub_options: Any,
) -> SignalServer:
    """Start serving in the running event loop; `port` 0 picks a free port.

    `app` lets a caller pass a `make_app()` result it added routes to; else one is made
    with `hub_options` (`SignalHub` fields). `ssl_context` serves https/wss. The caller
    must ``await server.close()``. Raises OSError when the address cannot be bound, and
    P2PError when the cluster's Redis cannot be reached.
    """
    if app is None:
        app = make_app(cors_origins=cors_origins, log=log, **hub_options)
    # Open sockets are closed by on_shutdown; nothing else should keep shutdown waiting.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    server = SignalServer(host, bound_port, app, runner, tls=ssl_context is not None)
    cluster = server.hub.cluster
    from ..reach import local_addresses, reachable_urls

    log(Listening(url=server.url, host=host, port=bound_port,
                  node=None if cluster is None else cluster.node_id,
                  reachable=reachable_urls(host, bound_port, local_addresses(),
                                           tls=ssl_context is not None)))
    return server


def tls_context(cert: str, key: str | None = None) -> ssl.SSLContext:
    """A server TLS context from PEM files (`key` may be inside `cert`).

    Raises OSError / ssl.SSLError when they cannot be read or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def run_signal_server(
    host: str = "0.0.0.0",
    port: int = 8080,
    *,
    cors_origins: Sequence[str] | None = None,
    log: SignalLog = no_log,
    ssl_context: ssl.SSLContext | None = None,
    **hub_options: Any,
) -> None:
    """Serve until SIGINT or SIGTERM, then disconnect everyone and return.

    Uses uvloop when it is installed. Raises OSError when the address cannot be bound.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        server = await start_signal_server(
            host, port, cors_origins=cors_origins, log=log, ssl_context=ssl_context,
            **hub_options,
        )
        try:
            await stop.wait()
            log(Stopping(stats=server.hub.stats()))
        finally:
            await server.close()
        log(Stopped())

    run_event_loop(main())


def run_event_loop(main: Any) -> None:
    """``asyncio.run`` on uvloop when it is importable (it is a dependency off Windows)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


__all__ = [
    "HUB_KEY",
    "OrjsonCodec",
    "SignalHub",
    "SignalLog",
    "SignalServer",
    "make_app",
    "run_event_loop",
    "run_signal_server",
    "start_signal_server",
    "tls_context",
]
