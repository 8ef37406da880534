"""The mDNS adapter: announce a share, or look for one, with python-zeroconf.

The decisions (what to announce, which answer to dial) are p2pcli/lan.py's; this module
only moves them on and off the network. zeroconf is imported when used, never at module
level: `p2p --help` and the commands that do not touch the LAN must not pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from . import events, lan, reach
from .errors import NoPeers, SignalUnreachable
from .events import EventSink
from .link import DEFAULT_SIGNAL

if TYPE_CHECKING:
    from zeroconf import ServiceInfo
    from zeroconf.asyncio import AsyncZeroconf

    from .link import Target
    from .swarm import SwarmConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


def lan_addresses() -> list[str]:
    """This machine's addresses a LAN peer may dial (lan.lan_ip's rules)."""
    return [a for a in (lan.lan_ip(ip) for ip, _ in reach.interfaces()) if a is not None]


def local_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for ip, prefix in reach.interfaces():
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(f"{ip.split('%')[0]}/{prefix}", strict=False))
    return nets


class Announcer:
    """One share's DNS-SD instance, registered until `close()` sends its goodbyes."""

    def __init__(self) -> None:
        self._zc: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None

    async def start(self, content_id: str, port: int, addresses: list[str],
                    signal_url: str | None) -> events.LanAnnounced:
        from zeroconf import ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        label = lan.instance_name(content_id, secrets.token_hex(3))
        host = socket.gethostname().split(".")[0] or "p2p"
        self._zc = AsyncZeroconf()
        self._info = ServiceInfo(
            lan.SERVICE_TYPE,
            f"{label}.{lan.SERVICE_TYPE}",
            port=port,
            properties=lan.txt_record(content_id, signal_url),
            server=f"{host}-{label}.local.",
            parsed_addresses=addresses,
        )
        # Probing for a unique name takes ~0.75 s; the link is printed before (the caller
        # runs this in the background), so a LAN announcement never delays the seeder.
        await self._zc.async_register_service(self._info, allow_name_change=True)
        return events.LanAnnounced(
            service=self._info.name, port=port, addresses=addresses, signal=signal_url
        )

    async def close(self) -> None:
        """Withdraw the instance (goodbye packets, TTL 0) and stop listening."""
        zc, info = self._zc, self._info
        self._zc = self._info = None
        if zc is None:
            return
        try:
            if info is not None:
                task = await zc.async_unregister_service(info)
                await task  # the goodbyes are sent before we return
        except Exception as e:  # never let the LAN keep a seeder from stopping
            log.debug("mDNS unregister failed: %s", e)
        finally:
            with contextlib.suppress(Exception):
                await zc.async_close()


async def announce(
    content_id: str, *, port: int | None, signal_url: str | None, token: bool,
    hosts: tuple[str, ...], emit: EventSink,
) -> Announcer | None:
    """Announce the share if the rules allow it; tell the user either way. Failures of the
    LAN (no multicast interface, a socket refused) are a warning, never a seeding failure."""
    reason = lan.why_not_announced(port=port, signal_url=signal_url, token=token)
    if reason is None:
        addresses = [a for a in (lan.lan_ip(h) for h in hosts) if a] if hosts else lan_addresses()
        if not addresses:
            reason = "this machine has no private-network address"
    if reason is not None:
        emit(events.Warning(message=f"not announced on the LAN: {reason}"))
        return None
    announcer = Announcer()
    dial_port = port if signal_url is None else (urlsplit(signal_url).port or 0)
    try:
        emit(await announcer.start(content_id, dial_port, addresses, signal_url))
    except asyncio.CancelledError:  # stopped while probing: withdraw what was sent
        await announcer.close()
        raise
    except Exception as e:
        await announcer.close()
        emit(events.Warning(message=f"not announced on the LAN: mDNS failed ({e})"))
        return None
    return announcer


async def find_seeder(content_id: str, seconds: float = lan.BROWSE_SECONDS) -> lan.Found | None:
    """Browse the LAN for a seeder of `content_id` for at most `seconds`; the first
    acceptable answer wins (lan.accept). None when nothing usable answered."""
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    loop = asyncio.get_running_loop()
    found: asyncio.Future[lan.Found] = loop.create_future()
    search = lan.Search(content_id, local_networks())
    pending: set[asyncio.Task] = set()

    try:
        azc = AsyncZeroconf()
    except Exception as e:  # no usable interface, socket refused: as if nobody answered
        log.debug("mDNS unavailable: %s", e)
        return None

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(lan.SERVICE_TYPE, name)
        try:
            if not await info.async_request(azc.zeroconf, int(seconds * 1000)):
                return
        except Exception as e:  # a malformed record zeroconf chokes on: skip it
            log.debug("mDNS lookup of %r failed: %s", name, e)
            return
        if search.found is not None:
            return  # another answer already won
        answer = lan.Answer(name=name, port=info.port,
                            addresses=tuple(info.parsed_addresses()), txt=info.properties)
        got = search.offer(answer)
        if got is not None and not found.done():
            found.set_result(got)
        elif got is None:
            log.debug("ignored mDNS answer %r", answer)

    def on_change(zeroconf, service_type: str, name: str, state_change) -> None:
        if state_change is ServiceStateChange.Added and search.should_resolve(name):
            task = loop.create_task(resolve(name))
            pending.add(task)
            task.add_done_callback(pending.discard)

    browser = None
    try:
        browser = AsyncServiceBrowser(azc.zeroconf, lan.SERVICE_TYPE, handlers=[on_change])
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(found), seconds)
        return None
    finally:
        for task in list(pending):
            task.cancel()
        if browser is not None:
            await browser.async_cancel()
        await azc.async_close()


async def with_lan_lookup(
    target: Target, config: SwarmConfig, emit: EventSink,
    main: Callable[[], Awaitable[T]], *, search: bool = True,
    seconds: float = lan.BROWSE_SECONDS,
) -> T:
    """For a bare hash: look on the LAN first (when `search`), then run `main` against what
    was found, or against the default server; when that cannot be reached either, say in
    one line where we looked and what to pass instead."""
    if search:
        started = time.monotonic()
        got = await find_seeder(target.content_id, seconds)
        emit(events.LanSearched(
            seconds=round(time.monotonic() - started, 3),
            url=got.signal_url if got else None,
            service=got.name if got else None,
        ))
        if got is not None:
            config.signal_urls = [got.signal_url]
            return await main()
    try:
        return await main()
    except SignalUnreachable:
        if config.trackers or config.peerjs:  # the error names what was tried
            raise
        where = (f"answered on the LAN within {seconds:g}s" if search
                 else "is known: the LAN search is off (--no-lan / P2P_LAN=0)")
        raise NoPeers(
            f"no seeder of {target.content_id[:16]}... {where}, and no signaling server runs "
            f"at the default {DEFAULT_SIGNAL}; pass the full p2p:// link from the seeder, or "
            "--signal URL"
        ) from None
