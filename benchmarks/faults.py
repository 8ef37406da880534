"""Fault report: each fault injected N times into real `p2p` transfers, and what survived.

Every run is a real transfer between real processes (`p2p serve-signal`, `p2p seed`,
`p2p fetch --json`, and tests/helpers/hostile_peer.py), on loopback or, for network faults,
between network namespaces (tests/netns.py: needs root, iptables; skipped with the reason
otherwise). Each run gets a fresh signaling server, fresh processes, fresh namespaces.

Faults:
  race           no fault: two seeders already up when the fetch starts and connects to
                 both at once; counts the runs where a seeder drops the fetch at connect
                 (it did, "second bitfield", until 6de70a8: a handshake that came while
                 the fetch opened its store got HAVE_ALL and then a BITFIELD)
  corrupt        a hostile source flips a byte in every block it serves
  silent         a hostile source says it has everything and never answers
  liar           a hostile source says it has everything and rejects every request
  seeder-kill    one of two seeders is SIGKILLed mid-transfer
  fetch-kill     the fetch is SIGKILLed mid-transfer, then run again (resume)
  signal-restart the signaling server is SIGKILLed mid-transfer and started again on the
                 same port 1 s later (the transfer goes on over WebRTC meanwhile)
  clean-ns       no fault, seeder and fetch in two namespaces: the baseline for the two below
  loss1, loss5   1% / 5% of UDP datagrams to and from the seeder dropped at random
  cut            one of two seeders (in namespaces) has all its UDP dropped mid-transfer

Per fault: runs; transfers completed byte-identical; bytes lost (bytes of a final output
that differ from the source, plus any missing tail; must be 0; a run that fails without a
final file loses nothing: the .part is kept for the next run); anomalies (runs that
completed, but not the way they should: the faulty peer never dropped, a seeder dropped the
fetch; their directories are kept); and, on the fetch's own event clock (`t` of --json
events, mapped to ours, see `Watch`):
  detect   fault -> the fetch reacts: drops the faulty peer (`peer-left`); fetch-kill: the
           new process has re-verified its .part (`resume`); signal-restart: both clients
           have announced again on the restarted server (its /stats)
  recover  fault -> the next piece verified (fetch-kill: by the new process, start-up of a
           Python process included)
  stall    longest gap between two verified pieces from the fault to the end
  MB/s     file size / (manifest -> done); runs with a rate limit say so in the notes;
           clean-ns and the loss rows use a larger file (--loss-size, 32 MiB)
A hostile peer's fault starts when it connects to the fetch (its `peer-joined`).
For clean-ns and the loss rows, the raw stack is measured in the same run, under the same
loss: benchmarks/tuning.py's bare aiortc channel (stock and tuned, one process pair in a
namespace, loss on its loopback, MTU 1500 like the veths), so p2p's figure can be read
against what aiortc itself does on that path.

    python benchmarks/faults.py [--runs 3] [--size 8M] [--faults corrupt,cut,...] [--json]
    python benchmarks/faults.py --soak [--minutes 3]   # then benchmarks/soak.py
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import netns  # noqa: E402
from conftest import P2P, Proc, Procs, free_port, make_file, wait_port  # noqa: E402

HOSTILE = str(ROOT / "tests" / "helpers" / "hostile_peer.py")
TUNING = str(ROOT / "benchmarks" / "tuning.py")
FETCH_TIMEOUT = 240.0  # seconds for any one fetch; a run past it counts as failed


class FaultError(RuntimeError):
    """A run could not be carried out (a process died early, a wait timed out)."""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


# -- reading a process's events ----------------------------------------------------------------


class Watch:
    """Follows a process's --json events as they are written; maps their `t` to our clock.

    `t` counts from a moment inside that process that it does not report. An event with `t`
    first seen at our time `h` bounds the offset (h - t) from above, and progress events come
    twice a second, so the smallest bound pins the offset to about one poll (20 ms).
    """

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self.offset = math.inf
        self._pos = 0
        self._buf = b""

    def poll(self) -> list[dict]:
        with open(self.proc.err_path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        now = time.monotonic()
        self._pos += len(data)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            if line.startswith(b"{"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                self.events.append(ev)
                if isinstance(ev.get("t"), int | float):
                    self.offset = min(self.offset, now - ev["t"])
        return self.events

    def until(self, pred: Callable[[list[dict]], object], timeout: float, what: str) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred(self.poll())
            if v:
                return v
            if self.proc.p.poll() is not None:
                v = pred(self.poll())
                if v:
                    return v
                raise FaultError(f"{self.proc.name} exited {self.proc.p.returncode} before "
                                 f"{what}: {self.proc.stderr[-400:]!r}")
            time.sleep(0.02)
        raise FaultError(f"{self.proc.name}: no {what} within {timeout:g}s")

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.p.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise FaultError(f"{self.proc.name} did not finish within {timeout:g}s")
            self.poll()
            time.sleep(0.05)
        self.poll()
        return self.proc.p.returncode

    def t_of(self, h: float) -> float:
        """Our monotonic time -> this process's `t`."""
        return h - self.offset

    def at(self, t: float) -> float:
        """This process's `t` -> our monotonic time."""
        return t + self.offset

    def first(self, kind: str, **match: object) -> dict | None:
        return next((e for e in self.events if e["event"] == kind
                     and all(e.get(k) == v for k, v in match.items())), None)

    def verified_t(self) -> list[float]:
        return [e["t"] for e in self.events if e["event"] == "piece-verified"]


def n_verified(events: list[dict]) -> int:
    return sum(e["event"] == "piece-verified" for e in events)


def pieces(events: list[dict]) -> int | None:
    return next((e["pieces"] for e in events if e["event"] == "manifest"), None)


def first_after(ts: list[float], t0: float) -> float | None:
    later = [t for t in ts if t > t0]
    return min(later) - t0 if later else None


def longest_gap(ts: list[float], t0: float, t_end: float | None) -> float | None:
    points = sorted([t0, *(t for t in ts if t > t0)])
    if t_end is not None:
        points.append(t_end)
    return max((b - a for a, b in itertools.pairwise(points)), default=None)


def signal_id(proc: Proc, timeout: float = 30) -> str:
    w = Watch(proc)
    ev = w.until(lambda evs: next((e for e in evs if e["event"] == "signaling-connected"),
                                  None), timeout, "signaling-connected")
    assert isinstance(ev, dict)
    return ev["peer"]


def bytes_lost(src: Path, out: Path) -> int:
    """Bytes of `out` that are not the source's: differing bytes plus a missing/extra tail."""
    lost = abs(src.stat().st_size - out.stat().st_size)
    with open(src, "rb") as a, open(out, "rb") as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            if not x or not y:
                return lost
            if x != y:
                lost += sum(1 for i in range(min(len(x), len(y))) if x[i] != y[i])


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    completed: bool = False
    "The fetch exited 0 and its output is byte-identical to the source."
    lost: int = 0
    "Bytes of a final output that are wrong or missing."
    detect: float | None = None
    recover: float | None = None
    stall: float | None = None
    mbps: float | None = None
    raw: dict[str, float] = field(default_factory=dict)
    "Raw-stack MB/s in the same conditions, by variant (stock, tuned)."
    note: str = ""
    error: str | None = None
    odd: bool = False
    "Completed, but not the way it should have (e.g. the faulty peer was never dropped)."


@dataclass
class Ctx:
    workdir: Path
    procs: Procs
    src: Path
    size: int
    lab: netns.Lab | None = None

    @property
    def out(self) -> Path:
        return self.workdir / "out.bin"


def outcome(ctx: Ctx, w: Watch, timeout: float = FETCH_TIMEOUT) -> Run:
    """Wait for the fetch to end; judge its output."""
    rc = w.wait_exit(timeout)
    r = Run()
    if ctx.out.exists():
        r.lost = bytes_lost(ctx.src, ctx.out)
    elif rc == 0:
        r.lost = ctx.size  # "done" and no file: everything is lost
    r.completed = rc == 0 and ctx.out.exists() and r.lost == 0
    manifest, done = w.first("manifest"), w.first("done")
    if manifest and done and done["t"] > manifest["t"]:
        r.mbps = ctx.size / (done["t"] - manifest["t"]) / 1e6
    if rc != 0:
        r.note = f"fetch exit {rc}: {w.proc.stderr.strip().splitlines()[-1:]}"
    return r


def loopback_signal(ctx: Ctx) -> str:
    return ctx.procs.serve_signal()


def until_share(w: Watch, share: float, senders: set[str] = frozenset()) -> None:
    """Until `share` of the pieces are verified (and each of `senders` contributed)."""

    def ok(evs: list[dict]) -> bool:
        n = pieces(evs)
        got = {p for e in evs if e["event"] == "piece-verified" for p in e["peers"]}
        return n is not None and n_verified(evs) >= share * n and senders <= got

    w.until(ok, 120, f"{share:.0%} of the pieces")


def fault_race(ctx: Ctx) -> Run:
    url = loopback_signal(ctx)
    s1, link = ctx.procs.seed(ctx.src, url, name="seed1")
    s2, _ = ctx.procs.seed(ctx.src, url, name="seed2")
    w = Watch(ctx.procs.fetch(link, "-o", "out.bin", "--timeout", "30"))
    r = outcome(ctx, w)
    fid = next((e["peer"] for e in w.events if e["event"] == "signaling-connected"), None)
    reasons = [e["reason"] for s in (s1, s2) for e in s.events()
               if e["event"] == "peer-left" and e["peer"] == fid and e.get("reason")]
    used = len((w.first("done") or {}).get("peers", {}))
    r.note = f"data from {used} of 2 seeders"
    if reasons:
        r.odd = True
        r.note += "; a seeder dropped the fetch: " + "; ".join(sorted(set(reasons)))
    return r


def fault_hostile(mode: str) -> Callable[[Ctx], Run]:
    def run(ctx: Ctx) -> Run:
        url = loopback_signal(ctx)
        # Rate-limited so the honest seeder is still busy when the hostile one is caught
        # (a silent peer only after its first request times out, 8 s).
        rate = {"silent": "500k", "liar": "500k"}.get(mode, "1M")
        _, link = ctx.procs.seed(ctx.src, url, "--max-upload-rate", rate)
        h = ctx.procs.start([sys.executable, HOSTILE, url, str(ctx.src), mode], f"hostile-{mode}")
        bad = h.wait_for(lambda p: p.stdout.strip(), 30, "hostile announce")
        w = Watch(ctx.procs.fetch(link, "-o", "out.bin", "--timeout", "30"))
        r = outcome(ctx, w)
        joined, done = w.first("peer-joined", peer=bad), w.first("done")
        # Dropped for cause: a peer-left with a reason (every link is closed at the end).
        left = next((e for e in w.events if e["event"] == "peer-left" and e["peer"] == bad
                     and e.get("reason")), None)
        r.note = f"seeder --max-upload-rate {rate}"
        if joined:
            t0 = joined["t"]
            r.recover = first_after(w.verified_t(), t0)
            r.stall = longest_gap(w.verified_t(), t0, done and done["t"])
            if left:
                r.detect = left["t"] - t0
                r.note += f"; dropped: {left.get('reason')}"
            else:
                r.note += "; hostile peer never dropped"
                r.odd = True
        else:
            r.note += "; hostile peer never connected"
            r.odd = True
        return r

    return run


def fault_seeder_kill(ctx: Ctx) -> Run:
    url = loopback_signal(ctx)
    s1, link = ctx.procs.seed(ctx.src, url, "--max-upload-rate", "500k", name="seed1")
    s2, _ = ctx.procs.seed(ctx.src, url, "--max-upload-rate", "500k", name="seed2")
    victim, other = signal_id(s1), signal_id(s2)
    w = Watch(ctx.procs.fetch(link, "-o", "out.bin", "--timeout", "30"))
    until_share(w, 0.25, {victim, other})
    h_kill = time.monotonic()
    s1.signal(signal.SIGKILL)
    r = outcome(ctx, w)
    t_kill = w.t_of(h_kill)
    left, done = w.first("peer-left", peer=victim), w.first("done")
    r.recover = first_after(w.verified_t(), t_kill)
    r.stall = longest_gap(w.verified_t(), t_kill, done and done["t"])
    r.note = "2 seeders at 500k"
    if left:
        r.detect = left["t"] - t_kill
        r.note += f"; dropped: {left.get('reason', 'link closed')}"
    return r


def fault_fetch_kill(ctx: Ctx) -> Run:
    url = loopback_signal(ctx)
    _, link = ctx.procs.seed(ctx.src, url, "--max-upload-rate", "2M")
    w1 = Watch(ctx.procs.fetch(link, "-o", "out.bin", name="killed"))
    until_share(w1, 0.25)
    h_kill = time.monotonic()
    w1.proc.signal(signal.SIGKILL)
    w1.proc.wait(10)
    before = n_verified(w1.poll())
    early_final = ctx.out.exists()
    early_lost = bytes_lost(ctx.src, ctx.out) if early_final else 0
    w2 = Watch(ctx.procs.fetch(link, "-o", "out.bin", name="resumed"))
    r = outcome(ctx, w2)
    r.lost += early_lost
    resumed = w2.first("resume")
    first = next((e for e in w2.events if e["event"] == "piece-verified"), None)
    if resumed:
        r.detect = w2.at(resumed["t"]) - h_kill
    if first:
        r.recover = w2.at(first["t"]) - h_kill
    r.note = (f"seeder at 2M; {before} pieces verified before the kill, "
              f"{resumed['pieces'] if resumed else 0} resumed from .part")
    if early_final:
        r.note += "; a final file existed right after the kill"
    return r


def _stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=2) as resp:
        return json.loads(resp.read())


def fault_signal_restart(ctx: Ctx) -> Run:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port), "--json"]
    sig = ctx.procs.start(cmd, "signal")
    wait_port(port)
    _, link = ctx.procs.seed(ctx.src, url, "--max-upload-rate", "500k")
    w = Watch(ctx.procs.fetch(link, "-o", "out.bin", "--timeout", "30"))
    until_share(w, 0.25)
    h_kill = time.monotonic()
    sig.signal(signal.SIGKILL)
    sig.wait(10)
    time.sleep(1.0)
    ctx.procs.start(cmd, "signal-again")
    wait_port(port)
    h_up = time.monotonic()
    h_back = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and h_back is None:
        w.poll()
        try:
            if int(_stats(url)["announces"]) >= 2:
                h_back = time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    r = outcome(ctx, w)
    t_kill, t_up = w.t_of(h_kill), w.t_of(h_up)
    done = w.first("done")
    r.recover = first_after(w.verified_t(), t_kill)
    r.stall = longest_gap(w.verified_t(), t_kill, done and done["t"])
    if h_back is not None:
        r.detect = h_back - h_kill
    during = sum(1 for t in w.verified_t() if t_kill < t < t_up)
    joins = sum(e["event"] == "peer-joined" for e in w.events)
    r.note = (f"seeder at 500k; {during} pieces verified while the server was down; "
              f"{joins} peer connection(s) opened by the fetch"
              + ("" if h_back else "; clients not re-announced within 30 s"))
    return r


# -- network faults (namespaces) -----------------------------------------------------------------


def ns_signal(ctx: Ctx) -> None:
    assert ctx.lab is not None
    sig = ctx.procs.start(ctx.lab.signal_cmd(), "signal")
    Watch(sig).until(lambda evs: any(e["event"] == "listening" for e in evs), 30, "listening")


def ns_seed(ctx: Ctx, node: netns.Node, *extra: str, name: str) -> tuple[Proc, str]:
    assert ctx.lab is not None
    p = ctx.procs.start(ctx.lab.seed_cmd(node, ctx.src, *extra), name)
    link = p.wait_for(lambda p: p.stdout.strip(), 60, "the link")
    return p, link.splitlines()[0]


def raw_stack(ctx: Ctx, loss: float) -> dict[str, float]:
    """benchmarks/tuning.py (bare aiortc channel, stock and tuned) inside a namespace whose
    loopback loses `loss` of the UDP datagrams (each crosses OUTPUT once)."""
    assert ctx.lab is not None
    node = ctx.lab.add("raw")
    node.run("ip", "link", "set", "lo", "mtu", "1500")  # the veths' MTU: same packet sizes
    if loss:
        ctx.lab.loss(node, loss, chains=("OUTPUT",))
    out = subprocess.run(
        node.cmd(sys.executable, TUNING, "--size", str(ctx.size), "--variants", "stock,tuned",
                 "--json"),
        capture_output=True, text=True, timeout=600, env=ctx.procs.env,
    )
    if out.returncode != 0:
        raise FaultError(f"raw stack run failed: {out.stderr.strip()[-400:]}")
    rnd = json.loads(out.stdout)["rounds"][0]
    return {k: v["mb_per_s"] for k, v in rnd.items()}


def fault_loss(loss: float) -> Callable[[Ctx], Run]:
    def run(ctx: Ctx) -> Run:
        lab = ctx.lab
        assert lab is not None
        seeder, fetcher = lab.add("seed"), lab.add("fetch")
        ns_signal(ctx)
        _, link = ns_seed(ctx, seeder, name="seed")
        if loss:
            lab.loss(seeder, loss)
        w = Watch(ctx.procs.start(lab.fetch_cmd(fetcher, link, "-o", "out.bin", "--timeout",
                                                "60"), "fetch"))
        r = outcome(ctx, w)
        dropped = lab.drops(seeder)
        ctx.procs.stop_all()  # the raw run gets the CPU to itself
        r.raw = raw_stack(ctx, loss)
        r.note = f"{dropped} datagrams dropped"
        return r

    return run


def fault_cut(ctx: Ctx) -> Run:
    lab = ctx.lab
    assert lab is not None
    cut, keep, fetcher = lab.add("seed1"), lab.add("seed2"), lab.add("fetch")
    ns_signal(ctx)
    # 2 x 400 kB/s: what is left after the cut outlasts the 8 s detection.
    s1, link = ns_seed(ctx, cut, "--max-upload-rate", "400k", name="seed1")
    s2, _ = ns_seed(ctx, keep, "--max-upload-rate", "400k", name="seed2")
    victim, other = signal_id(s1), signal_id(s2)
    w = Watch(ctx.procs.start(lab.fetch_cmd(fetcher, link, "-o", "out.bin", "--timeout", "60"),
                              "fetch"))
    until_share(w, 0.25, {victim, other})
    h_cut = time.monotonic()
    lab.cut(cut)
    r = outcome(ctx, w)
    t_cut = w.t_of(h_cut)
    left, done = w.first("peer-left", peer=victim), w.first("done")
    r.recover = first_after(w.verified_t(), t_cut)
    r.stall = longest_gap(w.verified_t(), t_cut, done and done["t"])
    r.note = f"2 seeders at 400k; {lab.drops(cut)} datagrams dropped"
    if left:
        r.detect = left["t"] - t_cut
        r.note += f"; dropped: {left.get('reason', 'link closed')}"
    else:
        r.note += "; the cut peer was never dropped"
        r.odd = True
    return r


@dataclass
class Fault:
    name: str
    label: str
    fn: Callable[[Ctx], Run]
    netns: bool = False
    big: bool = False
    "Uses the --loss-size file: throughput over a longer transfer is less noisy."


FAULTS = [
    Fault("race", "none: 2 seeders, fetch joins both", fault_race),
    Fault("corrupt", "hostile source: corrupt blocks", fault_hostile("corrupt")),
    Fault("silent", "hostile source: never answers", fault_hostile("silent")),
    Fault("liar", "hostile source: lying bitfield", fault_hostile("liar")),
    Fault("seeder-kill", "seeder SIGKILL (2nd seeder up)", fault_seeder_kill),
    Fault("fetch-kill", "fetch SIGKILL, run again", fault_fetch_kill),
    Fault("signal-restart", "signaling server restart", fault_signal_restart),
    Fault("clean-ns", "none (namespaces, baseline)", fault_loss(0.0), netns=True, big=True),
    Fault("loss1", "1% UDP loss", fault_loss(0.01), netns=True, big=True),
    Fault("loss5", "5% UDP loss", fault_loss(0.05), netns=True, big=True),
    Fault("cut", "peer's UDP cut (2nd seeder up)", fault_cut, netns=True),
]


def run_once(fault: Fault, base: Path, src: Path, size: int, env: dict, keep: bool) -> Run:
    wd = Path(tempfile.mkdtemp(prefix=f"{fault.name}-", dir=base))
    procs = Procs(wd, env)
    lab = netns.Lab() if fault.netns else None
    failed = True
    try:
        if lab is not None:
            lab.start()
        r = fault.fn(Ctx(wd, procs, src, size, lab))
        failed = not r.completed or r.lost > 0 or r.odd
        return r
    except Exception as e:  # a run that breaks is reported, and the others still run
        return Run(error=f"{type(e).__name__}: {e}"[:600])
    finally:
        procs.stop_all()
        if lab is not None:
            lab.close()
        if failed:
            print(f"  (kept {wd} for inspection)", file=sys.stderr)
        elif not keep:
            shutil.rmtree(wd, ignore_errors=True)


# -- report ------------------------------------------------------------------------------------


def _spread(values: list[float | None], fmt: str = "{:.1f}") -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1 or max(xs) - min(xs) < 0.05 * max(abs(med), 1e-9):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def table(results: dict[str, list[Run]], skipped: dict[str, str]) -> str:
    head = ["fault injected", "runs", "byte-identical", "bytes lost", "anomalies", "detect s",
            "recover s", "stall s", "MB/s", "raw tuned MB/s", "raw stock MB/s"]
    rows = []
    for f in FAULTS:
        if f.name in skipped:
            rows.append([f.label, "0", "skipped", *["-"] * (len(head) - 3)])
            continue
        runs = results.get(f.name)
        if not runs:
            continue
        rows.append([
            f.label,
            str(len(runs)),
            f"{sum(r.completed for r in runs)}/{len(runs)}",
            str(sum(r.lost for r in runs)),
            str(sum(r.odd for r in runs)),
            _spread([r.detect for r in runs]),
            _spread([r.recover for r in runs], "{:.2f}"),
            _spread([r.stall for r in runs]),
            _spread([r.mbps for r in runs], "{:.2f}"),
            _spread([r.raw.get("tuned") for r in runs], "{:.2f}"),
            _spread([r.raw.get("stock") for r in runs], "{:.2f}"),
        ])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
             for row in [head, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def details(results: dict[str, list[Run]]) -> str:
    out = []
    for f in FAULTS:
        for i, r in enumerate(results.get(f.name, []), 1):
            figures = ", ".join(
                f"{k} {v:.2f}" for k, v in (("detect", r.detect), ("recover", r.recover),
                                            ("stall", r.stall), ("MB/s", r.mbps))
                if v is not None)
            what = r.error or r.note
            status = "FAILED" if not r.completed or r.lost else "odd" if r.odd else "ok"
            out.append(f"{f.name} #{i}: {status}; {figures}; {what}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="times each fault is injected")
    ap.add_argument("--size", type=parse_size, default=8 << 20, help="file size (K/M/G)")
    ap.add_argument("--loss-size", type=parse_size, default=32 << 20,
                    help="file size for clean-ns, loss1, loss5 (throughput rows)")
    ap.add_argument("--faults", default=",".join(f.name for f in FAULTS),
                    help=f"comma-separated, from {','.join(f.name for f in FAULTS)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--keep", action="store_true", help="keep every run's directory")
    ap.add_argument("--soak", action="store_true", help="then run benchmarks/soak.py")
    ap.add_argument("--minutes", type=float, default=3.0, help="soak length (with --soak)")
    args = ap.parse_args(argv)
    names = [n for n in args.faults.split(",") if n]
    unknown = set(names) - {f.name for f in FAULTS}
    if unknown:
        ap.error(f"unknown faults {sorted(unknown)}")

    base = Path(tempfile.mkdtemp(prefix="p2p-faults-"))
    env = dict(os.environ, P2P_CACHE_DIR=str(base / "cache"), PYTHONUNBUFFERED="1",
               P2P_LAN="0")  # no mDNS: not in the CPU figures, no multicast out
    env.pop("P2P_SIGNAL", None)
    src = make_file(base / "src.bin", args.size)
    big = make_file(base / "big.bin", args.loss_size, seed=2) if any(
        f.big for f in FAULTS if f.name in names) else None
    results: dict[str, list[Run]] = {}
    skipped: dict[str, str] = {}
    ns_reason = netns.unavailable() if any(
        f.netns for f in FAULTS if f.name in names) else None
    started = time.monotonic()
    for f in FAULTS:
        if f.name not in names:
            continue
        if f.netns and ns_reason:
            skipped[f.name] = ns_reason
            continue
        for i in range(args.runs):
            if f.big:
                assert big is not None
                r = run_once(f, base, big, args.loss_size, env, args.keep)
            else:
                r = run_once(f, base, src, args.size, env, args.keep)
            results.setdefault(f.name, []).append(r)
            print(f"{f.name} #{i + 1}: {'ok' if r.completed else 'FAILED'} "
                  f"{r.error or r.note}", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started

    lost = sum(r.lost for runs in results.values() for r in runs)
    failed = sum(not r.completed for runs in results.values() for r in runs)
    if args.json:
        print(json.dumps({
            "size": args.size, "loss_size": args.loss_size, "runs": args.runs,
            "seconds": round(elapsed, 1),
            "skipped": skipped,
            "faults": {k: [asdict(r) for r in v] for k, v in results.items()},
        }, indent=2))
    else:
        print(f"fault report: {args.size / 2**20:g} MiB file ({args.loss_size / 2**20:g} MiB "
              f"for the throughput rows), {args.runs} run(s) per fault, "
              f"{elapsed:.0f} s, {os.cpu_count()} CPUs; times in s as median (min-max)")
        print(table(results, skipped))
        for name, why in skipped.items():
            print(f"skipped {name}: {why}")
        print()
        print(details(results))
        print(f"\n{failed} run(s) not completed byte-identical; {lost} bytes lost in total")
    if args.soak:
        import soak

        soak_rc = soak.main(["--minutes", str(args.minutes)] + (["--json"] if args.json else []))
        if soak_rc:
            return soak_rc
    if not args.keep:
        src.unlink()
        if big is not None:
            big.unlink()
        shutil.rmtree(base / "cache", ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()  # only when no failed run's directory was kept
    return 1 if lost or failed else 0


if __name__ == "__main__":
    sys.exit(main())
