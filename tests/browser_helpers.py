"""Real headless Chromium against real `p2p` processes, all inside a throwaway network namespace.

Everything a browser test starts (serve-signal, seed, fetch, hostile peers and Chromium
itself) runs in one namespace that has only `lo` up, so loopback is the only network any
of them can see: no test traffic can leave the machine, and Chromium's own background
requests (it still tries a few, whatever the flags) go nowhere. The test process stays in
the root namespace and talks to them through files (their NDJSON stderr) and Playwright's
pipe to Chromium.

Two things make WebRTC work between Chromium and loopback peers there:

- `--allow-loopback-in-peer-connection`, without which Chromium never offers 127.0.0.1;
- camera/microphone permission granted to the page's origin. Chromium gathers host
  candidates of every interface only for pages with that permission; without it (and with
  the mDNS obfuscation turned off, as the issue's flags do) it offers only the address
  of the default route, and a namespace with only `lo` has none: no candidates at all.
  A page never uses the camera; the permission only lifts that filter.

Chromium is the Debian package (/usr/bin/chromium, installed by scripts/test-all), driven
by Playwright's Python package (no browser download, ever).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chromium import CHROMIUM, CHROMIUM_FLAGS
from conftest import P2P, Proc, Procs
from netns import reap_stale

NS_PREFIX = "p2pb"  # namespace names: p2pb<pid>x<n>
SIGNAL_PORT = 8080
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@functools.cache
def unavailable() -> str | None:
    """Why browser tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "browser tests need root (they run in a network namespace: ip netns add)"
    for tool, why in (("ip", "iproute2"), ("ffmpeg", "ffmpeg"), ("node", "nodejs")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test-all installs {why})"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (scripts/test-all installs the Debian package chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


# -- the namespace ----------------------------------------------------------------------------


class Namespace:
    """A network namespace with only `lo` up; `wrap(args)` runs a command inside it."""

    _serial = 0

    def __init__(self) -> None:
        reap_stale(NS_PREFIX)
        Namespace._serial += 1
        self.name = f"{NS_PREFIX}{os.getpid()}x{Namespace._serial}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True,
                       timeout=30)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True,
                       capture_output=True, timeout=30)

    def wrap(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


# -- processes in it --------------------------------------------------------------------------


class Lab:
    """The processes of one test, in one namespace."""

    def __init__(self, procs: Procs, ns: Namespace) -> None:
        self.procs = procs
        self.ns = ns
        self.signal_url = f"http://127.0.0.1:{SIGNAL_PORT}"

    def start(self, args: list[str], name: str, **kw: Any) -> Proc:
        return self.procs.start(self.ns.wrap(args), name, **kw)

    def serve_signal(self) -> Proc:
        p = self.start([P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(SIGNAL_PORT),
                        "--json"], "signal")
        p.wait_for(lambda p: event(p, "listening"), 30, "the signaling server to listen")
        return p

    def seed(self, path: Path, *extra: str, name: str = "seed") -> tuple[Proc, dict]:
        """Start a seeder; returns it and its "seeding" event (link, watch URL)."""
        p = self.start([P2P, "seed", str(path), "--signal", self.signal_url, "--ice-host",
                        "127.0.0.1", "--json", *extra], name)
        seeding = p.wait_for(lambda p: event(p, "seeding"), 60, "the seeding event")
        return p, seeding

    def fetch(self, link: str, *extra: str, name: str = "fetch") -> Proc:
        return self.start([P2P, "fetch", link, "--ice-host", "127.0.0.1", "--json", *extra], name)

    def python(self, script: Path, *args: str, name: str) -> Proc:
        return self.start([str(Path(P2P).parent / "python"), str(script), *args], name)


def event(p: Proc, name: str) -> dict | None:
    for ev in p.events():
        if ev.get("event") == name:
            return ev
    return None


# -- Chromium ---------------------------------------------------------------------------------


class Browser:
    """Headless Debian Chromium in the namespace, one browser context per tab."""

    def __init__(self, ns: Namespace, workdir: Path) -> None:
        from playwright.sync_api import sync_playwright

        # Playwright starts the executable it is given with its own pipe to it; this
        # wrapper moves Chromium into the namespace first (ip netns exec keeps the pipe).
        wrapper = workdir / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=str(wrapper), headless=True, args=CHROMIUM_FLAGS, timeout=60_000
            )
        except BaseException:
            self._pw.stop()
            raise
        self.tabs: list[Tab] = []

    def tab(self, url: str, name: str) -> Tab:
        origin = re.match(r"^https?://[^/]+", url)
        assert origin, url
        context = self.browser.new_context(viewport={"width": 1100, "height": 1000})
        context.grant_permissions(["camera", "microphone"], origin=origin.group(0))
        page = context.new_page()
        tab = Tab(name, page)
        self.tabs.append(tab)
        page.goto(url, timeout=30_000)
        return tab

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.browser.close()
        with contextlib.suppress(Exception):
            self._pw.stop()


class Tab:
    def __init__(self, name: str, page: Any) -> None:
        self.name = name
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def state(self) -> dict:
        return self.page.evaluate("() => window.p2p ? window.p2p.state() : null") or {}

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait(self, pred: Callable[[dict], Any], timeout: float, what: str) -> Any:
        """Poll the page's state until `pred(state)` is truthy."""
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            st = self.state()
            v = pred(st)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: timed out waiting for {what}\n{self.describe(st)}")

    def describe(self, st: dict | None = None) -> str:
        st = st if st is not None else self.state()
        brief = {k: st.get(k) for k in ("sid", "mode", "pieceCount", "video", "player",
                                        "dropped", "rejectedPieces", "receivedFrom", "peers")}
        brief["verified"] = len(st.get("verified") or [])
        return (json.dumps(brief, indent=1, default=str)[:4000] + "\nconsole:\n"
                + "\n".join(self.console[-40:]))

    def save(self, to: Path) -> Path:
        """Click the page's Save button once it is enabled; the file it hands the browser."""
        self.page.wait_for_selector("#save:not([disabled])", timeout=10_000)
        with self.page.expect_download(timeout=30_000) as saving:
            self.page.click("#save")
        saving.value.save_as(to)
        return to

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def wait_playing(self, timeout: float, *, after: float = 0.0) -> dict:
        """Until the video plays: readyState >= 3 and currentTime moving past `after`."""
        first = self.wait(
            lambda s: s if (s.get("video") or {}).get("readyState", 0) >= 3
            and s["video"]["currentTime"] > after + 0.3 and not s["video"]["paused"] else None,
            timeout, f"the video to play past {after:.1f}s",
        )
        t0 = first["video"]["currentTime"]
        return self.wait(
            lambda s: s if s["video"]["currentTime"] > t0 + 0.5 and s["video"]["readyState"] >= 3
            else None, 20, "currentTime to advance",
        )


@contextlib.contextmanager
def lab(procs: Procs, workdir: Path) -> Iterator[tuple[Lab, Callable[[], Browser]]]:
    """A namespace, its processes and (on demand) a browser; all stopped at the end."""
    ns = Namespace()
    browsers: list[Browser] = []

    def browser() -> Browser:
        b = Browser(ns, workdir)
        browsers.append(b)
        return b

    try:
        yield Lab(procs, ns), browser
    finally:
        for b in browsers:
            b.close()
        procs.stop_all()
        ns.close()


# -- media and hashes ---------------------------------------------------------------------------


def make_video(path: Path, seconds: int, kind: str = "mp4", bitrate: str = "300k") -> Path:
    """A test video with sound: fragmented MP4 (H.264/AAC), WebM (VP8/Opus) or, for
    "plain-mp4", an ordinary MP4 (index at the front, not fragmented)."""
    sources = [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    ]
    if kind in ("mp4", "plain-mp4"):
        flags = "frag_keyframe+empty_moov+default_base_moof" if kind == "mp4" else "faststart"
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
                 "-b:v", bitrate, "-c:a", "aac", "-b:a", "48k", "-movflags", flags]
    else:
        codec = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "25",
                 "-b:v", bitrate, "-c:a", "libopus", "-b:a", "48k"]
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *sources, "-t", str(seconds),
         "-threads", "2", *codec, str(path)],
        check=True, timeout=240,
    )
    return path


def piece_hashes(path: Path, piece_size: int) -> dict[int, str]:
    out = {}
    with open(path, "rb") as f:
        i = 0
        while chunk := f.read(piece_size):
            out[i] = hashlib.sha256(chunk).hexdigest()
            i += 1
    return out


def check_pieces(tab: Tab, source: Path) -> int:
    """Every piece the page holds is the source's; returns how many it holds."""
    st = tab.state()
    digests = tab.js("() => window.p2p.digests()")
    want = piece_hashes(source, st["pieceSize"])
    assert digests, "the page holds no piece"
    bad = [i for i, h in digests.items() if want[int(i)] != h]
    assert not bad, f"{tab.name} holds pieces that differ from the source: {bad[:10]}"
    return len(digests)
