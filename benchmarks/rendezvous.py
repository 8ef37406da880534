"""Time to first byte through each rendezvous, against WebTorrent's time to first peer.

Issue 15's closing figure: from `p2p fetch` start to its first byte, through each kind of
rendezvous, with the seeder in one home and the fetcher in another, each behind its own
Linux NAT (tests/nat_helpers.py's NatLab: coturn as STUN server, `p2p serve-signal` and the
real `bittorrent-tracker` server in the "public" namespace); and, in the same run, the real
WebTorrent (2.8.5, node, node-datachannel) seeding in home A and leeching in home B through
that same tracker (tests/js/wt_timing.mjs). mDNS cannot cross a NAT: it is measured on a
LAN (two namespaces on one bridge, tests/netns.py's Lab). Plain loopback, with no NAT, is
measured too, for reference.

Kinds (--kinds):
  serve-signal    the link names `p2p serve-signal` in the public namespace (its ICE
                  servers: coturn as STUN)
  tracker         a link with only `tr=` (the tracker): no signaling server involved; both
                  sides get coturn as STUN with --ice-server
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

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rendezvous.py [--runs 5] [--size 4M]
        [--kinds serve-signal,tracker,mdns,webtorrent,webtorrent-eoc,loopback] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    "From process start to the first byte (p2p: first piece-verified's arrival since Popen;"
    " WebTorrent: its first block since node's start), start-up included."
    pair: str | None = None
    error: str | None = None
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
    def __init__(self, base: Path, size: int, timeout: float) -> None:
        self.base = base
        self.size = size
        self.timeout = timeout
        self.src = make_file(base / "src.bin", size)
        self.env = dict(os.environ, P2P_CACHE_DIR=str(base / "cache"), PYTHONUNBUFFERED="1",
                        P2P_LAN="0")  # only the LAN lab's processes multicast (below)
        self.env.pop("P2P_SIGNAL", None)
        self.procs = Procs(base, self.env)
        self.labs: list = []
        self.kinds: list[Kind] = []
        self.skipped: dict[str, str] = {}
        self.node = shutil.which("node") or "node"

    def close(self) -> None:
        self.procs.stop_all()
        for lab in reversed(self.labs):
            lab.close()

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
        return f"ws://{host}:{json.loads(p.stdout.splitlines()[0])['port']}"

    @staticmethod
    def _tracker_link(seed: Proc, tracker: str) -> str:
        """The seeder's link with only the tracker in it (tr=, no signal=), once it has
        announced there: fetching it meets through the tracker or not at all."""
        link = seed.wait_for(lambda p: p.stdout.strip(), 60, "the link").splitlines()[0]
        seed.wait_for(lambda p: any(e["event"] == "announced" for e in p.events()), 30,
                      "the tracker announce")
        content = link.split("://", 1)[1].split("?", 1)[0]
        return f"p2p://{content}?tr={quote(tracker, safe='')}"

    def _fetch(self, kind: str, cmd: list[str], out: Path, env: dict | None = None) -> Sample:
        return p2p_sample(kind, run_timed(cmd, out, env or self.env, self.timeout + 60))

    def _leech(self, kind: str, cmd: list[str], out: Path) -> Sample:
        return wt_sample(kind, run_timed(cmd, out, self.env, self.timeout + 60), self.size)

    # Topologies.

    def nat(self, want: set[str]) -> None:
        reason = nat_helpers.unavailable()
        if reason:
            for k in want & {"serve-signal", "tracker", "webtorrent", "webtorrent-eoc"}:
                self.skipped[k] = reason
            return
        lab = NatLab()
        self.labs.append(lab)
        lab.start()
        assert lab.pub and lab.a and lab.b
        a, b, pub = lab.a, lab.b, lab.pub
        start_coturn(self.procs, lab, self.base)
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
        if "tracker" in want:
            # The seeder's embedded server is in A, out of B's reach, and its ICE servers
            # are its own (no signaling server hands them out): the tracker is all they share.
            ice = ["--ice-server", lab.stun_url]
            seed = self.procs.start(a.p2p("seed", str(self.src), "--tracker", announce, "--json",
                                          *ice), "nat-tracker-seed")
            only = self._tracker_link(seed, announce)

            def via_tracker(i: int) -> Sample:
                out = self._out("nat-tracker", i)
                return self._fetch("tracker", b.p2p("fetch", only, "-o", "out.bin", "--json",
                                                    *ice, *timeout), out)
            self.kinds.append(Kind("tracker", "NAT", True, via_tracker))
        self._webtorrent(want, "NAT", b.cmd, a.cmd, announce, "--stun", lab.stun_url)

    def lan(self) -> None:
        reason = netns.unavailable()
        if reason:
            self.skipped["mdns"] = reason
            return
        lab = netns.Lab()
        self.labs.append(lab)
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

    def loopback(self, want: set[str]) -> None:
        """The same kinds on this machine's loopback: no NAT, no namespace (no mDNS)."""
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
        if not want & {"tracker", "webtorrent", "webtorrent-eoc"}:
            return
        announce = self._tracker(lambda *a: list(a), "127.0.0.1", 0)
        if "tracker" in want:
            seed = self.procs.start([P2P, "seed", str(self.src), "--tracker", announce, *host,
                                     "--json"], "loop-tracker-seed")
            only = self._tracker_link(seed, announce)

            def via_tracker(i: int) -> Sample:
                out = self._out("loop-tracker", i)
                return self._fetch("tracker", [P2P, "fetch", only, *host, "--json", "-o",
                                               "out.bin", "--timeout", str(self.timeout)], out)
            self.kinds.append(Kind("tracker", "loopback", True, via_tracker))
        local = lambda *args: list(args)  # noqa: E731
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
        pairs = sorted({s.pair or "?" for s in good})
        out.append(
            f"| {k.topology} | {LABEL.get(k.name, f'p2p {k.name}')} | "
            f"{len(good)}/{len(ss)} | {med([s.peer for s in good])} | "
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
    fails = [s for ss in samples.values() for s in ss if not s.ok]
    for s in fails:
        out.append(f"FAILED {s.kind}: {s.error}")
    for name, why in skipped.items():
        out.append(f"skipped {name}: {why}")
    return "\n".join(out)


def _interrupt(*_: object) -> None:
    # SIGTERM stops a run like Ctrl-C: main's `finally` stops the processes, deletes labs.
    raise KeyboardInterrupt


KINDS = ("serve-signal", "tracker", "mdns", "webtorrent", "webtorrent-eoc", "loopback")


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

    signal.signal(signal.SIGTERM, _interrupt)
    base = Path(tempfile.mkdtemp(prefix="p2p-rendezvous-"))
    bench = Bench(base, args.size, args.timeout)
    samples: dict[tuple[str, str], list[Sample]] = {}
    load = [os.getloadavg()[0]]
    started = time.monotonic()
    try:
        if want - {"mdns", "loopback"}:
            bench.nat(want)
        if "mdns" in want:
            bench.lan()
        if "loopback" in want:
            bench.loopback(want)
        kinds = bench.kinds
        for r in range(args.runs):
            shift = r % max(1, len(kinds))
            for k in kinds[shift:] + kinds[:shift]:
                s = k.run(r)
                samples.setdefault((k.topology, k.name), []).append(s)
                print(f"round {r + 1} {k.topology} {k.name}: "
                      f"{'ok' if s.ok else 'FAILED'} peer {s.peer} first {s.first} "
                      f"{s.pair or ''} {s.error or ''}", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "size": args.size, "runs": args.runs, "seconds": round(elapsed, 1), "load": load,
            "skipped": bench.skipped,
            "samples": {f"{t} {n}": [asdict(s) for s in ss] for (t, n), ss in samples.items()},
        }, indent=2))
    else:
        print(f"rendezvous: {args.size / 2**20:g} MiB file, {args.runs} round(s), "
              f"{elapsed:.0f} s, {os.cpu_count()} CPUs, load {load[0]:.1f} -> {load[-1]:.1f}")
        print(report(bench.kinds, samples, args.runs, bench.skipped))
    return 0 if all(s.ok for ss in samples.values() for s in ss) else 1


if __name__ == "__main__":
    sys.exit(main())
