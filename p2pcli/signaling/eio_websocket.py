"""A leaner engine.io WebSocket transport for python-engineio's asyncio server (aiohttp).

Why: python-engineio (4.x, on Python 3.11) spends more CPU moving a small message than
the signaling server spends handling it. Per received frame it starts a task and an
``asyncio.wait_for``; per sent frame it goes through a queue and wakes a writer task
that waits on it with another ``wait_for``. Measured with benchmarks/signal_load.py,
that is most of the server's CPU per relayed message.

What: `FastSocket` is engine.io's `AsyncSocket` with three things done more directly
once a session is on WebSocket (connected straight over WebSocket, or upgraded from
long-polling):

- reading: one loop on aiohttp's ``receive()``, no task or timer per frame (a dead
  client is still found: engine.io's service task checks every socket's ping timeout
  and closes it, which ends this loop);
- writing: frames go straight to the WebSocket; the queue only holds what was sent
  before the switch and is flushed first, so order is kept. A client that stops reading
  is disconnected once `MAX_BUFFERED` bytes wait for it, rather than make the peers
  relaying to it wait (engine.io's queue instead grew without bound);
- Socket.IO events without an ack id on the main namespace (``42["event",...]``, which
  is every relayed message) are offered to a ``fast_event`` callback before engine.io
  and python-socketio decode and dispatch them; it returns False to decline.

Fixes to long-polling sessions ride along:

- python-engineio (client and server) refuses a payload of more than 16 packets,
  dropping all of them; yet both of its sides batch everything queued into one payload.
  A burst of ICE candidates is enough: the server logged a traceback and lost the POST,
  and a python-socketio client that was sent 17 messages at once dropped its connection.
  We accept up to `MAX_POST_PACKETS` per POST (the body size stays bounded by
  ``max_http_buffer_size``) and answer each GET with at most `MAX_POLL_PACKETS`, the
  rest waiting for the next GET.
- When a polling client says goodbye, engine.io leaves its pending GET hanging until
  the ping timeout, so the client's ``disconnect()`` takes ~30 s. We end that GET.
- When the server closes a polling session, engine.io waits, without a bound, for a
  GET to fetch the CLOSE packet. We wait `CLOSE_WAIT` seconds at most.
- engine.io's send queue has no bound: a long-polling client that answers pings but
  never GETs would grow it for as long as others relay to it. `BoundedSocket` (the base
  of `FastSocket`, and the session class when FastSocket is off) cuts a session off once
  `MAX_BUFFERED` bytes wait in its queue (`SizedQueue` counts them), like a WebSocket
  client that stops reading.

Everything else (handshake, pings, close, acks, other namespaces) is engine.io's own
code. The socket is switched to this class right after engine.io makes
it (see server.py), which is why this depends on engine.io internals; pyproject.toml
pins python-engineio to the 4.x series this was written against, and the signaling
tests run every event over both transports through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import WSMsgType, web
from engineio import async_socket, exceptions, packet

#: Packets one long-polling POST may carry (engine.io's own limit is 16).
MAX_POST_PACKETS = 1024

#: Packets sent in one long-polling GET response: what python-engineio clients accept.
MAX_POLL_PACKETS = 16

#: Unsent bytes a WebSocket client may let pile up before it is disconnected.
MAX_BUFFERED = 1024 * 1024

#: Seconds `FastSocket.close` waits for queued packets (the CLOSE) to be fetched.
CLOSE_WAIT = 1.0

#: ``fast_event(eio_sid, text) -> handled``; text is a whole ``42["event",...]`` frame.
FastEvent = Callable[[str, str], Awaitable[bool]]

_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _packet_size(pkt: packet.Packet | None) -> int:
    """About what `pkt` costs in the queue: its payload's length (a Socket.IO packet is
    one string), or a small constant for control packets and the closing marker."""
    data = pkt.data if pkt is not None else None
    return len(data) if isinstance(data, str | bytes) else 16


class SizedQueue(asyncio.Queue[Any]):
    """engine.io's per-session send queue, counting the bytes it holds (`size`).

    `_put` and `_get` are the hooks asyncio.Queue's own subclasses (LifoQueue...) use,
    so every way in or out (put, put_nowait, get, get_nowait) is counted.
    """

    size: int = 0

    def _put(self, item: Any) -> None:
        self.size += _packet_size(item)
        super()._put(item)  # type: ignore[misc]

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        self.size -= _packet_size(item)
        return item


class BoundedSocket(async_socket.AsyncSocket):
    """engine.io session whose send queue may not hold more than `MAX_BUFFERED` bytes.

    The queue is what a long-polling client has not fetched yet (and, on engine.io's
    stock WebSocket path, what its writer has not written). Over the bound the session
    is cut off: its queue is dropped and it is closed, which removes the peer from its
    rooms, as a WebSocket peer that stops reading is (`FastSocket.send`).
    """

    cut_off: bool = False

    async def send(self, pkt: packet.Packet) -> None:
        if self.cut_off:
            return
        queue = self.queue
        if isinstance(queue, SizedQueue) and queue.size > MAX_BUFFERED:
            self._cut_off()
            return
        await super().send(pkt)

    def _cut_off(self) -> None:
        self.cut_off = True
        # Free the memory now; nobody will fetch these.
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        # Closing runs the disconnect handlers, which send to other peers: not from
        # inside the send of whoever was relaying to this one.
        _spawn(self._close_cut_off())

    async def _close_cut_off(self) -> None:
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        # Ends a pending long-poll (and engine.io's stock WebSocket writer).
        self.queue.put_nowait(None)


class FastSocket(BoundedSocket):
    """engine.io session whose WebSocket I/O is done directly (see the module doc)."""

    # Class attributes, so instances switched from AsyncSocket start with them.
    _ws: web.WebSocketResponse | None = None
    # uvloop's transports have the WriteTransport methods without being registered as one.
    _transport: asyncio.WriteTransport | None = None
    fast_event: FastEvent | None = None

    async def send(self, pkt: packet.Packet) -> None:
        ws = self._ws
        if ws is None:
            await super().send(pkt)
            return
        if not await self.check_ping_timeout():
            return
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() > MAX_BUFFERED:
            # Not reading: cut it off; the read loop then ends and cleans up.
            transport.abort()
            return
        data = pkt.encode()
        try:
            if isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_bytes(data)
        except ConnectionError:
            pass  # the read loop sees the connection go and cleans up

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        was_open = not self.closed and not self.closing
        await super().close(wait=False, abort=abort, reason=reason)
        if was_open and abort and not self.upgraded:
            # Answer a long-poll that may be waiting, rather than leave the client's
            # disconnect waiting for it to time out. NOOP is ignored by every client.
            self.queue.put_nowait(packet.Packet(packet.NOOP))
        if was_open and wait:
            # engine.io waits for the queue to drain so the CLOSE packet gets out; on
            # long-polling that needs a GET that may never come (it hung the response to
            # an oversized POST for good). Wait a little, not forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), CLOSE_WAIT)
        ws = self._ws
        if ws is not None and not ws.closed:
            # Ends the read loop. In the background: aiohttp waits for the client's
            # close frame, and the caller (often engine.io's service task) must not.
            _spawn(ws.close())

    async def poll(self) -> list[packet.Packet]:
        """Wait for packets for a long-polling GET; at most `MAX_POLL_PACKETS` of them."""
        timeout = self.server.ping_interval + self.server.ping_timeout
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty() from None
        self.queue.task_done()
        if first is None:
            return []
        packets = [first]
        while len(packets) < MAX_POLL_PACKETS:
            try:
                pkt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.queue.task_done()
            if pkt is None:  # closing: leave the marker for the next poll
                self.queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """Take the packets of a long-polling POST (engine.io's, with the limits above)."""
        length = int(environ.get("CONTENT_LENGTH", "0"))
        if length > self.server.max_http_buffer_size:
            raise exceptions.ContentTooLongError()
        body = (await environ["wsgi.input"].read(length)).decode("utf-8")
        if body.startswith("d="):  # JSONP
            body = urllib.parse.parse_qs(body)["d"][0]
        encoded = body.split("\x1e") if body else []
        if len(encoded) > MAX_POST_PACKETS:
            raise exceptions.ContentTooLongError()
        fast = self.fast_event
        for text in encoded:
            if fast is not None and text.startswith('42["') and await fast(self.sid, text):
                continue
            if not await self._receive_encoded(text):
                return

    async def _receive_encoded(self, data: str | bytes) -> bool:
        """Decode and handle one packet; False when the session is closed."""
        try:
            await self.receive(packet.Packet(encoded_packet=data))
        except exceptions.UnknownPacketError:
            pass
        except exceptions.SocketIsClosedError:
            return False
        except Exception:
            # Same policy as engine.io's own loop: a bad packet is logged (rate limited,
            # see server.py) and the connection goes on.
            self.server.logger.exception("Unknown receive error")
        return True

    async def _websocket_handler(self, ws: Any) -> None:
        """Run the session over WebSocket until either side closes it."""
        sock: web.WebSocketResponse = ws.response
        transport = cast("asyncio.WriteTransport | None", ws.environ["aiohttp.request"].transport)
        if transport is not None:
            # Sends must never wait for the client to drain (a sender's handler would
            # stall), so aiohttp's pause threshold goes above our disconnect threshold.
            transport.set_write_buffer_limits(high=4 * MAX_BUFFERED)
        if self.connected:
            # Upgrade from long-polling: "2probe" -> "3probe", end the pending poll,
            # then "5". Packets sent meanwhile stay queued; they are flushed below.
            self.upgrading = True
            if await _next_text(sock) != "2probe":
                self.upgrading = False
                return
            await sock.send_str("3probe")
            await self.queue.put(packet.Packet(packet.NOOP))
            if await _next_text(sock) != "5":
                self.upgrading = False
                return
            self.upgrading = False
        else:
            self.connected = True
        self.upgraded = True

        # Hand writing over from the queue to direct sends. The check that the queue is
        # empty and the switch happen with no await between them, so nothing sent
        # meanwhile can overtake what was queued.
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:
                return
            data = pkt.encode()
            if isinstance(data, str):
                await sock.send_str(data)
            else:
                await sock.send_bytes(data)
        self._ws = sock
        self._transport = transport
        try:
            await self._read_loop(sock)
        finally:
            self._ws = None
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            await sock.close()

    async def _read_loop(self, sock: web.WebSocketResponse) -> None:
        fast = self.fast_event
        while not self.closed:
            msg = await sock.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                data = msg.data
                if fast is not None and data.startswith('42["') and await fast(self.sid, data):
                    continue
            elif kind is WSMsgType.BINARY:
                data = msg.data
            else:  # CLOSE, CLOSING, CLOSED, ERROR (including frames over max_msg_size)
                return
            if not await self._receive_encoded(data):
                return


async def _next_text(sock: web.WebSocketResponse) -> str | None:
    msg = await sock.receive()
    return msg.data if msg.type is WSMsgType.TEXT else None
