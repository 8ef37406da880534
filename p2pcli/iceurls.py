"""STUN/TURN server URLs: the one parser of them, and aiortc's server lists built from it.

Three places name ICE servers, and all go through `parse_ice_url`:

- a user's `--ice-server` on seed, fetch, stream and doctor (`parse_ice_servers`);
- the `ice-config` event a signaling server hands out (`servers_from_config`), where a
  malformed entry is skipped rather than fatal, since the server is not ours to fix;
- `serve-signal --ice-server`, which hands them out (signaling/turncreds.py).

A URL is `stun:HOST[:PORT]`, `turn:HOST[:PORT][?transport=udp|tcp]` or
`turns:HOST[:PORT][?transport=tcp]`, and a TURN URL may carry fixed credentials,
`turn:USER:PASS@HOST...` (the password may hold any character but ends at the last `@`).
The credentials never stay in the URL: aiortc and browsers take them as separate fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    # Imported where a server is built: the CLI parses options (and `p2p stream` publishes
    # its URL) before aiortc, a large share of start-up, is loaded.
    from aiortc import RTCIceServer

#: Most servers taken from one `ice-config` event: aiortc uses one STUN and one TURN
#: server, and each is checked before use (iceprobe.py), so a long list is only cost.
MAX_CONFIG_SERVERS = 8

_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):"
    r"(?:(?P<user>[^:@/?]+):(?P<password>.*)@)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:@/?\[\]]+)"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


class IceUrlError(UsageError):
    """A STUN/TURN URL that cannot be used; the message shows the forms that can."""


@dataclass(frozen=True)
class IceUrl:
    """One parsed STUN or TURN URL."""

    scheme: str
    "'stun', 'turn' or 'turns'."
    host: str
    "Host name or address (an IPv6 address keeps its brackets)."
    port: int | None = None
    "None: the scheme's default (3478; 5349 for turns)."
    transport: str | None = None
    "'udp' or 'tcp' when the URL names one (`?transport=`)."
    username: str | None = None
    "Fixed TURN username given in the URL (turn:USER:PASS@HOST); None when not given."
    credential: str | None = None
    "Fixed TURN password given in the URL; None exactly when `username` is."

    @property
    def url(self) -> str:
        """The URL without credentials, as aiortc and browsers take it."""
        text = f"{self.scheme}:{self.host}"
        if self.port is not None:
            text += f":{self.port}"
        if self.transport is not None:
            text += f"?transport={self.transport}"
        return text

    @property
    def is_turn(self) -> bool:
        return self.scheme.startswith("turn")


def parse_ice_url(text: str) -> IceUrl:
    """Parse one STUN/TURN URL; `IceUrlError` says what is wrong with it."""
    t = text.strip()
    m = _URL.fullmatch(t)
    if m is None:
        raise IceUrlError(
            f"--ice-server {text!r}: expected stun:HOST[:PORT], turn:HOST[:PORT] "
            "(optionally ?transport=tcp), turns:HOST[:PORT], or turn:USER:PASS@HOST[:PORT]"
        )
    scheme, port = m["scheme"], m["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise IceUrlError(f"--ice-server {text!r}: port {port} is out of range")
    if scheme == "stun" and (m["user"] or m["transport"]):
        raise IceUrlError(f"--ice-server {text!r}: a STUN URL takes no credentials or transport")
    return IceUrl(
        scheme=scheme,
        host=m["host"],
        port=int(port) if port is not None else None,
        transport=m["transport"],
        username=m["user"],
        credential=m["password"] if m["user"] else None,
    )


def parse_ice_servers(values: Iterable[str]) -> list[RTCIceServer]:
    """A user's `--ice-server` values (each may be comma-separated) as aiortc servers."""
    servers: list[RTCIceServer] = []
    for value in values:
        for text in value.split(","):
            if text.strip():
                from aiortc import RTCIceServer

                u = parse_ice_url(text)
                servers.append(RTCIceServer(urls=u.url, username=u.username,
                                            credential=u.credential))
    return servers


def servers_from_config(cfg: dict[str, Any]) -> list[RTCIceServer]:
    """Parse an `ice-config` payload; malformed entries and URLs are skipped, never fatal.

    The payload is a browser-shaped `RTCConfiguration`:
    `{"iceServers": [{"urls": "turn:host:3478" | [...], "username": "...", "credential": "..."}]}`.
    """
    from aiortc import RTCIceServer

    out: list[RTCIceServer] = []
    entries = cfg.get("iceServers") if isinstance(cfg, dict) else None
    if not isinstance(entries, list):
        return out
    for entry in entries[:MAX_CONFIG_SERVERS]:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list):
            continue
        parsed = [_parsed_or_none(u) for u in urls if isinstance(u, str)]
        kept = [u.url for u in parsed if u is not None]
        if not kept:
            continue
        username, credential = entry.get("username"), entry.get("credential")
        out.append(
            RTCIceServer(
                urls=kept,
                username=username if isinstance(username, str) else None,
                credential=credential if isinstance(credential, str) else None,
            )
        )
    return out


def _parsed_or_none(text: str) -> IceUrl | None:
    try:
        return parse_ice_url(text)
    except IceUrlError:
        return None


def server_urls(servers: Iterable[RTCIceServer]) -> list[str]:
    """Every URL of every server, in order (an `RTCIceServer` holds one URL or a list)."""
    return [u for s in servers for u in (s.urls if isinstance(s.urls, list) else [s.urls])]


def turn_urls(servers: Iterable[RTCIceServer]) -> list[str]:
    """The TURN (turn: and turns:) URLs among `servers`, in order."""
    return [u for u in server_urls(servers) if u.startswith("turn")]
