"""Who may read `p2p stream`'s local HTTP server, and as what (sans-IO).

The server listens on 127.0.0.1, which every local user and every web page in a local
browser can reach. Three rules keep the stream to the player it was started for:

- a secret path: the URL carries `secrets.token_urlsafe(24)` (192 bits) and every
  other path is 404, so another local user or a page that guesses the port gets nothing;
- a Host check: only the names this server answers to (127.0.0.1, localhost, [::1] with
  its port), so a page on a rebound DNS name (DNS rebinding) is refused even at the
  right port;
- a content type that is never active: known audio/video types by file name, anything
  else `application/octet-stream`, with `nosniff` and a `sandbox` CSP, so a share named
  `x.html` or `x.svg` is never rendered as a page on the 127.0.0.1 origin.
"""

from __future__ import annotations

import secrets
from pathlib import PurePosixPath

# Only media types a browser plays in a media document and never runs script from.
# Everything else (html, svg, xml, js, pdf, images with scripts...) is octet-stream.
MEDIA_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".mka": "audio/x-matroska",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".aac": "audio/aac",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".avi": "video/x-msvideo",
    ".3gp": "video/3gpp",
    ".flv": "video/x-flv",
    ".wmv": "video/x-ms-wmv",
}
OPAQUE = "application/octet-stream"

# Sent on every response: never guess a type from the bytes, and if a browser renders
# the response anyway, render it sandboxed: no scripts, forms, popups or plugins. It keeps
# its origin (allow-same-origin) because a browser's own video document loads the video
# with CORS, which an opaque origin would fail; without scripts, the origin is harmless.
SAFE_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox allow-same-origin",
    "Referrer-Policy": "no-referrer",
}


def media_type(name: str) -> str:
    """The Content-Type for a shared file's name: a known media type or octet-stream."""
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), OPAQUE)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def served_hosts(port: int) -> frozenset[str]:
    """Host header values (lower case) that name this server on 127.0.0.1:port."""
    names = ("127.0.0.1", "localhost", "[::1]")
    hosts = {f"{n}:{port}" for n in names}
    if port == 80:  # a client leaves out the default port
        hosts.update(names)
    return frozenset(hosts)


class Refused(Exception):
    """A request this server does not answer; `status` is the HTTP status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_host(values: list[str], port: int) -> None:
    """Raise Refused unless the request has exactly one Host naming this server.

    RFC 9112 3.2: a missing or repeated Host is a 400; a name we do not serve is a 421
    (Misdirected Request), which is what a DNS-rebound page gets.
    """
    if len(values) != 1:
        raise Refused(400, "the request needs exactly one Host header")
    if values[0].strip().lower() not in served_hosts(port):
        raise Refused(421, "Host is not an address this server serves")


def check_secret(path: str, secret: str) -> str:
    """The rest of `path` after `/SECRET/`; raise Refused(404) if the secret is not there.

    Compared in constant time, so response timing does not reveal how much of a guess
    was right.
    """
    head, sep, rest = path.removeprefix("/").partition("/")
    if not sep or not secrets.compare_digest(_b(head), _b(secret)):
        raise Refused(404, "not found")
    return rest


def check_name(rest: str, name: str) -> None:
    """Raise Refused(404) unless the path after the secret is the file's name."""
    if rest != name:
        raise Refused(404, "not found")


def _b(s: str) -> bytes:
    # A decoded path can hold lone surrogates (from invalid percent-escapes).
    return s.encode("utf-8", "surrogatepass")
