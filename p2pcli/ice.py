"""ICE configuration for aiortc: explicit servers, and a choice of local host addresses.

aiortc falls back to a public STUN server when given no ICE servers, so we always pass an
explicit list. aioice offers every non-loopback interface as a host candidate and has no
option to choose them; `set_host_addresses` installs that choice process-wide by replacing
`aioice.ice.get_host_addresses`, which `Connection.gather_candidates` looks up at call time.
tests/test_ice.py fails loudly if a new aioice stops calling it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from .errors import UsageError

_original_get_host_addresses = aioice.ice.get_host_addresses
_chosen: tuple[str, ...] | None = None


def parse_host_addresses(values: Iterable[str]) -> tuple[str, ...]:
    """Validate user-given addresses (comma-separated values allowed)."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_address(item)))
            except ValueError:
                raise UsageError(
                    f"--ice-host {item!r} is not an IP address; give e.g. 127.0.0.1 or 192.168.1.5"
                ) from None
    return tuple(out)


def set_host_addresses(addresses: Iterable[str] | None) -> None:
    """Offer exactly these local addresses as ICE host candidates (None: aioice's default)."""
    global _chosen
    chosen = tuple(addresses) if addresses is not None else None
    _chosen = chosen or None
    if _chosen is None:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in _chosen or ()
            if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)
        ]

    aioice.ice.get_host_addresses = get_host_addresses


def host_addresses() -> tuple[str, ...] | None:
    return _chosen


def parse_ice_servers(values: Iterable[str]) -> list[RTCIceServer]:
    """`stun:`/`turn:`/`turns:` URLs, optionally `turn:user:pass@host:port`."""
    servers: list[RTCIceServer] = []
    for value in values:
        for url in value.split(","):
            url = url.strip()
            if not url:
                continue
            scheme, _, rest = url.partition(":")
            if scheme not in ("stun", "turn", "turns") or not rest:
                raise UsageError(
                    f"--ice-server {url!r}: expected stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT]"
                )
            username = credential = None
            if "@" in rest:
                creds, _, host = rest.rpartition("@")
                username, _, credential = creds.partition(":")
                url = f"{scheme}:{host}"
            servers.append(RTCIceServer(urls=url, username=username, credential=credential))
    return servers


def rtc_configuration(ice_servers: list[RTCIceServer] | None = None) -> RTCConfiguration:
    """Always explicit: an empty list means no STUN/TURN at all (host candidates only)."""
    return RTCConfiguration(iceServers=list(ice_servers or []))
