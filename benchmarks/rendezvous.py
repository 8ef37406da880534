"""Time to first byte through each rendezvous, against WebTorrent's time to first peer.

Issue 15's closing figure: from `p2p fetch` start to its first byte, through each kind of
rendezvous, with the seeder in one home and the fetcher in another, each behind its own
Linux NAT (tests/nat_helpers.py's NatLab: coturn as STUN server, `p2p serve-signal`, the
real `bittorrent-tracker` and the real PeerJS server in the "public" namespace); and, in
the same run, the real WebTorrent (2.8.5, node, node-datachannel) seeding in home A and
leeching in home B through that same tracker (tests/js/wt_timing.mjs). mDNS cannot cross
a NAT: it is measured on a LAN (two namespaces on one bridge, tests/netns.py's Lab). Plain
loopback, with no NAT, is measured too, for reference.

Kinds (--kinds):
  serve-signal    the link names `p2p serve-signal` in the public namespace (its ICE
                  servers: coturn as STUN)
  tracker         a link with only `tr=` (the tracker): no signaling server involved; both
                  sides get coturn as STUN with --ice-server
  peerjs          a link with only `peerjs=`: the real PeerJS server (`peer`, run by
                  tests/js/peerjs_server.mjs) in the public namespace, STUN as above
  mdns            a bare hash, found by mDNS on the LAN (the seeder's embedded server)
  webtorrent      WebTorrent as it runs in node: simple-peer waits out its 5 s ICE timeout
                  for an end-of-candidates event that node-datachannel's polyfill never
                  fires, once on the offer and once on the answer
  webtorrent-eoc  WebTorrent with that event fired when ICE gathering completes, as a
                  browser fires it (its own info hash, so the two never meet)
  loopback        the same kinds again on 127.0.0.1 (all but mdns)

Each round starts one fresh fetch (or WebTorrent leecher) per kind, one at a time, against
seeders that stay up for the whole run; the kinds' order rotates from round to round.
Per kind, medians (min-max) over the rounds of:

  p2p (from its --json events; `t` counts from the command's start, interpreter start-up
  not counted; "spawn": from our Popen, start-up included):
    first peer   `peer-joined`: the first peer's data channel is open
    first byte   the first `piece-verified` (16 KiB pieces at the default --size, so the
                 first piece is the first bytes anyone can use)
    done         `done`
    spawn        the first piece-verified line's arrival, from Popen
    pair         the fetcher's candidate pair (local -> remote) and its kind
  WebTorrent (from `client.add`; "spawn": from node's own start):
    first peer   the first `wire` (a peer past the BitTorrent handshake)
    first byte   the first PIECE message; verified: the first piece hash-checked (16 KiB
                 pieces, as p2p's)
    pair         the first wire's remote address

Ratios, per topology, of each WebTorrent variant to each p2p kind: WebTorrent's first peer
over p2p's first byte (the issue's comparison), first byte over first byte, and both from
process start; each as the ratio of medians and the range of the rounds' own ratios (how
noisy the run was). Every figure is from this run.

Needs root, iptables, coturn (`turnserver`), node, and `npm ci` in tests/js; a lab that
cannot run is skipped with the reason. Everything started here is stopped and every
namespace deleted on exit, Ctrl-C and SIGTERM included.

    .venv/bin/python benchmarks/rendezvous.py [--runs 5] [--size 4M]
        [--kinds serve-signal,tracker,peerjs,mdns,webtorrent,webtorrent-eoc,loopback] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import nat_helpers  # noqa: E402
import netns  # noqa: E402
from conftest import P2P, Proc, Procs, make_file  # noqa: E402
from nat_helpers import NatLab  # noqa: E402
from turn_helpers import seed_in, start_coturn, start_signal  # noqa: E402

JS = ROOT / "tests" / "js"
WT = JS / "wt_timing.mjs"
TRACKER_PORT = 8000
PEERJS = JS / "peerjs_server.mjs"
PEERJS_PORT = 9000
PIECE = 16 * 1024  # p2p's piece size up to 16 MiB (docs/PROTOCOL.md 1.1); WebTorrent's too


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


# -- one timed process ----------------------------------------------------------------------


@dataclass
class Lines:
    """What a process printed, each line with its arrival in seconds since our Popen."""

    rc: int | None
    out: list[tuple[float, str]]
    err: list[tuple[float, str]]

    def events(self) -> list[tuple[float, dict]]:
        found = []
        for at, line in self.err:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append((at, json.loads(line)))
        return found

    def tail(self) -> str:
        return "\n".join(line for _, line in self.err[-15:])


def run_timed(cmd: list[str], cwd: Path, env: dict, timeout: float) -> Lines:
    """Run `cmd` to its end (killed after `timeout`), stamping each output line on arrival:
    the fetch's own `t` leaves out interpreter start-up, our stamp does not."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    got: dict[str, list[tuple[float, str]]] = {"out": [], "err": []}

    def pump(stream, dest: list[tuple[float, str]]) -> None:
        for raw in stream:
            dest.append((time.monotonic() - t0, raw.decode(errors="replace").rstrip("\n")))

    pumps = [threading.Thread(target=pump, args=(p.stdout, got["out"]), daemon=True),
             threading.Thread(target=pump, args=(p.stderr, got["err"]), daemon=True)]
    for th in pumps:
        th.start()
    rc: int | None
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    for th in pumps:
        th.join(10)
    return Lines(rc, got["out"], got["err"])


# -- samples ------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    ok: bool
    peer: float | None = None
    "p2p: peer-joined's t; WebTorrent: client.add -> first wire."
    first: float | None = None
    "p2p: the first piece-verified's t; WebTorrent: client.add -> first PIECE message."
    verified: float | None = None
    "WebTorrent: client.add -> first piece verified (p2p: the same as `first`)."
    done: float | None = None
    spawn: float | None = None
    """From process start to the first byte, start-up included (p2p: the first
    piece-verified line's arrival since our Popen; WebTorrent: its first block since node's
    own start)."""
    pair: str | None = None
    error: str | None = None
    void: str | None = None
    "Why this sample does not count: its seeder or server was gone (killed from outside)."
    extra: dict = field(default_factory=dict)


def p2p_sample(kind: str, lines: Lines) -> Sample:
    evs = lines.events()

    def first(name: str) -> tuple[float, dict] | None:
        return next(((at, e) for at, e in evs if e.get("event") == name), None)

    joined, piece, done = first("peer-joined"), first("piece-verified"), first("done")
    if lines.rc != 0 or not (joined and piece and done):
        why = "timed out" if lines.rc is None else f"exit {lines.rc}"
        return Sample(kind, False, error=f"{why}: {lines.tail()[-600:]}")
    s = Sample(kind, True, peer=joined[1]["t"], first=piece[1]["t"], verified=piece[1]["t"],
               done=done[1]["t"], spawn=round(piece[0], 3),
               pair=f"{joined[1]['connection']}: {joined[1].get('pair')}")
    lan = first("lan-searched")
    if lan:
        s.extra["lan_search_s"] = lan[1]["seconds"]
    return s


def wt_sample(kind: str, lines: Lines, size: int) -> Sample:
    try:
        r = json.loads(lines.out[-1][1])
    except (IndexError, ValueError):
        why = "timed out" if lines.rc is None else f"exit {lines.rc}"
        return Sample(kind, False, error=f"{why}: {lines.tail()[-600:]}")
    if lines.rc != 0 or r.get("bytes") != size:
        return Sample(kind, False, error=f"exit {lines.rc}, {r.get('bytes')} of {size} bytes")
    return Sample(kind, True, peer=r["wire_s"], first=r["first_block_s"],
                  verified=r["verified_s"], done=r["done_s"],
                  spawn=r["since_start"]["first_block_s"], pair=r.get("addr"),
                  extra={"first_byte_s": r["first_byte_s"]})


Tracker = tuple[str, Callable[..., list[str]]]
"A tracker's URL, and how to run a command where its clients are (its namespace)."


def listening(url: str, cmd: Callable[..., list[str]]) -> bool:
    """Whether the tracker at `url` accepts a TCP connection from where `cmd` runs. (A
    SIGTERM makes ws_tracker.mjs close its listener and wait for its clients: it lives on,
    deaf.)"""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    probe = ("import socket; s = socket.socket(); s.settimeout(2); "
             f"print(s.connect_ex(({host!r}, {port})))")
    r = subprocess.run(cmd(sys.executable, "-c", probe), capture_output=True, text=True,
                       timeout=30)
    return r.stdout.strip() == "0"


# -- the labs -----------------------------------------------------------------------------


@dataclass
class Kind:
    """One way a fetcher in B meets a seeder in A: `run(i)` makes one sample."""

    name: str
    topology: str
    "Where: 'NAT' (two homes), 'LAN' (one bridge), 'loopback'."
    p2p: bool
    run: Callable[[int], Sample]


class Bench:
    """The seeders and servers of each topology, and its kinds' samplers.

    A topology whose processes died (or whose tracker stopped listening) is torn down and
    built again before its next sample, and a sample that failed because of that does not
    count: on a machine shared with other sessions' tests, something outside this run
    killed every `p2p` process of one run, and in another made both trackers stop
    listening, mid-run. Each such event is noted in the report.
    """

    def __init__(self, base: Path, size: int, timeout: float, want: set[str]) -> None:
        self.base = base
        self.size = size
        self.timeout = timeout
        self.want = want
        self.src = make_file(base / "src.bin", size)
        self.env = dict(os.environ, P2P_CACHE_DIR=str(base / "cache"), PYTHONUNBUFFERED="1",
                        P2P_LAN="0")  # only the LAN lab's processes multicast (below)
        self.env.pop("P2P_SIGNAL", None)
        self.procs = Procs(base, self.env)
        "The processes of the topology being built (each topology has its own)."
        self.built: dict[str, tuple[Procs, object | None, list[Tracker]]] = {}
        "Per topology: its processes, its lab, its trackers."
        self.builds = 0
        self.kinds: list[Kind] = []
        self.trackers: list[Tracker] = []
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}
        self.node = shutil.which("node") or "node"
        self._lab: object | None = None

    def build(self, topology: str) -> None:
        """Start `topology`'s lab, servers and seeders (again, after `teardown`)."""
        self.builds += 1
        work = self.base / f"{topology}-{self.builds}"
        work.mkdir()
        self.procs = Procs(work, self.env)
        self._lab = None
        self.trackers = []
        self.kinds = [k for k in self.kinds if k.topology != topology]
        try:
            {"NAT": self.nat, "LAN": self.lan, "loopback": self.loopback}[topology]()
        finally:
            self.built[topology] = (self.procs, self._lab, self.trackers)

    def unhealthy(self, topology: str) -> str | None:
        """Why `topology` cannot give a fair sample now (None: it can)."""
        procs, _, trackers = self.built[topology]
        dead = [f"{p.name} exited {p.p.returncode}" for p in procs.all if p.p.poll() is not None]
        deaf = [f"{url} stopped listening" for url, cmd in trackers if not listening(url, cmd)]
        return "; ".join(dead + deaf) or None

    def teardown(self, topology: str) -> None:
        procs, lab, _ = self.built.pop(topology)
        procs.stop_all()
        if lab is not None:
            lab.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        for topology in list(self.built):
            self.teardown(topology)

    def _out(self, tag: str, i: int) -> Path:
        d = self.base / f"{tag}-{i}"
        d.mkdir()
        return d

    # Seeders.

    def _wt_seed(self, cmd: Callable[..., list[str]], announce: str, src: Path,
                 *opts: str) -> str:
        p = self.procs.start(cmd(self.node, str(WT), "seed", "--file", str(src),
                                 "--announce", announce, "--piece-length", str(PIECE), *opts),
                             f"wt-seed-{len(self.procs.all)}")
        line = p.wait_for(lambda p: p.stdout.strip(), 60, "WebTorrent's magnet")
        return json.loads(line.splitlines()[0])["magnet"]

    def _tracker(self, cmd: Callable[..., list[str]], host: str, port: int) -> str:
        p = self.procs.start(cmd(self.node, str(JS / "ws_tracker.mjs"), host, str(port)),
                             f"tracker-{len(self.procs.all)}")
        p.wait_for(lambda p: p.stdout.strip(), 30, "the tracker listening")
        url = f"ws://{host}:{json.loads(p.stdout.splitlines()[0])['port']}"
        self.trackers.append((url, cmd))
        return url

    @staticmethod
    def _only_link(seed: Proc, param: str, url: str) -> str:
        """The seeder's link with only `url` in it (`param`=: tr or peerjs; no signal=),
        once it has announced there: fetching it meets through that or not at all."""
        link = seed.wait_for(lambda p: p.stdout.strip(), 60, "the link").splitlines()[0]
        # `announced` names the server as the client dialled it (PeerJS: its ws:// URL).
        via = {"tr": "tracker"}.get(param, param)
        seed.wait_for(lambda p: any(e["event"] == "announced" and e["via"] == via
                                    for e in p.events()), 30, f"the announce to {url}")
        content = link.split("://", 1)[1].split("?", 1)[0]
        return f"p2p://{content}?{param}={quote(url, safe='')}"

    def _peerjs(self, cmd: Callable[..., list[str]], host: str, port: int) -> str:
        """The real PeerJS server (tests/js/peerjs_server.mjs: the `peer` package)."""
        p = self.procs.start(cmd(self.node, str(PEERJS), host, str(port)),
                             f"peerjs-{len(self.procs.all)}")
        p.wait_for(lambda p: p.stdout.strip(), 30, "the PeerJS server listening")
        return f"http://{host}:{json.loads(p.stdout.splitlines()[0])['port']}"

    def _meet_only(self, topology: str, kind: str, flag: str, param: str, url: str,
                   in_a: Callable[..., list[str]], in_b: Callable[..., list[str]],
                   *opts: str) -> None:
        """`p2p` in A (`in_a` makes its command line from the arguments) seeding, announced
        to `url` alone (`flag`), and fetched by `p2p` in B from a link that names only `url`
        (`param`=). The seeder's embedded signaling server stays out of the meeting: on
        loopback the link does not name it, behind NAT B cannot reach it."""
        seed = self.procs.start(in_a("seed", str(self.src), flag, url, "--json", *opts),
                                f"{kind}-seed")
        only = self._only_link(seed, param, url)

        def fetch(i: int) -> Sample:
            out = self._out(f"{topology}-{kind}", i)
            return self._fetch(kind, in_b("fetch", only, "-o", "out.bin", "--json", *opts,
                                          "--timeout", str(self.timeout)), out)
        self.kinds.append(Kind(kind, topology, True, fetch))

    def _fetch(self, kind: str, cmd: list[str], out: Path, env: dict | None = None) -> Sample:
        return p2p_sample(kind, run_timed(cmd, out, env or self.env, self.timeout + 60))

    def _leech(self, kind: str, cmd: list[str], out: Path) -> Sample:
        return wt_sample(kind, run_timed(cmd, out, self.env, self.timeout + 60), self.size)

    # Topologies.

    def nat(self) -> None:
        want = self.want
        lab = NatLab()
        self._lab = lab
        lab.start()
        assert lab.pub and lab.a and lab.b
        a, b, pub = lab.a, lab.b, lab.pub
        start_coturn(self.procs, lab, self.procs.workdir)
        timeout = ["--timeout", str(self.timeout)]
        if "serve-signal" in want:
            start_signal(self.procs, lab, "--ice-server", lab.stun_url)
            _, link = seed_in(self.procs, lab, self.src)

            def via_signal(i: int) -> Sample:
                out = self._out("nat-signal", i)
                return self._fetch("serve-signal", b.p2p("fetch", link, "-o", "out.bin", "--json",
                                                         *timeout), out)
            self.kinds.append(Kind("serve-signal", "NAT", True, via_signal))
        # One tracker in the public namespace for p2p and WebTorrent alike.
        announce = self._tracker(pub.cmd, pub.addr, TRACKER_PORT) if want & {
            "tracker", "webtorrent", "webtorrent-eoc"} else ""
        # Both sides get coturn as STUN server themselves: no signaling server hands it out.
        ice = ["--ice-server", lab.stun_url]
        if "tracker" in want:
            self._meet_only("NAT", "tracker", "--tracker", "tr", announce, a.p2p, b.p2p, *ice)
        if "peerjs" in want:
            url = self._peerjs(pub.cmd, pub.addr, PEERJS_PORT)
            self._meet_only("NAT", "peerjs", "--peerjs", "peerjs", url, a.p2p, b.p2p, *ice)
        self._webtorrent(want, "NAT", b.cmd, a.cmd, announce, "--stun", lab.stun_url)

    def lan(self) -> None:
        lab = netns.Lab()
        self._lab = lab
        lab.start()
        a, b = lab.add("a"), lab.add("b")
        env = {**self.env, "P2P_LAN": "1"}  # inside these namespaces only
        seed = self.procs.start(a.p2p("seed", str(self.src), "--ice-host", a.addr, "--json"),
                                "lan-seed", env=env)
        link = seed.wait_for(lambda p: p.stdout.strip(), 60, "the link")
        seed.wait_for(lambda p: any(e["event"] == "lan-announced" for e in p.events()), 30,
                      "lan-announced")
        content = link.split("://", 1)[1].split("?", 1)[0]

        def mdns(i: int) -> Sample:
            out = self._out("lan-mdns", i)
            return self._fetch("mdns", b.p2p("fetch", content, "--ice-host", b.addr, "--json",
                                             "-o", "out.bin", "--timeout", str(self.timeout)),
                               out, env)
        self.kinds.append(Kind("mdns", "LAN", True, mdns))

    def loopback(self) -> None:
        """The same kinds on this machine's loopback: no NAT, no namespace (no mDNS)."""
        want = self.want
        host = ["--ice-host", "127.0.0.1"]
        if "serve-signal" in want:
            url = self.procs.serve_signal("loop-signal")
            _, link = self.procs.seed(self.src, url, name="loop-seed")

            def via_signal(i: int) -> Sample:
                out = self._out("loop-signal", i)
                return self._fetch("serve-signal", [P2P, "fetch", link, *host, "--json", "-o",
                                                    "out.bin", "--timeout", str(self.timeout)],
                                   out)
            self.kinds.append(Kind("serve-signal", "loopback", True, via_signal))
        local = lambda *args: list(args)  # noqa: E731
        p2p = lambda *args: [P2P, *args]  # noqa: E731
        if "peerjs" in want:
            url = self._peerjs(local, "127.0.0.1", 0)
            self._meet_only("loopback", "peerjs", "--peerjs", "peerjs", url, p2p, p2p, *host)
        if not want & {"tracker", "webtorrent", "webtorrent-eoc"}:
            return
        announce = self._tracker(local, "127.0.0.1", 0)
        if "tracker" in want:
            self._meet_only("loopback", "tracker", "--tracker", "tr", announce, p2p, p2p, *host)
        self._webtorrent(want, "loopback", local, local, announce, "--bind", "127.0.0.1")

    def _webtorrent(self, want: set[str], topology: str, in_b: Callable[..., list[str]],
                    in_a: Callable[..., list[str]], announce: str, *opts: str) -> None:
        """WebTorrent seeding in A and leeching in B through `announce`: as it is in node
        ("webtorrent"), and with the end of ICE candidates signalled as a browser does
        ("webtorrent-eoc"; tests/js/wt_timing.mjs says why that costs 10 s in node)."""
        for kind in ("webtorrent", "webtorrent-eoc"):
            if kind not in want:
                continue
            extra = [*opts, "--end-of-candidates", "1" if kind.endswith("eoc") else "0"]
            # Its own file name, so its own info hash: a leecher of one variant must not
            # find the other variant's seeder on the tracker.
            src = self.base / f"{kind}.bin"
            if not src.exists():
                os.link(self.src, src)
            magnet = self._wt_seed(in_a, announce, src, *extra)

            def leech(i: int, kind: str = kind, magnet: str = magnet,
                      extra: list[str] = extra) -> Sample:
                out = self._out(f"{topology}-{kind}", i)
                return self._leech(kind, in_b(
                    self.node, str(WT), "leech", "--magnet", magnet, "--out", str(out / "dl"),
                    "--timeout", str(self.timeout), *extra), out)
            self.kinds.append(Kind(kind, topology, False, leech))


# -- report -------------------------------------------------------------------------------


LABEL = {"webtorrent": "WebTorrent 2.8.5, tracker",
         "webtorrent-eoc": "WebTorrent 2.8.5, tracker, end-of-candidates fired"}


def med(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = statistics.median(xs)
    return f"{m:.3f} ({min(xs):.3f}-{max(xs):.3f})" if len(xs) > 1 else f"{m:.3f}"


def report(kinds: list[Kind], samples: dict[tuple[str, str], list[Sample]], runs: int,
           skipped: dict[str, str]) -> str:
    out = ["seconds, median (min-max) over the rounds; p2p from the fetch's start (its --json "
           "t), WebTorrent from client.add; 'spawn' counts process start-up",
           "| topology | rendezvous | ok | first peer | first byte | first piece verified "
           "| done | first byte from spawn | pair (fetcher's) |", "|---" * 9 + "|"]
    for k in kinds:
        ss = samples[(k.topology, k.name)]
        good = [s for s in ss if s.ok]
        void = [s for s in ss if s.void]
        # Ports change every fetch: the pair's kinds and addresses, with how many had it.
        shapes = [re.sub(r":\d+\b", "", s.pair or "?") for s in good]
        pairs = [f"{shape} ({shapes.count(shape)})" for shape in sorted(set(shapes))]
        out.append(
            f"| {k.topology} | {LABEL.get(k.name, f'p2p {k.name}')} | "
            f"{len(good)}/{len(ss) - len(void)}{f' ({len(void)} void)' if void else ''} | "
            f"{med([s.peer for s in good])} | "
            f"{med([s.first for s in good])} | {med([s.verified for s in good])} | "
            f"{med([s.done for s in good])} | {med([s.spawn for s in good])} | "
            f"{'; '.join(pairs)} |")
    out.append("")
    # Per topology, each WebTorrent variant against each p2p rendezvous: its time to first
    # peer over p2p's time to first byte (the comparison), and first byte over first
    # byte (like for like); each round's own ratio as a range, to show the noise.
    def ratio(wt: list[Sample], mine: list[Sample], a: Callable[[Sample], float],
              b: Callable[[Sample], float]) -> str:
        good_wt, good = [s for s in wt if s.ok], [s for s in mine if s.ok]
        whole = statistics.median(map(a, good_wt)) / statistics.median(map(b, good))
        rounds = [a(w) / b(m) for w, m in zip(wt, mine, strict=False) if w.ok and m.ok]
        return f"{whole:.1f}x (rounds {min(rounds):.1f}-{max(rounds):.1f}x)"

    for topo in dict.fromkeys(k.topology for k in kinds):
        for w in (k for k in kinds if k.topology == topo and not k.p2p):
            wt = samples[(topo, w.name)]
            if not any(s.ok for s in wt):
                continue
            for k in (k for k in kinds if k.topology == topo and k.p2p):
                mine = samples[(topo, k.name)]
                if not any(s.ok for s in mine):
                    continue
                out.append(
                    f"{topo}: {LABEL[w.name]} / p2p {k.name}: first peer / first byte "
                    f"{ratio(wt, mine, lambda s: s.peer, lambda s: s.first)}; first byte / "
                    f"first byte {ratio(wt, mine, lambda s: s.first, lambda s: s.first)}; "
                    f"from spawn {ratio(wt, mine, lambda s: s.spawn, lambda s: s.spawn)}")
    for k in kinds:
        lan = [s.extra["lan_search_s"] for s in samples[(k.topology, k.name)]
               if s.ok and "lan_search_s" in s.extra]
        if lan:
            out.append(f"{k.topology} {k.name}: of which the LAN search {med(lan)} s")
    for (topology, _), ss in samples.items():
        for s in ss:
            if s.void:
                out.append(f"void {topology} {s.kind}: {s.void}")
            elif not s.ok:
                out.append(f"FAILED {topology} {s.kind}: {s.error}")
    for name, why in skipped.items():
        out.append(f"skipped {name}: {why}")
    return "\n".join(out)


def _interrupt(*_: object) -> None:
    # SIGTERM stops a run like Ctrl-C: main's `finally` stops the processes, deletes labs.
    raise KeyboardInterrupt


KINDS = ("serve-signal", "tracker", "peerjs", "mdns", "webtorrent", "webtorrent-eoc",
         "loopback")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="fetches per kind (rounds)")
    ap.add_argument("--size", type=parse_size, default=4 << 20, help="file size (K/M/G)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"comma-separated, from {','.join(KINDS)}")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="each fetch's --timeout, and WebTorrent's (s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = ap.parse_args(argv)
    want = {k for k in args.kinds.split(",") if k}
    if want - set(KINDS):
        ap.error(f"unknown kinds {sorted(want - set(KINDS))}")
    if not (JS / "node_modules" / "webtorrent").is_dir():
        ap.error("tests/js has no webtorrent: run `npm ci` in tests/js first")

    skipped = {}
    if "peerjs" in want and not (PEERJS.exists() and (JS / "node_modules" / "peer").is_dir()):
        skipped["peerjs"] = "no PeerJS server here (tests/js/peerjs_server.mjs and `peer`)"
        want.discard("peerjs")

    signal.signal(signal.SIGTERM, _interrupt)
    base = Path(tempfile.mkdtemp(prefix="p2p-rendezvous-"))
    bench = Bench(base, args.size, args.timeout, want)
    bench.skipped.update(skipped)
    samples: dict[tuple[str, str], list[Sample]] = {}
    load = [os.getloadavg()[0]]
    started = time.monotonic()
    topologies = []
    if want - {"mdns", "loopback"}:
        if reason := nat_helpers.unavailable():
            bench.skipped["NAT"] = reason
        else:
            topologies.append("NAT")
    if "mdns" in want:
        if reason := netns.unavailable():
            bench.skipped["LAN"] = reason
        else:
            topologies.append("LAN")
    if "loopback" in want:
        topologies.append("loopback")
    try:
        for topology in topologies:
            bench.build(topology)
        order = [(k.topology, k.name) for k in bench.kinds]
        for r in range(args.runs):
            shift = r % max(1, len(order))
            for topology, name in order[shift:] + order[:shift]:
                if why := bench.unhealthy(topology):
                    bench.notes.append(f"round {r + 1}, before {topology} {name}: {why}; "
                                       f"{topology} rebuilt")
                    print(bench.notes[-1], file=sys.stderr, flush=True)
                    bench.teardown(topology)
                    bench.build(topology)
                kind = next(k for k in bench.kinds if (k.topology, k.name) == (topology, name))
                s = kind.run(r)
                if not s.ok and (why := bench.unhealthy(topology)):
                    s.void = why
                samples.setdefault((topology, name), []).append(s)
                status = "ok" if s.ok else f"VOID ({s.void})" if s.void else "FAILED"
                print(f"round {r + 1} {topology} {name}: {status} peer {s.peer} "
                      f"first {s.first} {s.pair or ''} {s.error or ''}", file=sys.stderr,
                      flush=True)
        load.append(os.getloadavg()[0])
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "size": args.size, "runs": args.runs, "seconds": round(elapsed, 1), "load": load,
            "skipped": bench.skipped, "notes": bench.notes,
            "samples": {f"{t} {n}": [asdict(s) for s in ss] for (t, n), ss in samples.items()},
        }, indent=2))
    else:
        print(f"rendezvous: {args.size / 2**20:g} MiB file, {args.runs} round(s), "
              f"{elapsed:.0f} s, {os.cpu_count()} CPUs, load {load[0]:.1f} -> {load[-1]:.1f}")
        print(report(bench.kinds, samples, args.runs, bench.skipped))
        for note in bench.notes:
            print(note)
    return 0 if all(s.ok or s.void for ss in samples.values() for s in ss) else 1


if __name__ == "__main__":
    sys.exit(main())
