"""Checking that STUN and TURN servers answer, before aiortc is given them.

aiortc uses only the first STUN and the first TURN URL it is given
(`aiortc.rtcicetransport.connection_kwargs`), and aioice waits up to 5 s for each of
them while it gathers candidates for every new connection. So before any connection is
made, `choose_ice_servers` asks every server once (a STUN binding; a TURN allocation with
aioice's own TURN client, deleted at once) and keeps the first STUN and the first TURN
server that work. `check_server` is the same check, reported in words (`p2p doctor`).

Where the servers come from (the user's URLs, the signaling server's `ice-config`) is
iceurls.py. A URL is read here with aiortc's own parser on purpose: what is checked is
whether aiortc can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioice import stun, turn
from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

from .iceurls import server_urls

log = logging.getLogger(__name__)

#: Seconds to wait for a STUN or TURN server's answer (aioice retransmits at 0, 0.5, 1.5 s).
PROBE_TIMEOUT = 3.0


@dataclass
class ServerCheck:
    """What one STUN or TURN URL answered."""

    url: str
    "The URL checked (credentials are never part of it)."
    kind: str
    "'stun' or 'turn'."
    ok: bool
    "It gave a server-reflexive address (STUN) or a relay allocation (TURN)."
    problem: str | None = None
    """None when ok; else 'credentials' (401/403), 'refused' (nothing listens there),
    'no-answer' (down, or the path to it is blocked), 'unreachable' (no route, unknown
    host), 'unsupported' (a URL aiortc cannot use) or 'error' (any other refusal)."""
    message: str = ""
    "One sentence for a person: what happened and, when it failed, what to check."
    address: tuple[str, int] | None = None
    "STUN: our address as the server sees it. TURN: the relayed address it allocated."
    mapped: tuple[str, int] | None = None
    "TURN: our address as the TURN server sees it."
    server: RTCIceServer | None = None
    "The server entry (with credentials) this URL came from."


async def check_server(
    server: RTCIceServer, url: str, timeout: float = PROBE_TIMEOUT
) -> ServerCheck:
    """Ask one URL of `server` once: a STUN binding, or a TURN allocation (then deleted)."""
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        return ServerCheck(url, "stun" if url.startswith("stun") else "turn", False,
                           "unsupported", f"{url} is not a STUN or TURN URL p2p can use",
                           server=server)
    kind = "turn" if parsed["scheme"] in ("turn", "turns") else "stun"
    addr = (parsed["host"], parsed["port"])
    if parsed["scheme"] == "stuns" or (
        kind == "turn" and (parsed["transport"], parsed["scheme"]) not in
        (("udp", "turn"), ("tcp", "turn"), ("tcp", "turns"))
    ):
        return ServerCheck(url, kind, False, "unsupported",
                           f"{url}: aiortc supports stun:, turn: over UDP or TCP, and turns: "
                           "over TCP only", server=server)
    try:
        if kind == "stun":
            mapped = await asyncio.wait_for(_stun_binding(addr), timeout)
            return ServerCheck(url, kind, True, None,
                               f"STUN server answered: this machine is seen as "
                               f"{mapped[0]}:{mapped[1]}", address=mapped, server=server)
        if not server.username or server.credential is None:
            return ServerCheck(url, kind, False, "credentials",
                               f"TURN server {url} was given without a username and "
                               "password", server=server)
        relayed, mapped = await asyncio.wait_for(
            _turn_allocation(addr, server.username, server.credential,
                             parsed["transport"], parsed["scheme"] == "turns"),
            timeout,
        )
        return ServerCheck(url, kind, True, None,
                           f"TURN server gave a relay address {relayed[0]}:{relayed[1]}",
                           address=relayed, mapped=mapped, server=server)
    except TimeoutError:
        return ServerCheck(url, kind, False, "no-answer",
                           f"no answer from {url} within {timeout:g} s: the server is down, "
                           f"or a firewall blocks {parsed.get('transport', 'udp').upper()} "
                           f"to port {addr[1]}", server=server)
    except stun.TransactionTimeout:
        return ServerCheck(url, kind, False, "no-answer",
                           f"no answer from {url}: the server is down, or a firewall blocks "
                           f"port {addr[1]}", server=server)
    except stun.TransactionFailed as e:
        return _refusal(url, kind, e, server)
    except ConnectionRefusedError:
        return ServerCheck(url, kind, False, "refused",
                           f"nothing is listening at {addr[0]}:{addr[1]} (connection "
                           f"refused): the {kind.upper()} server is not running there",
                           server=server)
    except socket.gaierror as e:
        return ServerCheck(url, kind, False, "unreachable",
                           f"cannot resolve {addr[0]} ({e.strerror}): check the host name",
                           server=server)
    except OSError as e:
        return ServerCheck(url, kind, False, "unreachable",
                           f"cannot reach {addr[0]}:{addr[1]} ({e.strerror or e})",
                           server=server)
    except (ConnectionError, ValueError) as e:
        return ServerCheck(url, kind, False, "error", f"{url} answered oddly: {e}",
                           server=server)


def _refusal(url: str, kind: str, e: stun.TransactionFailed, server: RTCIceServer) -> ServerCheck:
    code, reason = e.response.attributes.get("ERROR-CODE", (0, ""))
    said = f"{code} {reason}".strip()
    if code in (401, 403):
        return ServerCheck(
            url, kind, False, "credentials",
            f"TURN server {url} rejected the credentials ({said}): the signaling server's "
            "--turn-secret must equal the TURN server's static-auth-secret (or the "
            "username/password are wrong, or expired: check both clocks)",
            server=server,
        )
    return ServerCheck(url, kind, False, "error", f"{url} refused the request ({said})",
                       server=server)


class _StunClient(asyncio.DatagramProtocol):
    """A connected UDP socket for one STUN transaction; ICMP errors end it at once."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, stun.Transaction] = {}
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        with contextlib.suppress(ValueError):
            message = stun.parse_message(data)
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        if not self.failed.done():
            self.failed.set_exception(exc)

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(message))


async def _first(main: Any, failed: asyncio.Future[None]) -> Any:
    """Await `main`, unless `failed` (an ICMP error on the socket) comes first."""
    task = asyncio.ensure_future(main)
    try:
        await asyncio.wait({task, failed}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            failed.result()  # raises the socket error
        return task.result()
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if failed.done() and not failed.cancelled():
            failed.exception()  # retrieved: no "never retrieved" warning
        failed.cancel()


async def _stun_binding(addr: tuple[str, int]) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_StunClient, remote_addr=addr)
    try:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        transaction = stun.Transaction(request, addr, proto)
        proto.transactions[request.transaction_id] = transaction
        response, _ = await _first(transaction.run(), proto.failed)
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is None:
            raise ConnectionError("its answer has no XOR-MAPPED-ADDRESS")
        return (mapped[0], mapped[1])
    finally:
        transport.close()


class _TurnUdpClient(turn.TurnClientUdpProtocol):
    """aioice's TURN client, told about ICMP errors (aioice ignores them and times out)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def error_received(self, exc: Exception) -> None:
        if not self.failed.done():
            self.failed.set_exception(exc)


async def _turn_allocation(
    addr: tuple[str, int], username: str, password: str, transport: str, tls: bool
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Allocate a relay with aioice's TURN client and delete it: (relayed, mapped)."""
    loop = asyncio.get_running_loop()
    args = dict(username=username, password=password, lifetime=60, channel_refresh_time=60)
    client: turn.TurnClientMixin
    if transport == "tcp":
        sock_transport, client = await loop.create_connection(
            lambda: turn.TurnClientTcpProtocol(addr, **args),  # type: ignore[arg-type]
            host=addr[0], port=addr[1], ssl=tls or None,
        )
        failed: asyncio.Future[None] = loop.create_future()
    else:
        sock_transport, client = await loop.create_datagram_endpoint(
            lambda: _TurnUdpClient(addr, **args),  # type: ignore[arg-type]
            remote_addr=addr,
        )
        failed = client.failed  # type: ignore[attr-defined]
    try:
        relayed = await _first(client.connect(), failed)
        mapped = client.mapped_address
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.delete(), 1.0)
        return (relayed[0], relayed[1]), (mapped[0], mapped[1]) if mapped else ("", 0)
    finally:
        if client.refresh_task is not None:
            client.refresh_task.cancel()
        sock_transport.close()


async def choose_ice_servers(
    servers: list[RTCIceServer],
    timeout: float = PROBE_TIMEOUT,
    warn: Callable[[str], None] | None = None,
) -> list[RTCIceServer]:
    """The first STUN and the first TURN URL that work, as aiortc should get them.

    aiortc would take the first of each whether it works or not; a dead one costs every
    new connection aioice's 5 s gathering timeout and, for TURN, the relay. All URLs are
    asked at once, and the answer is ready as soon as each kind is decided (the first URL
    of that kind that works, all URLs before it having failed). Failures that decided
    something are `warn`ed about; with no TURN left, connections are direct only.
    """
    urls = [(s, url) for s in servers for url in server_urls([s])]
    if not urls:
        return []
    kinds = ["turn" if url.startswith("turn") else "stun" for _, url in urls]
    tasks = [asyncio.ensure_future(check_server(s, url, timeout)) for s, url in urls]
    chosen: dict[str, ServerCheck] = {}
    try:
        while True:
            undecided = False
            for kind in ("stun", "turn"):
                for t, k in zip(tasks, kinds, strict=True):
                    if k != kind:
                        continue
                    if not t.done():
                        undecided = True
                    elif t.result().ok:
                        chosen[kind] = t.result()
                    else:
                        continue
                    break
            if not undecided:
                break
            await asyncio.wait([t for t in tasks if not t.done()],
                               return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            # The failures that came before the chosen one (or all, if none works).
            if t.done() and not t.result().ok and warn is not None:
                c = t.result()
                if c.kind not in chosen or tasks.index(t) < _index(tasks, chosen[c.kind]):
                    warn(c.message)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if warn is not None and "turn" not in chosen and "turn" in kinds:
        warn("no TURN server works: only direct connections are possible "
             "(peers behind strict NATs or firewalls cannot be reached)")
    out = []
    for kind in ("stun", "turn"):
        c = chosen.get(kind)
        if c is not None and c.server is not None:
            out.append(RTCIceServer(urls=[c.url], username=c.server.username,
                                    credential=c.server.credential))
    log.info("ICE servers chosen: %s", [s.urls for s in out])
    return out


def _index(tasks: list[asyncio.Future[ServerCheck]], check: ServerCheck) -> int:
    return next(i for i, t in enumerate(tasks) if t.done() and t.result() is check)
