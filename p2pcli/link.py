"""Share links: a content hash plus where to meet peers for it (sans-IO).

    p2p://<64 hex digits>?signal=<url>[&signal=<url>...][&tr=<ws(s) url>...]
        [&peerjs=<url>...][&name=<file name>][&token=<secret>]

Like a magnet link, a link is everything `p2p fetch` needs. Query values are
percent-encoded (RFC 3986). A bare content hash is accepted wherever a link is, with the
signaling URL taken from --signal / P2P_SIGNAL / the default. `tr=` names a WebTorrent
WebSocket tracker, as in a magnet link, and `peerjs=` a PeerJS server; a link may carry
several rendezvous of each kind and a fetch uses them all at once. Parameters a version
does not know are ignored, so older links keep working, and a newer link still works
with an older version through the rendezvous it knows. A player page URL
`http(s)://host[:port]/watch/<hash>` is accepted too: its origin is the signaling server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

from .errors import InvalidHash, InvalidLink
from .manifest import HASH_LEN, parse_content_id

#: The signaling server used when neither the link nor `--signal` names one. Here, not in
#: signaling/client.py, so that parsing a command line does not load Socket.IO.
DEFAULT_SIGNAL = "http://127.0.0.1:8080"

SCHEME = "p2p"
PEERJS_SCHEMES = ("peerjs", "http", "https", "ws", "wss")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

#: What `parse_target` reads, for the message when a text is none of it (p2pcli/web/js/
#: link.js says the same). A command that takes more (a magnet link, a code) says so itself.
ACCEPTED = ("a p2p:// link, a watch URL (http(s)://HOST/watch/HASH) or a content hash "
            "(64 hex digits)")


@dataclass(frozen=True)
class Target:
    """What the user asked for: a content hash and optional rendezvous details."""

    content_hash: bytes
    "SHA-256 of the manifest."
    signals: tuple[str, ...] = field(default_factory=tuple)
    "Signaling server URLs carried by the link, in preference order (may be empty)."
    name: str | None = None
    "Suggested file name (informational; the verified manifest decides)."
    token: str | None = None
    "Signaling access token, if the server needs one."
    trackers: tuple[str, ...] = field(default_factory=tuple)
    "WebTorrent WebSocket trackers carried by the link (`tr=`)."
    peerjs: tuple[str, ...] = field(default_factory=tuple)
    "PeerJS servers carried by the link (`peerjs=`)."

    @property
    def content_id(self) -> str:
        return self.content_hash.hex()


def _url_ok(url: str, schemes: tuple[str, ...]) -> bool:
    """`url` has one of `schemes` and a host."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[": an unclosed IPv6 bracket
        return False
    return parts.scheme in schemes and bool(parts.netloc)


def _check_signal_url(url: str, original: str) -> str:
    if not _url_ok(url, ("http", "https", "ws", "wss")):
        raise InvalidLink(
            f"link {original!r} has signaling URL {url!r}; expected http(s):// or ws(s)://"
        )
    return url


def check_tracker_url(url: str, original: str | None = None) -> str:
    """A WebTorrent WebSocket tracker URL (ws:// or wss://); `original`: the link it came
    from, for the message (None: the user gave it with --tracker)."""
    if not _url_ok(url, ("ws", "wss")):
        where = f"link {original!r} names the tracker" if original else "the tracker"
        raise InvalidLink(f"{where} {url!r}, which is not a ws:// or wss:// URL")
    return url


def check_peerjs_url(url: str, original: str | None = None) -> str:
    """A PeerJS server URL (peerjs://, http(s):// or ws(s)://, docs/PROTOCOL.md §2.2)."""
    if not _url_ok(url, PEERJS_SCHEMES):
        where = (f"link {original!r} names the PeerJS server" if original
                 else "the PeerJS server")
        raise InvalidLink(f"{where} {url!r}, which is not a peerjs://, http(s):// or ws(s):// "
                          "URL")
    return url


def make_link(
    content_hash: bytes, signals: list[str] | tuple[str, ...], name: str | None = None,
    token: str | None = None, trackers: list[str] | tuple[str, ...] = (),
    peerjs: list[str] | tuple[str, ...] = (),
) -> str:
    query = [f"signal={quote(s, safe='')}" for s in signals]
    query += [f"tr={quote(t, safe='')}" for t in trackers]
    query += [f"peerjs={quote(p, safe='')}" for p in peerjs]
    if name:
        query.append(f"name={quote(name, safe='')}")
    if token:
        query.append(f"token={quote(token, safe='')}")
    return f"{SCHEME}://{content_hash.hex()}" + ("?" + "&".join(query) if query else "")


def parse_target(text: str, expected: str = f"expected {ACCEPTED}") -> Target:
    """Parse a link, a watch URL or a bare content hash. Raises `InvalidLink`/`InvalidHash`;
    when `text` is none of these, the message ends with `expected` (what the command
    at hand takes)."""
    t = text.strip()
    if _HEX64.match(t):
        return Target(parse_content_id(t))
    if "://" not in t:
        if len(t) == 2 * HASH_LEN or t.isalnum():
            try:
                return Target(parse_content_id(t))
            except InvalidHash as e:  # its precise reason ("got 63"), then what would do
                raise InvalidHash(f"{e.message}; {expected}") from None
        raise InvalidLink(f"{text!r} is not a link or a content hash; {expected}")
    try:
        parts = urlsplit(t)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as e:
        raise InvalidLink(f"{text!r} is not a valid link: {e}") from None
    if parts.scheme == SCHEME:
        if not _HEX64.match(parts.netloc):
            raise InvalidLink(f"link {text!r} does not carry a 64-hex-digit content hash")
        signals = tuple(_check_signal_url(s, text) for s in query.get("signal", []) if s)
        name = (query.get("name") or [None])[0] or None
        token = (query.get("token") or [None])[0] or None
        trackers = tuple(check_tracker_url(u, text) for u in query.get("tr", []) if u)
        peerjs = tuple(check_peerjs_url(u, text) for u in query.get("peerjs", []) if u)
        return Target(bytes.fromhex(parts.netloc), signals, name, token, trackers, peerjs)
    if parts.scheme in ("http", "https"):
        m = re.match(r"^/watch/([0-9a-fA-F]{64})/?$", parts.path)
        if m and parts.netloc:
            token = (query.get("token") or [None])[0] or None
            origin = f"{parts.scheme}://{parts.netloc}"
            return Target(bytes.fromhex(m.group(1)), (origin,), None, token)
    raise InvalidLink(f"{text!r} is not a p2p link; {expected}")
