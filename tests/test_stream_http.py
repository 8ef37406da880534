"""Who can read `p2p stream`'s local HTTP server: real stream processes, real HTTP.

The server is on 127.0.0.1, where every local user and every page in a local browser can
reach it. Only a client with the secret URL and a Host naming this server gets bytes; a
file is never served as a type a browser renders as a page; the secret never appears on
the player's command line. (tests/test_localhttp.py has the same rules without I/O.)
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import P2P, Procs, make_file, need

from p2pcli.localhttp import OPAQUE


def serve(procs: Procs, signal_url: str, path: Path, name: str) -> tuple[str, int, str]:
    """Seed `path` and stream it with --player none; (url, port, secret)."""
    _, link = procs.seed(path, signal_url, name=f"seed-{name}")
    s = procs.p2p("stream", link, "--ice-host", "127.0.0.1", "--json", "--player", "none",
                  name=f"stream-{name}")
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    parts = urlsplit(url)
    assert parts.port is not None
    return url, parts.port, parts.path.split("/")[1]


def request(
    port: int, path: str, headers: list[tuple[str, str]], method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request with exactly these headers (Host included, or left out)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def test_only_our_host_and_the_secret_path_get_bytes(
    procs: Procs, signal_url: str, tmp_path: Path
):
    (tmp_path / "src").mkdir()
    src = make_file(tmp_path / "src" / "movie.mp4", 50_000, seed=3)
    data = src.read_bytes()
    url, port, secret = serve(procs, signal_url, src, "a")
    path = urlsplit(url).path
    ok = f"127.0.0.1:{port}"

    # Every name the server serves, and only them.
    for host in (ok, f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        status, headers, body = request(port, path, [("Host", host)])
        assert (status, body) == (200, data), host
        assert headers["Content-Type"] == "video/mp4"
        assert headers["X-Content-Type-Options"] == "nosniff"

    # DNS rebinding sends the attacker's name with our port; none of these get a byte.
    bad_hosts: list[list[tuple[str, str]]] = [
        [("Host", f"evil.example:{port}")],
        [("Host", f"127.0.0.1.nip.io:{port}")],
        [("Host", "evil.example")],
        [("Host", f"localhost.:{port}")],
        [("Host", f"127.0.0.1:{port + 1}")],
        [("Host", "127.0.0.1")],
        [("Host", f"0.0.0.0:{port}")],
        [("Host", f"127.0.0.2:{port}")],
        [("Host", "")],
        [],
        [("Host", ok), ("Host", f"evil.example:{port}")],
    ]
    for headers_sent in bad_hosts:
        for method in ("GET", "HEAD"):
            status, headers, body = request(port, path, headers_sent, method)
            assert status in (400, 421), (headers_sent, status)
            assert data[:64] not in body
            if len(headers_sent) == 1:  # aiohttp itself refuses none or two Hosts
                assert headers["X-Content-Type-Options"] == "nosniff", headers_sent

    # Without the exact secret: 404, with the right Host and the right file name.
    bad_paths = ["/", "/movie.mp4", f"/{secret}", f"/{secret}/", f"/{secret}/other.mp4",
                 f"/{secret}/movie.mp4/", f"//{secret}/movie.mp4", f"/{secret[:-1]}/movie.mp4",
                 f"/{secret}x/movie.mp4", f"/{secret.swapcase()}/movie.mp4",
                 f"/x/{secret}/movie.mp4", "/%2e%2e/movie.mp4", f"/{'A' * len(secret)}/movie.mp4"]
    for p in bad_paths:
        status, headers, body = request(port, p, [("Host", ok), ("Range", "bytes=0-")])
        assert status == 404, (p, status)
        assert data[:64] not in body

    # The server still serves the player after all that.
    status, _, body = request(port, path, [("Host", ok), ("Range", "bytes=100-199")])
    assert (status, body) == (206, data[100:200])


ACTIVE = ["page.html", "image.svg", "feed.xml", "app.js"]


def test_names_a_browser_would_render_are_served_as_octet_stream(
    procs: Procs, signal_url: str, tmp_path: Path
):
    """Each share whose name a browser renders as a page (or runs as script) gets a
    non-active type, nosniff and a sandbox CSP, on 200, 206, 416 and 404 alike."""
    (tmp_path / "src").mkdir()
    payload = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(2)</script>"
    served = []
    for i, name in enumerate(ACTIVE):
        src = tmp_path / "src" / name
        src.write_bytes(payload + b" " * 1000)
        served.append(serve(procs, signal_url, src, str(i)))
    for name, (url, port, _) in zip(ACTIVE, served, strict=True):
        path = urlsplit(url).path
        host = [("Host", f"127.0.0.1:{port}")]
        for extra, status in [([], 200), ([("Range", "bytes=0-9")], 206),
                              ([("Range", "bytes=99999-")], 416)]:
            got, headers, _ = request(port, path, host + extra)
            assert got == status, (name, extra)
            assert headers.get("Content-Type", OPAQUE) == OPAQUE, (name, headers["Content-Type"])
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Content-Security-Policy"] == "sandbox allow-same-origin"
        got, headers, _ = request(port, "/nothing/" + name, host)
        assert got == 404 and headers["X-Content-Type-Options"] == "nosniff"


def test_the_secret_never_appears_on_the_players_command_line(
    procs: Procs, signal_url: str, tmp_path: Path
):
    """Any local user can read a process's argv; mpv gets the URL from a 0600 playlist."""
    need("mpv")
    (tmp_path / "src").mkdir()
    src = make_file(tmp_path / "src" / "clip.mp4", 200_000)
    # Slow: mpv's request is still waiting for pieces when we stop, and the stop must not
    # wait for it (aiohttp would hold it for 60 s).
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "20k")
    s = procs.p2p("stream", link, "--ice-host", "127.0.0.1", "--json", "--player", "mpv",
                  "--player-arg=--no-config", "--player-arg=--vo=null", "--player-arg=--ao=null",
                  "--player-arg=--idle=yes", "--player-arg=--keep-open=always", name="stream")
    started = s.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "player-started"), None), 60,
        "the player to start",
    )
    url = next(e["url"] for e in s.events() if e["event"] == "serving")
    secret = urlsplit(url).path.split("/")[1]
    # mpv read the URL (it asked for bytes at the secret path) ...
    s.wait_for(lambda p: any(e["event"] == "http" and e.get("status") in (200, 206)
                             for e in p.events()), 60, "mpv to read the stream")
    # ... yet neither its argv nor ours holds the secret.
    for pid in (started["pid"], s.p.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline, cmdline
    s.signal(signal.SIGINT)
    assert s.wait(30) == 130, s.stderr[-3000:]
    assert not any(e["event"] == "done" for e in s.events())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(started["pid"]):
        time.sleep(0.1)
    assert not _alive(started["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


# -- a real browser on the URL ------------------------------------------------------------------

HOSTILE_PAGE = (b"<html><head><title>pwned</title></head><body>"
                b"<script>window.pwned = 1; document.title = 'pwned'</script>"
                b"<svg xmlns='http://www.w3.org/2000/svg' onload='window.pwned = 2'/>"
                b"</body></html>")


def test_a_browser_never_runs_a_share_as_a_page_and_still_plays_media(
    procs: Procs, tmp_path: Path
):
    """Chromium opening the stream URL: hostile content named as a page, an image or even
    a video runs no script on 127.0.0.1; a real video under the same headers plays."""
    from browser_helpers import event, lab, make_video, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    src = tmp_path / "src"
    src.mkdir()
    shares = {name: src / name for name in ("page.html", "image.svg", "trick.webm")}
    for path in shares.values():
        path.write_bytes(HOSTILE_PAGE)
    shares["talk.webm"] = make_video(src / "talk.webm", 6, "webm")
    with lab(procs, tmp_path) as (lb, browser):
        lb.serve_signal()
        urls = {}
        for i, (name, path) in enumerate(shares.items()):
            _, seeding = lb.seed(path, name=f"seed{i}")
            s = lb.start([P2P, "stream", seeding["link"], "--ice-host", "127.0.0.1", "--json",
                          "--player", "none"], f"stream{i}")
            urls[name] = s.wait_for(lambda p: event(p, "serving"), 60, "the URL")["url"]
        b = browser()
        context = b.browser.new_context(accept_downloads=True)
        for name in ("page.html", "image.svg", "trick.webm"):
            page = context.new_page()
            with contextlib.suppress(Exception):  # octet-stream: a download, not a page
                page.goto(urls[name], timeout=30_000)
            page.wait_for_timeout(500)
            assert page.evaluate("() => window.pwned === undefined"), name
            assert page.title() != "pwned", name
            page.close()
        page = context.new_page()
        page.goto(urls["talk.webm"], timeout=30_000)
        # Chromium shows a bare video in its own media document; it must load and play.
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && !v.error && v.readyState >= 2 }", timeout=60_000)
        context.close()
