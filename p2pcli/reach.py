"""Which URLs of a listening server other machines can use (sans-IO, but `interfaces`).

A server bound to 0.0.0.0 is printed as http://127.0.0.1:PORT for this machine's own
clients, which is no address to give anyone else: `serve-signal` once printed only that,
and a user had to find the LAN address themselves. These are the URLs to hand out: one per
address of this machine the bind covers, loopback and link-local left out (link-local
needs a zone to be dialed, and reaches one link only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

WILDCARDS = {"0.0.0.0": 4, "": 4, "::": 6}


def reachable_urls(host: str, port: int, addresses: Iterable[str], *, tls: bool = False
                   ) -> list[str]:
    """URLs others can use for a server bound to `host`, given this machine's addresses.

    A wildcard bind covers every address of its family ('::' covers IPv4 too, as Linux
    binds it dual-stack); a named address is itself, unless it is loopback (then nobody
    else can reach it: an empty list). IPv4 first, in the order given."""
    scheme = "https" if tls else "http"
    if host in WILDCARDS:
        family = WILDCARDS[host]
        candidates = [a for a in addresses if family == 6 or ":" not in a]
    else:
        candidates = [host]
    out: list[str] = []
    for a in candidates:
        try:
            ip = ipaddress.ip_address(a.split("%")[0])
        except ValueError:  # a host name given to --host: it is what others dial
            out.append(f"{scheme}://{a}:{port}")
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            continue
        url = f"{scheme}://[{ip}]:{port}" if ip.version == 6 else f"{scheme}://{ip}:{port}"
        if url not in out:
            out.append(url)
    return sorted(out, key=lambda u: "[" in u)  # stable: IPv4 before IPv6


def interfaces() -> list[tuple[str, int]]:
    """This machine's interface addresses and their prefix lengths (ifaddr), IPv4 and IPv6.

    The one walk of the interfaces: `serve-signal`'s URLs, the link's address and mDNS's
    networks all read it."""
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            out.append((ip.ip if isinstance(ip.ip, str) else ip.ip[0], ip.network_prefix))
    return out


def local_addresses() -> list[str]:
    """This machine's interface addresses, IPv4 and IPv6."""
    return [a for a, _ in interfaces()]
