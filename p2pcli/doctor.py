"""`p2p doctor`: can peers on different networks connect through this setup?

Checks, in order, each reported as a `Check` event (events.py) the moment it is known:

1. `signaling`: the signaling server answers (and takes our token).
2. `ice-config`: which STUN/TURN servers it hands out (or the ones given with --ice-server).
3. `stun` / `turn`, one per URL: a STUN binding gives a server-reflexive address; a TURN
   allocation succeeds, or why not (credentials refused, server down, unreachable).
4. `connection`: two peer connections inside this process, connected to each other
   through the first working TURN server with relay-only ICE (the path a peer behind a
   strict NAT takes), a data-channel message across it, and the kind of candidate pair
   ICE picked. Without a working TURN server, the same test with every candidate allowed.

Each check ends "ok", "warn" (works, but peers on other networks may not connect) or
"fail". The report's `ok` is true when nothing failed; a `Doctor` event ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection

from . import events
from .errors import P2PError
from .events import EventSink
from .iceprobe import PROBE_TIMEOUT, ServerCheck, check_server
from .iceurls import server_urls, servers_from_config, turn_urls
from .rtc import PeerLink
from .signaling.client import SignalHandlers, SignalingClient

#: Seconds to wait for the `ice-config` event after connecting (our server sends it at
#: once; other servers never do).
ICE_CONFIG_WAIT = 3.0
#: Seconds for the test connection to open and carry a message.
CONNECT_TIMEOUT = 15.0


@dataclass
class DoctorOptions:
    signal_urls: list[str]
    "Signaling servers to ask (the first that answers)."
    token: str | None = None
    "Signaling access token."
    ice_servers: list[RTCIceServer] | None = None
    "Check these instead of the ones the signaling server hands out (--ice-server)."
    timeout: float = PROBE_TIMEOUT
    "Seconds to wait for each STUN/TURN server."


@dataclass
class Report:
    checks: list[events.Check] = field(default_factory=list)
    "Every check made, in order."

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[str]:
        return [c.check for c in self.checks if c.status == "fail"]


#: Reports one check: `check(name, status, message, **fields of events.Check)`.
CheckSink = Callable[..., None]


async def doctor(opts: DoctorOptions, emit: EventSink) -> Report:
    """Run every check; `emit` gets a `Check` for each, then the `Doctor` summary."""
    report = Report()

    def check(name: str, status: str, message: str, **fields: Any) -> None:
        ev = events.Check(check=name, status=status, message=message, **fields)
        report.checks.append(ev)
        emit(ev)

    servers = await _signaling(opts, check)
    if servers is not None:
        works = await _ice_servers(servers, opts.timeout, check)
        await _connection(works, check)
    emit(events.Doctor(ok=report.ok, failed=report.failed))
    return report


async def _signaling(opts: DoctorOptions, check: CheckSink) -> list[RTCIceServer] | None:
    """Check 1 and 2; the ICE servers to check next (None: stop here)."""
    got: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    def on_ice_config(cfg: dict) -> None:
        if not got.done():
            got.set_result(cfg)

    client = SignalingClient(opts.signal_urls, SignalHandlers(ice_config=on_ice_config),
                             token=opts.token, retries=1, timeout=opts.timeout + 2)
    started = time.monotonic()
    try:
        try:
            await client.connect()
        except P2PError as e:
            check("signaling", "fail", e.message, urls=opts.signal_urls)
            return None
        check("signaling", "ok",
              f"signaling server {client.url} answers "
              f"({(time.monotonic() - started) * 1000:.0f} ms)", url=client.url)
        cfg: dict | None = None
        with contextlib.suppress(TimeoutError):
            cfg = await asyncio.wait_for(asyncio.shield(got), ICE_CONFIG_WAIT)
    finally:
        await client.close()

    if opts.ice_servers is not None:
        servers = opts.ice_servers
        source = "given with --ice-server (the signaling server's are ignored)"
    elif cfg is None:
        check("ice-config", "warn",
              "the signaling server hands out no STUN/TURN servers (no ice-config event): "
              "peers connect only when they can reach each other directly; run "
              "serve-signal with --ice-server turn:HOST --turn-secret SECRET, or give "
              "--ice-server to seed and fetch", servers=[])
        return []
    else:
        servers = servers_from_config(cfg)
        source = "handed out by the signaling server"
    urls = server_urls(servers)
    if not urls:
        check("ice-config", "warn",
              f"no STUN/TURN servers {source}: peers connect only when they can reach "
              "each other directly", servers=[])
        return []
    status, note = "ok", ""
    if not turn_urls(servers):
        status, note = "warn", "; no TURN server, so peers behind strict NATs cannot connect"
    servers_word = "ICE server" if len(urls) == 1 else "ICE servers"
    check("ice-config", status, f"{len(urls)} {servers_word} {source}: {', '.join(urls)}{note}",
          servers=urls)
    return servers


async def _ice_servers(servers: list[RTCIceServer], timeout: float,
                       check: CheckSink) -> dict[str, ServerCheck]:
    """Check 3; the first working STUN and TURN URL by kind."""
    jobs = [check_server(s, u, timeout) for s in servers for u in server_urls([s])]
    works: dict[str, ServerCheck] = {}
    for c in await asyncio.gather(*jobs):
        address = f"{c.address[0]}:{c.address[1]}" if c.address else None
        if c.ok:
            works.setdefault(c.kind, c)
        check(c.kind, "ok" if c.ok else "fail", c.message, url=c.url, problem=c.problem,
              address=address)
    return works


async def _connection(works: dict[str, ServerCheck], check: CheckSink) -> None:
    """Check 4: two links in this process, through the relay when there is one."""
    turn, stun = works.get("turn"), works.get("stun")
    if turn is not None and turn.server is not None:
        servers = [RTCIceServer(urls=[turn.url], username=turn.server.username,
                                credential=turn.server.credential)]
        policy, how = RTCIceTransportPolicy.RELAY, f"through the TURN relay {turn.url}"
    else:
        servers = [RTCIceServer(urls=[stun.url])] if stun is not None else []
        policy, how = RTCIceTransportPolicy.ALL, "with every candidate allowed"
    kind, error = await test_connection(servers, policy)
    if error is not None:
        hint = (" (the TURN allocation worked, so the TURN server probably refuses to "
                "relay to these addresses: check its denied-peer-ip / allowed-peer-ip)"
                if policy is RTCIceTransportPolicy.RELAY else "")
        check("connection", "fail", f"a test connection {how} failed: {error}{hint}",
              connection=kind, policy=policy.value)
        return
    words = {"relay": "relayed through TURN", "srflx": "direct, through NAT",
             "host": "direct"}.get(kind or "", "of an unknown kind")
    note = ""
    if policy is RTCIceTransportPolicy.ALL:
        note = ("; without a working TURN server, peers that cannot reach each other "
                "directly will not connect")
    check("connection", "ok",
          f"a test connection {how} opened and carried data: its candidate pair is "
          f"{kind} ({words}){note}", connection=kind, policy=policy.value)


async def test_connection(
    servers: list[RTCIceServer], policy: RTCIceTransportPolicy,
    timeout: float = CONNECT_TIMEOUT,
) -> tuple[str | None, str | None]:
    """Connect two data channels in this process: (candidate pair kind, error or None)."""
    a = PeerLink(RTCPeerConnection(RTCConfiguration(iceServers=servers,
                                                    iceTransportPolicy=policy)))
    b = PeerLink(RTCPeerConnection(RTCConfiguration(iceServers=servers,
                                                    iceTransportPolicy=policy)))
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(m: bytes | str) -> None:
        if not received.done():
            received.set_result(m if isinstance(m, bytes) else m.encode())

    try:
        offer = await a.make_offer()
        if "a=candidate" not in offer["sdp"]:
            return None, "no ICE candidate was gathered"
        await a.accept_answer(await b.answer_offer(offer))
        if not (await a.wait_open(timeout) and await b.wait_open(timeout)):
            return a.candidate_pair_kind(), f"it did not open within {timeout:g} s"
        b.on_message = on_message
        a.send_nowait(b"p2p doctor")
        try:
            await asyncio.wait_for(received, timeout)
        except TimeoutError:
            return a.candidate_pair_kind(), f"no data arrived within {timeout:g} s"
        return a.candidate_pair_kind(), None
    except Exception as e:  # aiortc raises many kinds; the user needs the words
        return None, f"{type(e).__name__}: {e}"
    finally:
        await a.close()
        await b.close()
