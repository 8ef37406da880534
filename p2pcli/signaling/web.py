"""The browser player's HTTP side: the page at / and /watch/<hash>, and its files at /web/.

The player itself is plain HTML and JavaScript in `p2pcli/web/` (no build step), shipped
as package data; docs/BROWSER.md describes it. This module only serves those files, with
headers that keep the page to its own scripts (Content-Security-Policy) and make browsers
revalidate after an upgrade (no-cache).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from aiohttp import web

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"

_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".md": "text/plain",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

# The page loads only its own files; it may talk to other signaling servers (a link can
# name one) over HTTP(S)/WebSocket, and plays media from blob: URLs (Media Source).
_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self' http: https: ws: wss:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS: Final = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def watch_url(signal_url: str, content_id: str, token: str | None = None) -> str:
    """The player page for `content_id` on the server at `signal_url` (http(s) or ws(s))."""
    parts = urlsplit(signal_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    query = f"token={quote(token, safe='')}" if token else ""
    path = parts.path.rstrip("/") + f"/watch/{content_id}"
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def _page() -> web.FileResponse:
    return web.FileResponse(
        WEB_DIR / "index.html",
        headers={**_HEADERS, "Content-Type": "text/html; charset=utf-8",
                 "Content-Security-Policy": _CSP},
    )


def add_web_routes(app: web.Application, fallback: Handler | None = None) -> None:
    """Serve the player: the page at / and /watch/<hash>, its files under /web/.

    `fallback` handles what / meant before the page: WebSocket upgrades (the plain
    WebSocket transport) and clients that do not ask for HTML.
    """

    async def index(request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        wants_html = "text/html" in request.headers.get("Accept", "")
        if fallback is not None and (upgrade or not wants_html):
            return await fallback(request)
        return _page()

    async def watch(request: web.Request) -> web.StreamResponse:
        return _page()

    async def static(request: web.Request) -> web.StreamResponse:
        path = (WEB_DIR / request.match_info["path"]).resolve()
        kind = _TYPES.get(path.suffix)
        if kind is None or not path.is_relative_to(WEB_DIR) or not path.is_file():
            raise web.HTTPNotFound(text="not found\n")
        charset = "" if kind.startswith("image/png") else "; charset=utf-8"
        return web.FileResponse(path, headers={**_HEADERS, "Content-Type": kind + charset})

    app.router.add_get("/", index)
    app.router.add_get(r"/watch/{hash:[0-9a-fA-F]{64}}", watch)
    app.router.add_get(r"/watch/{hash:[0-9a-fA-F]{64}}/", watch)
    app.router.add_get("/web/{path:.+}", static)


__all__ = ["WEB_DIR", "add_web_routes", "watch_url"]
