"""Finding a seeder on the LAN with no server: the DNS-SD service a seeder announces (sans-IO).

`p2p seed` announces one DNS-SD service instance per share over mDNS (p2pcli/mdns.py does
the multicast, with python-zeroconf); `p2p fetch`/`stream` given a bare hash browse for it
for `BROWSE_SECONDS` and dial the first acceptable answer's signaling server.
docs/PROTOCOL.md "Finding a seeder on the LAN (mDNS / DNS-SD)" is the published form:

    service type   _p2p-share._tcp.local.
    instance       p2p-<first 16 hex digits of the content hash>-<6 random hex digits>
    SRV            port of the seeder's embedded signaling server; target its host name
    A / AAAA       the seeder's LAN addresses
    TXT            v=1, h=<content hash, 64 hex digits>, and s=<signaling URL> when the
                   seeder uses a server of its own (--signal) instead of the embedded one

What a fetcher dials is decided here, not by whoever answers a multicast query: anyone on
the LAN can answer, so an answer is only a hint. It must name the hash we asked for, and
lead to an address on a private network (RFC 1918, RFC 6598, link-local, IPv6 ULA) on an
unprivileged port (1024-65535): never a public host (that would tell it what we fetch),
never loopback (that would aim us at this machine's own services), never a port below 1024
(a printer's or a router's admin page). Host names are refused too: resolving one is a
second, unchecked hop. An answer that fails is skipped, never dialed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SERVICE_TYPE = "_p2p-share._tcp.local."
"DNS-SD service type of a p2p share (RFC 6763: a 1-15 character service name)."
TXT_VERSION = "1"
"`v` of the TXT record; an answer with another version is skipped (a later format)."
BROWSE_SECONDS = 1.5
"""How long a bare-hash fetch listens for a LAN seeder before trying the default server.
mDNS responders answer a shared (PTR) question after a random 20-120 ms, and zeroconf's
browser asks again about 1 s after its first query: 1.5 s covers one lost packet with
room to spare, and costs a hash with no seeder on the LAN little before the fallback."""
MAX_RESOLVES = 64
"""Instances with our hash prefix resolved per search, at most: a host flooding the LAN
with fake instances costs a fetcher this many lookups (most answered from the cache: a
responder sends SRV, TXT and addresses with its PTR), then is ignored. mDNS has no
authentication, so a LAN host can always hide a seeder this way or others; a link that
names its signaling server does not depend on the LAN."""
MIN_PORT = 1024
"Lowest port we dial from an answer (see the module docstring)."
_MAX_URL = 200  # a TXT string holds 255 bytes, "s=" included


def instance_name(content_id: str, suffix: str) -> str:
    """The DNS-SD instance label: the hash prefix lets a browser skip other shares' instances
    without resolving them; the random `suffix` keeps two seeders of one file apart."""
    return f"p2p-{content_id[:16]}-{suffix}"


def matches_instance(instance: str, content_id: str) -> bool:
    """Whether a browsed instance name (label, or full name) may be a seeder of `content_id`."""
    return instance.lower().startswith(f"p2p-{content_id[:16].lower()}-")


def txt_record(content_id: str, signal_url: str | None = None) -> dict[str, str]:
    """What the seeder puts in TXT; `signal_url` only for a server other than the embedded."""
    txt = {"v": TXT_VERSION, "h": content_id}
    if signal_url is not None:
        txt["s"] = signal_url
    return txt


def lan_ip(text: str) -> str | None:
    """`text` as an address we would dial on the LAN (normalised), else None."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone: not dialable
    except ValueError:
        return None
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        ok = ip.is_private or ip in _SHARED or ip.is_link_local
        return str(ip) if ok and ip != _BROADCAST else None
    # IPv6 link-local needs the interface it came in on, which the answer does not carry.
    return str(ip) if ip in _ULA else None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT / Tailscale
_ULA = ipaddress.ip_network("fc00::/7")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


def lan_signal_url(url: str) -> str | None:
    """`url` if it names a signaling server we would dial on the LAN (see the module
    docstring), else None. Used by the seeder (announce it?) and the fetcher (dial it?)."""
    if len(url) > _MAX_URL:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname is None:
        return None
    if parts.username or parts.password or any(c in url for c in " \t\r\n"):
        return None
    if port is None:
        port = 443 if parts.scheme in ("https", "wss") else 80
    if lan_ip(parts.hostname) is None or not MIN_PORT <= port <= 65535:
        return None
    return url


@dataclass(frozen=True)
class Answer:
    """One resolved service instance, as the mDNS adapter saw it (untrusted)."""

    name: str
    "Full instance name (`<instance>._p2p-share._tcp.local.`)."
    port: int | None
    "SRV port."
    addresses: tuple[str, ...]
    "A/AAAA addresses, as text."
    txt: Mapping[bytes, bytes | None] = field(default_factory=dict)
    "TXT key/value pairs, raw (a key may have no value)."


@dataclass(frozen=True)
class Found:
    """A seeder we will dial."""

    name: str
    "Its instance name."
    signal_url: str
    "The signaling server to join for the content."


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def accept(answer: Answer, content_id: str,
           local_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
           ) -> Found | None:
    """The signaling URL to use for `answer`, or None when it is not a usable seeder of
    `content_id`. Among its addresses, one inside `local_networks` (ours) comes first: a
    multi-homed seeder also lists addresses we have no route to."""
    txt = {k.lower(): v for k, v in answer.txt.items()}
    h = _text(txt.get(b"h"))
    if _text(txt.get(b"v")) != TXT_VERSION or h is None or h.lower() != content_id.lower():
        return None
    if b"s" in txt:
        url = _text(txt[b"s"])
        found = lan_signal_url(url) if url is not None else None
        return Found(answer.name, found) if found else None
    if answer.port is None or not MIN_PORT <= answer.port <= 65535:
        return None
    candidates = [ip for ip in (lan_ip(a) for a in answer.addresses) if ip is not None]
    if not candidates:
        return None
    nets = list(local_networks)
    near = [ip for ip in candidates if any(ipaddress.ip_address(ip) in n for n in nets)]
    ip = (near or candidates)[0]
    host = f"[{ip}]" if ":" in ip else ip
    return Found(answer.name, f"http://{host}:{answer.port}")


class Search:
    """One fetcher's search: which browsed instances to resolve, and the answer that wins.

    The first acceptable answer wins (a seeder's embedded server is its swarm's meeting
    point; two seeders of one file on one LAN are two swarms, either will do). Instances
    without our hash prefix are never resolved, and at most `MAX_RESOLVES` are.
    """

    def __init__(self, content_id: str,
                 local_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
                 ) -> None:
        self.content_id = content_id
        self.local_networks = list(local_networks)
        self.found: Found | None = None
        "The winning answer, once there is one."
        self.ignored: list[Answer] = []
        "Answers refused so far (for the debug log)."
        self._resolving: set[str] = set()

    def should_resolve(self, name: str) -> bool:
        """Whether to look up a browsed instance `name` (and count it if so)."""
        key = name.lower()
        if (self.found is not None or key in self._resolving
                or len(self._resolving) >= MAX_RESOLVES
                or not matches_instance(name, self.content_id)):
            return False
        self._resolving.add(key)
        return True

    def offer(self, answer: Answer) -> Found | None:
        """A resolved instance; returns the winner when this answer is it."""
        if self.found is not None:
            return None
        got = accept(answer, self.content_id, self.local_networks)
        if got is None:
            self.ignored.append(answer)
        self.found = got
        return got


def why_not_announced(*, port: int | None, signal_url: str | None, token: bool) -> str | None:
    """Why a seeder does not announce its share on the LAN (None: it does). A fetcher would
    skip such an announcement anyway (see `accept`), or, with a token, could not join."""
    if token:
        return "the share has an access token, and a LAN announcement would not carry it"
    if signal_url is not None:
        if lan_signal_url(signal_url) is None:
            return (f"its signaling server {signal_url} is not a LAN address and port that "
                    "fetchers would dial")
        return None
    if port is None or not MIN_PORT <= port <= 65535:
        return f"the embedded signaling server's port {port} is below {MIN_PORT}"
    return None
