"""Browser <-> CLI throughput beside Chromium <-> Chromium, measured in the same run.

Headless Debian Chromium (/usr/bin/chromium through Playwright, as tests/test_browser.py
drives it; never `playwright install`) and real `p2p` processes, all in a fresh network
namespace with only `lo` (why: tests/browser_helpers.py), over one file of random bytes
(64 MiB: 64 KiB pieces, which the page requests whole). Per round, in this order:

  raw       the ceiling: two tabs (two browser contexts, so two renderer processes, like
            two browsers) joined by one RTCPeerConnection each, one ordered data channel,
            the file's size sent in 64 KiB messages with the page's own back-pressure
            (wait for `bufferedamountlow` above 2 MiB queued, threshold 512 KiB:
            p2pcli/web/js/peer.js). Timed from the first send to the last byte received;
            no connection set-up in it, like transfer.py's raw channels. Also the rate
            over the second half of the bytes, because Chromium's start can stall: on its
            first burst the sending Chromium discards packets instead of sending them
            (its packet socket says it would block; `discarded` is the sender's candidate
            pairs' `packetsDiscardedOnSend`), and SCTP gets them back only by
            retransmission timeouts.
  seed-tab  `p2p seed FILE` -> a tab opening the watch URL (a browser of its own with a
            profile on disk: Browser.disk_tab says why): from navigation start (the
            page's `performance.timeOrigin`) to the swarm's last piece verified (its
            `piece` event with `complete`), so page load, signaling, ICE and the manifest
            are in it; "once connected" is from the manifest to that moment.
  tab-fetch the seeder stopped (SIGTERM), `p2p fetch LINK` takes the whole file from that
            tab, which serves what it holds (docs/BROWSER.md): fetch start to exit, and
            its manifest -> done. The output is checked byte for byte.
  cli       `p2p seed` -> `p2p fetch`, the same file (transfer.py's 1to1), for context.

`discarded` is given for the tab in seed-tab and tab-fetch too. `renderer_peak_mib` and
`chromium_peak_mib`: the largest resident memory (RSS, sampled every 0.2 s) of Chromium's
renderer processes (the page, its workers and its buffers) and of its whole process tree
during the row; `renderer_start_mib` the renderers' at the row's start (the tab is open,
the page not loaded yet).

`--pages this,memory,/work/main` repeats seed-tab and tab-fetch per page: `this` is the
page of this checkout (pieces on disk, OPFS), `memory` the same page told to keep every
piece in memory (`?store=memory`), and a path serves the page of another checkout (a
second `p2p serve-signal` run with PYTHONPATH set to it), e.g. main's, as a baseline in
the same run. Rows are suffixed [memory] or [main] (the path's last part). Ratios (x raw) are to the
raw row of the same round and MTU. CPU seconds per GiB: the CLI process of the row (the
seeder, or the fetcher in tab-fetch; the cli row has both in --json) and Chromium's whole
process tree (browser, network service, renderers; processes that exit during a row are
not counted, and every tab stays open until its row is measured).

`--mtu 0,1500` repeats the rows with the namespace's loopback MTU set to each (0: loopback's
own 65,536); Chromium and aiortc then size their SCTP packets for it. Needs root (ip
netns), like the other namespace benchmarks.

    python benchmarks/browser.py [--size 64M] [--mtu 0,1500] [--repeat 2] [--json]
        [--pages this,memory,/work/main] [--no-raw] [--no-cli]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from chromium import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402  (the tests' Chromium flags)
from transfer import (  # noqa: E402
    GIB,
    NETNS_ENV,
    P2P,
    Runner,
    cpu,
    free_port,
    in_namespace,
    medians,
    p2p_scenario,
    parse_size,
)

MSG = 64 * 1024

# Installed before the page's scripts: records when the swarm got its manifest and when
# its last piece was verified, in the page's own clock (ms since navigation start), and
# keeps every RTCPeerConnection so its stats can be read after it closed.
TIMING_HOOK = """
(() => {
  const t = (window.__bench = { manifest: null, complete: null, pcs: [] });
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    t.pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  // Packets Chromium dropped instead of sending (its UDP socket would block), all peers.
  t.discarded = async () => {
    let n = 0;
    for (const pc of t.pcs) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'candidate-pair') n += s.packetsDiscardedOnSend || 0;
      });
    }
    return n;
  };
  const attach = setInterval(() => {
    if (!window.p2p || !window.p2p.swarm) return;
    clearInterval(attach);
    window.p2p.swarm.on('manifest', () => { t.manifest = t.manifest ?? performance.now(); });
    window.p2p.swarm.on('piece', (ev) => { if (ev.complete) t.complete = performance.now(); });
  }, 1);
})();
"""

# The raw channel, one function per step; each tab runs its half. ICE is not trickled:
# each side waits for gathering to finish and hands over an SDP holding its candidates.
RAW_JS = """
window.rawBench = {
  async gathered(pc) {
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((ok) => pc.addEventListener('icegatheringstatechange',
        () => pc.iceGatheringState === 'complete' && ok()));
    }
    return pc.localDescription.sdp;
  },
  async offer() {
    const pc = (this.pc = new RTCPeerConnection({ iceServers: [] }));
    this.dc = pc.createDataChannel('bench', { ordered: true });
    this.dc.binaryType = 'arraybuffer';
    this.opened = new Promise((ok) => this.dc.addEventListener('open', ok));
    await pc.setLocalDescription(await pc.createOffer());
    return this.gathered(pc);
  },
  async answer(sdp, size) {
    const pc = (this.pc = new RTCPeerConnection({ iceServers: [] }));
    this.done = new Promise((ok) => {
      pc.addEventListener('datachannel', ({ channel }) => {
        channel.binaryType = 'arraybuffer';
        let got = 0;
        let half = null;
        channel.addEventListener('message', (ev) => {
          got += ev.data.byteLength;
          if (half === null && got >= size / 2) half = performance.timeOrigin + performance.now();
          if (got >= size) ok({ end: performance.timeOrigin + performance.now(), half, got });
        });
      });
    });
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    return this.gathered(pc);
  },
  async accept(sdp) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    await this.opened;
    return this.pc.sctp ? this.pc.sctp.maxMessageSize : null;
  },
  start([size, msg, high, low]) {
    // Sends in the background; returns when the first message is queued.
    const dc = this.dc;
    const data = new Uint8Array(1 << 20);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, i + 65536));
    }
    dc.bufferedAmountLowThreshold = low;
    const begin = performance.timeOrigin + performance.now();
    let sent = 0;
    const pump = () => {
      while (sent < size && dc.bufferedAmount <= high) {
        const n = Math.min(msg, size - sent);
        const off = sent % data.length;
        dc.send(data.subarray(off, off + n));
        sent += n;
      }
    };
    dc.addEventListener('bufferedamountlow', pump);
    pump();
    return begin;
  },
};
"""


def chromium_cpu() -> dict[int, float]:
    """CPU seconds of every live Chromium process under this one (Playwright's driver
    starts Chromium as its child), by pid."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                out[p.pid] = cpu(p)
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_since(before: dict[int, float]) -> float:
    return sum(c - before.get(pid, 0.0) for pid, c in chromium_cpu().items())


class PeakMemory:
    """Samples the resident memory of Chromium's renderers and of its whole tree every
    0.2 s in a thread, from `with` entry to exit, and keeps the largest sums (MiB)."""

    def __init__(self) -> None:
        self.renderer = 0.0
        self.chromium = 0.0
        self.renderer_start: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        renderer = total = 0
        for p in psutil.Process().children(recursive=True):
            try:
                if "chrom" not in p.name():
                    continue
                rss = p.memory_info().rss
                total += rss
                if "--type=renderer" in p.cmdline():
                    renderer += rss
            except psutil.NoSuchProcess:
                pass
        if self.renderer_start is None:
            self.renderer_start = renderer / 2**20
        self.renderer = max(self.renderer, renderer / 2**20)
        self.chromium = max(self.chromium, total / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def row(self) -> dict:
        return {"renderer_start_mib": round(self.renderer_start or 0.0, 1),
                "renderer_peak_mib": round(self.renderer, 1),
                "chromium_peak_mib": round(self.chromium, 1)}


class Browser:
    """One headless Chromium; a tab is a page in its own context, with the camera
    permission for its origin (which lets Chromium offer loopback candidates)."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._profiles: list[str] = []
        try:
            self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_FLAGS, timeout=60_000)
        except BaseException:
            self._pw.stop()
            raise

    def tab(self, origin: str, *, hook: bool = False) -> Any:
        context = self.browser.new_context(bypass_csp=True)
        return self._page(context, origin, hook)

    def disk_tab(self, origin: str, *, hook: bool = False) -> Any:
        """A tab in a browser of its own with a profile on disk, like a person's. A
        `new_context()` is off the record, and there Chromium keeps the Origin Private
        File System in memory (in the browser process), which would hide what the page's
        disk store saves. Closing the page's context closes that browser."""
        profile = tempfile.mkdtemp(prefix="p2p-bench-profile-")
        self._profiles.append(profile)
        context = self._pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            bypass_csp=True, timeout=60_000)
        return self._page(context, origin, hook)

    @staticmethod
    def _page(context: Any, origin: str, hook: bool) -> Any:
        context.grant_permissions(["camera", "microphone"], origin=origin)
        if hook:
            context.add_init_script(TIMING_HOOK)
        return context.new_page()

    def close(self) -> None:
        for step in (self.browser.close, self._pw.stop):
            with contextlib.suppress(Exception):  # already gone: nothing left to stop
                step()
        for profile in self._profiles:
            shutil.rmtree(profile, ignore_errors=True)


def raw_scenario(browser: Browser, origin: str, size: int) -> dict:
    """Two tabs, one data channel, `size` bytes in 64 KiB messages."""
    a, b = browser.tab(origin, hook=True), browser.tab(origin, hook=True)
    for page in (a, b):
        page.goto(origin + "/", timeout=30_000)
        page.evaluate(RAW_JS)
    offer = a.evaluate("() => rawBench.offer()")
    answer = b.evaluate("([sdp, size]) => rawBench.answer(sdp, size)", [offer, size])
    max_message = a.evaluate("(sdp) => rawBench.accept(sdp)", answer)
    if max_message is not None and max_message < MSG:
        raise RuntimeError(f"the channel takes messages of {max_message} bytes at most")
    c0 = chromium_cpu()
    begin = a.evaluate("(args) => rawBench.start(args)", [size, MSG, 2 << 20, 512 << 10])
    done = b.evaluate("() => rawBench.done")
    chrome_cpu = cpu_since(c0)
    discarded = a.evaluate("() => window.__bench.discarded()")
    seconds = (done["end"] - begin) / 1000
    for page in (a, b):
        page.context.close()
    return {
        "mb_per_s": round(size / seconds / 1e6, 2),
        "mb_per_s_connected": round(size / seconds / 1e6, 2),
        # The start can stall (see `discarded`): the rate once half the bytes are in.
        "mb_per_s_2nd_half": round(size / 2 / ((done["end"] - done["half"]) / 1000) / 1e6, 2),
        "wall_s": round(seconds, 2),
        "chromium_cpu_s_per_gib": round(chrome_cpu / (size / GIB), 2),
        "discarded": discarded,
    }


def piece_digests(path: Path, piece_size: int) -> dict[str, str]:
    out = {}
    with open(path, "rb") as f:
        i = 0
        while chunk := f.read(piece_size):
            out[str(i)] = hashlib.sha256(chunk).hexdigest()
            i += 1
    return out


def browser_scenarios(browser: Browser, workdir: Path, url: str, src: Path,
                      size: int, query: str = "") -> dict[str, dict]:
    """seed-tab, then tab-fetch from that tab with the seeder stopped. `query`: added to
    the watch URL (e.g. "?store=memory")."""
    r = Runner(workdir)
    rows: dict[str, dict] = {}
    tab = None
    try:
        seed = r.start([P2P, "seed", str(src), "--signal", url, "--ice-host", "127.0.0.1",
                        "--json"], "bseed")
        seeding = wait_event(r, "bseed", "seeding", 600)  # hashes once; cached after
        seed_ps = psutil.Process(seed.pid)

        tab = browser.disk_tab(url, hook=True)
        c0, s0 = chromium_cpu(), cpu(seed_ps)
        with PeakMemory() as peak:
            tab.goto(seeding["watch"] + query, timeout=30_000)
            timing = poll(lambda: tab.evaluate("() => window.__bench.complete !== null && "
                                               "window.__bench"), 1800, "the tab to hold the file")
            seed_cpu, chrome_cpu = cpu(seed_ps) - s0, cpu_since(c0)
        discarded = tab.evaluate("() => window.__bench.discarded()")
        st = tab.evaluate("() => window.p2p.state()")
        digests = tab.evaluate("() => window.p2p.digests()")
        if st["size"] != size or digests != piece_digests(src, st["pieceSize"]):
            raise RuntimeError("the tab holds bytes that differ from the file")
        rows["seed-tab"] = {
            "mb_per_s": round(size / (timing["complete"] / 1000) / 1e6, 2),
            "mb_per_s_connected": round(
                size / ((timing["complete"] - timing["manifest"]) / 1000) / 1e6, 2),
            "wall_s": round(timing["complete"] / 1000, 2),
            "cli_cpu_s_per_gib": round(seed_cpu / (size / GIB), 2),
            "chromium_cpu_s_per_gib": round(chrome_cpu / (size / GIB), 2),
            "discarded": discarded,
            **peak.row(),
        }

        os.killpg(seed.pid, signal.SIGTERM)
        if seed.wait(30) != 0:
            raise RuntimeError(f"the seeder exited {seed.returncode} on SIGTERM")
        out = workdir / "from-tab.bin"
        c0 = chromium_cpu()
        t0 = time.monotonic()
        fetch = r.start([P2P, "fetch", seeding["link"], "--ice-host", "127.0.0.1", "-o",
                         str(out), "--json", "--timeout", "30"], "bfetch")
        fetch_ps = psutil.Process(fetch.pid)
        fetch_cpu = 0.0
        with PeakMemory() as peak:
            while fetch.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    fetch_cpu = cpu(fetch_ps)
                if time.monotonic() - t0 > 1800:
                    raise TimeoutError("fetch from the tab took over 1800 s")
                time.sleep(0.05)
        wall = time.monotonic() - t0
        chrome_cpu = cpu_since(c0)
        discarded = tab.evaluate("() => window.__bench.discarded()") - discarded
        if fetch.returncode != 0:
            said = [line for line in (workdir / "bfetch.err").read_text().splitlines()
                    if '"progress"' not in line]
            tab_st = tab.evaluate("""() => { const s = window.p2p.state();
                return { sid: s.sid, peers: s.peers, busy: s.busy, dropped: s.dropped,
                         messages: s.messages, sentTo: s.sentTo }; }""")
            raise RuntimeError(f"fetch from the tab exited {fetch.returncode}:\n"
                               + "\n".join(said[-40:]) + f"\nthe tab: {json.dumps(tab_st)}")
        ev = r.events("bfetch")
        done = next(e for e in ev if e["event"] == "done")
        manifest = next(e for e in ev if e["event"] == "manifest")
        if set(done["peers"]) != {st["sid"]}:
            raise RuntimeError(f"fetch got data from {done['peers']}, not only the tab")
        if file_sha256(out) != file_sha256(src):
            raise RuntimeError("the file fetched from the tab differs from the source")
        out.unlink()
        rows["tab-fetch"] = {
            "mb_per_s": round(size / wall / 1e6, 2),
            "mb_per_s_connected": round(size / (done["t"] - manifest["t"]) / 1e6, 2),
            "wall_s": round(wall, 2),
            "cli_cpu_s_per_gib": round(fetch_cpu / (size / GIB), 2),
            "chromium_cpu_s_per_gib": round(chrome_cpu / (size / GIB), 2),
            "discarded": discarded,
            **peak.row(),
        }
        return rows
    finally:
        if tab is not None:
            tab.context.close()
        r.stop_all()


def wait_event(r: Runner, name: str, event: str, timeout: float) -> dict:
    return poll(lambda: next((e for e in r.events(name) if e.get("event") == event), None),
                timeout, f"{name}'s {event} event")


def poll(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cli_scenario(workdir: Path, src: Path) -> dict:
    res = p2p_scenario(workdir, src, 1, 1)
    return {
        "mb_per_s": res["mb_per_s"],
        "mb_per_s_connected": res["mb_per_s_connected"],
        "wall_s": res["wall_s"],
        "cli_cpu_s_per_gib": res["seed_cpu_s_per_gib"],
        "cli_fetch_cpu_s_per_gib": res["fetch_cpu_s_per_gib"],
    }


def set_mtu(mtu: int) -> None:
    """Inside the namespace: loopback's MTU (0: its own 65,536)."""
    subprocess.run(["ip", "link", "set", "lo", "mtu", str(mtu or 65536)], check=True,
                   timeout=30)


def measure(args: argparse.Namespace, size: int, mtus: list[int]) -> list[dict[str, dict]]:
    workdir = Path(tempfile.mkdtemp(prefix="p2p-bench-browser-"))
    rounds: list[dict[str, dict]] = []
    try:
        src = workdir / "src.bin"
        with open(src, "wb") as f:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
            f.write(os.urandom(size % (1 << 20)))
        for i in range(args.repeat):
            rows: dict[str, dict] = {}
            for mtu in mtus:
                set_mtu(mtu)
                suffix = f"@mtu{mtu}" if mtu else ""
                # A fresh browser per MTU: Chromium reads the interface's MTU when it
                # opens its sockets.
                browser = Browser()
                server = Runner(workdir)
                others: list[Runner] = []
                try:
                    url = start_signal(server, "signal")
                    found: dict[str, dict] = {}
                    if "raw" in args.raw:
                        found["raw"] = {"load_1m": round(os.getloadavg()[0], 2),
                                        **raw_scenario(browser, url, size)}
                        report(i, "raw" + suffix, found["raw"])
                    for page in args.pages:
                        label, page_url, query = "", url, ""
                        if page == "memory":
                            label, query = "[memory]", "?store=memory"
                        elif page != "this":
                            # Another checkout's page, from its own signaling server.
                            label = f"[{Path(page).name}]"
                            other = Runner(workdir)
                            other.env = {**other.env, "PYTHONPATH": page}
                            others.append(other)
                            page_url = start_signal(other, "signal-" + Path(page).name)
                        load = os.getloadavg()[0]
                        for key, res in browser_scenarios(browser, workdir, page_url, src,
                                                          size, query).items():
                            found[key + label] = {**res, "load_1m": round(load, 2)}
                            report(i, key + label + suffix, found[key + label])
                    if "cli" in args.rows:
                        load = os.getloadavg()[0]
                        found["cli"] = {**cli_scenario(workdir, src), "load_1m": round(load, 2)}
                        report(i, "cli" + suffix, found["cli"])
                finally:
                    browser.close()
                    for runner in [server, *others]:
                        runner.stop_all()
                ref = found["raw"]["mb_per_s"] if "raw" in found else None
                for key, res in found.items():
                    if ref:
                        res["x_raw"] = round(res["mb_per_s"] / ref, 2)
                    rows[key + suffix] = res
            rounds.append(rows)
    finally:
        set_mtu(0)
        shutil.rmtree(workdir, ignore_errors=True)
    return rounds


def start_signal(runner: Runner, name: str) -> str:
    """Start `p2p serve-signal` on a free port; its URL once it listens."""
    port = free_port()
    runner.start([P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                 name)
    poll(lambda: port_open(port), 30, "the signaling server")
    return f"http://127.0.0.1:{port}"


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def report(i: int, key: str, res: dict) -> None:
    print(f"round {i + 1} {key}: {res}", file=sys.stderr, flush=True)


COLS = ["mb_per_s", "x_raw", "mb_per_s_connected", "mb_per_s_2nd_half", "wall_s",
        "cli_cpu_s_per_gib", "chromium_cpu_s_per_gib", "discarded", "renderer_start_mib",
        "renderer_peak_mib", "chromium_peak_mib", "load_1m"]


def print_table(title: str, rows: dict[str, dict]) -> None:
    print(title)
    print("row                       " + " ".join(f"{c:>18}" for c in COLS))
    for name, res in rows.items():
        print(f"{name:<25} " + " ".join(f"{res.get(c, '-')!s:>18}" for c in COLS))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="64M", help="file size (K/M/G suffixes)")
    ap.add_argument("--mtu", default="0",
                    help="comma-separated loopback MTUs, one set of rows each (0: 65,536)")
    ap.add_argument("--no-cli", dest="rows", action="store_const", const=(), default=("cli",),
                    help="leave out the p2p seed -> fetch row")
    ap.add_argument("--no-raw", dest="raw", action="store_const", const=(), default=("raw",),
                    help="leave out the raw tab <-> tab channel row (and the x_raw ratios)")
    ap.add_argument("--pages", default="this",
                    help="comma-separated pages for the seed-tab and tab-fetch rows: this, "
                         "memory (?store=memory), or another checkout's path (its page)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; >1 adds a median table")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    args.pages = [p for p in args.pages.split(",") if p]
    for p in args.pages:
        if p not in ("this", "memory") and not (Path(p) / "p2pcli" / "web").is_dir():
            ap.error(f"--pages: {p} is not a checkout with p2pcli/web")
    try:
        mtus = [int(x) for x in args.mtu.split(",")]
    except ValueError:
        ap.error("--mtu takes integers, e.g. 0,1500")
    if any(m and not 1280 <= m <= 65536 for m in mtus):
        ap.error("--mtu: 0, or 1280..65536 (WebRTC needs 1280)")
    # SIGTERM (from `timeout`, or from the namespace's owner) unwinds like Ctrl-C, so every
    # finally stops its processes and the browser, and the namespace is deleted after them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.environ.get(NETNS_ENV):
        # Chromium, Playwright's driver and every `p2p` process inherit it: Chromium's
        # background requests go nowhere.
        return in_namespace(__file__, argv, tag="browser",
                            why="benchmarks/browser.py needs root: it runs in a network namespace")

    rounds = measure(args, size, mtus)
    if args.json:
        out: dict[str, Any] = {"size": size, "mtus": mtus, "rounds": rounds}
        if len(rounds) > 1:
            out["median"] = medians(rounds)
        print(json.dumps(out, indent=2))
        return 0
    for i, rows in enumerate(rounds):
        print_table(f"round {i + 1}: {size / 2**20:g} MiB in a network namespace", rows)
    if len(rounds) > 1:
        print_table(f"median of {len(rounds)} rounds", medians(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
