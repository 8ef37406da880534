"""p2p seed -> fetch throughput on loopback, beside a bare aiortc data channel in the same run.

The bare channel (benchmarks/bare_channel.py) is the stack's ceiling on this machine; the
ratio p2p / bare is the figure that means something on a noisy machine.

Scenarios (each over the same file, real `p2p` processes, real signaling server):
  bare     one aiortc data channel, 64 KiB messages (the ceiling)
  1to1     1 seeder  -> 1 fetcher
  2to1     2 seeders -> 1 fetcher
  1to3     1 seeder  -> 3 fetchers started together (time until all are done)
  MtoN     any other count the same way: 1to4, 1to16 (seeder fan-out), 3to2, ...

Per scenario: MB/s (file size / time; for N fetchers, total bytes delivered / time from
their start until the last is done), wall seconds from fetch start to exit and from
manifest to done, CPU seconds per GiB on the seeding and fetching sides, peak RSS. Every
process is stopped at the end.

Seeder fan-out (1to4, 1to16): the fetchers are all in one swarm, so they also trade pieces
among themselves and the seeder uploads less than N copies. Each p2p row therefore also
reports what the seeders uploaded (`seed_up_mb`, the sum over fetchers of the bytes their
`done` event credits to a seeder's signaling id, end-game duplicates included, so with two
seeders `seed_share` of all bytes delivered can top 1.0), the
seeders' CPU seconds per GiB *uploaded* (`seed_cpu_s_per_gib_up`: the figure that carries
to a machine with more cores, where the fetchers would not compete with the seeder), the
median fetcher's MB/s end to end and once connected, and the connections refused as
"busy" (`refused_by_seed`, `refused_by_fetchers`: their `peer-refused` events). Every
process comes from 127.0.0.1 here, where on a network each fetcher has its own address:
the seeders get `--max-peers-per-address` equal to their `--max-peers` (128) so that only
--max-peers limits them, as it would there. `p2p fetch` has no such option, so a fetcher
keeps at most 8 connections (a quarter of its --max-peers 32) to the other local peers,
the seeder included; `refused_by_fetchers` shows how often that cap bit.

    python benchmarks/transfer.py [--size 256M] [--scenarios bare,1to1,2to1,1to3] [--json]
    python benchmarks/transfer.py --mtu 1500 --size 64M --scenarios bare,1to1,1to4,1to16

Real networks have a 1500-byte MTU, not loopback's 65,536, and lose packets. `--mtu 1500`
runs every process in a fresh network namespace whose loopback has that MTU (needs root,
like benchmarks/faults.py), and `--loss 1,5` repeats each row with that percentage of UDP
datagrams dropped at random by iptables inside the namespace (`statistic --mode random`
on OUTPUT, which a loopback datagram crosses once; signaling is TCP and is left alone).
More scenarios, for that comparison:
  ndc         libdatachannel (C++, native usrsctp) through node-datachannel: one data channel
              between two node processes, 64 KiB messages (benchmarks/ndc_channel.mjs;
              `npm ci` in tests/js installs it)
  bare-tuned  the bare aiortc channel with p2p's tuning installed on both sides
              (benchmarks/tuning.py's "tuned")
  1to1-stock  p2p 1 -> 1 with P2P_STOCK_AIORTC=1 on both sides
  1to1-before p2p 1 -> 1 running another checkout (`--before DIR`), same round and loss
  webtorrent  WebTorrent 2.8.5 over WebRTC in node, 1 seeder -> 1 leecher, the same file
              (benchmarks/webtorrent/wt_swarm.mjs; once: `npm ci --ignore-scripts` there)
Ratios are to libdatachannel (x ndc) and to the stock bare channel (x bare) at the same loss
in the same round. `--repeat N` runs N rounds and adds a table of medians.

Each p2p row also reports the first seeder's SCTP sending side at its exit (from
p2pcli/aiortc_tuning.py's counters, P2P_TUNING_STATS): `seed_packet`, the packet size it
last cut messages at, `seed_fast_recoveries` and `seed_t3`; `fetch_t3` is the first
fetcher's, and in a namespace `udp_rcvbuf_drops` counts datagrams a full socket buffer
dropped (loss the iptables rule did not add). P2P_BENCH_PYSPY=DIR samples every p2p process
with py-spy (folded stacks, DIR/NN-name.txt): where a slow row's time went
(P2P_BENCH_PYSPY_RATE: samples per second, default 200; P2P_BENCH_PYSPY_ARGS: more py-spy
flags, e.g. `--gil` for only the thread holding the GIL).
Under loss, compare p2p's `mb_per_s_connected` (manifest to done) with the raw channels:
they time the transfer alone, and p2p's end-to-end figure carries a second or more of
process start and connection set-up at 64 MiB.

    python benchmarks/transfer.py --mtu 1500 --size 256M           # ndc,bare,bare-tuned,1to1
    python benchmarks/transfer.py --mtu 1500 --loss 1,5 --size 64M  # the same rows under loss
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bare_channel import run as run_bare  # noqa: E402

ROOT = HERE.parent
NDC = HERE / "ndc_channel.mjs"
WEBTORRENT = HERE / "webtorrent" / "wt_swarm.mjs"
NETNS_ENV = "P2P_BENCH_NETNS"  # set in the re-run inside the namespace: its name
PYSPY_ENV = "P2P_BENCH_PYSPY"  # a directory: py-spy samples every p2p process into it
BEFORE_ENV = "P2P_BENCH_BEFORE"  # --before: the checkout `-before` rows run
TUNING_STATS_ENV = "P2P_TUNING_STATS"  # p2pcli/aiortc_tuning.py's STATS_ENV
_spy_runs = 0

P2P = str(Path(sys.executable).parent / "p2p")
GIB = 1 << 30
SEED_MAX_PEERS = 128  # `p2p seed`'s default --max-peers, and its --max-peers-per-address here


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.spies: list[subprocess.Popen] = []
        # No mDNS announcements: not in the CPU figures, and no multicast out of the host.
        self.env = {**os.environ, "P2P_CACHE_DIR": str(workdir / "cache"), "P2P_LAN": "0"}

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        p = subprocess.Popen(
            args,
            stdout=open(self.workdir / f"{name}.out", "wb"),
            stderr=open(self.workdir / f"{name}.err", "wb"),
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            # Each p2p process appends its aiortc_tuning counters here when it exits.
            env={**self.env, TUNING_STATS_ENV: str(self.workdir / f"{name}.tuning")},
            start_new_session=True,
        )
        self.procs.append(p)
        spy_dir = os.environ.get(PYSPY_ENV)
        if spy_dir and name != "signal":
            # Sampled, not traced: cProfile would slow the loss path it is meant to show.
            # Folded stacks per p2p process; py-spy exits when the process does.
            global _spy_runs
            _spy_runs += 1
            out = Path(spy_dir) / f"{_spy_runs:02d}-{name}.txt"
            self.spies.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(p.pid),
                 "--rate", os.environ.get("P2P_BENCH_PYSPY_RATE", "200"),
                 *os.environ.get("P2P_BENCH_PYSPY_ARGS", "").split(),  # e.g. --gil
                 "--nonblocking", "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return p

    def wait_line(self, name: str, timeout: float = 120) -> str:
        path = self.workdir / f"{name}.out"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text() if path.exists() else ""
            if text.strip():
                return text.strip().splitlines()[0]
            time.sleep(0.05)
        raise TimeoutError(f"{name} printed nothing: {(self.workdir / f'{name}.err').read_text()}")

    def tuning_stats(self, name: str) -> dict:
        """aiortc_tuning.STATS of that process at its exit ({} if none: stock, older code)."""
        path = self.workdir / f"{name}.tuning"
        lines = path.read_text().splitlines() if path.exists() else []
        path.unlink(missing_ok=True)
        return json.loads(lines[-1]) if lines else {}

    def events(self, name: str) -> list[dict]:
        out = []
        for line in (self.workdir / f"{name}.err").read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with _quiet():
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        self.spies.clear()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def p2p_scenario(workdir: Path, src: Path, seeders: int, fetchers: int,
                 env: dict[str, str] | None = None) -> dict:
    r = Runner(workdir)
    r.env.update(env or {})
    size = src.stat().st_size
    try:
        port = free_port()
        r.start([P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                "signal")
        url = f"http://127.0.0.1:{port}"
        time.sleep(1.0)
        seed_ps = []
        link = ""
        for i in range(seeders):
            # --json: its `signaling-connected` event names it, so the fetchers' `done`
            # events say how many bytes it uploaded. All peers share 127.0.0.1 here: lift
            # the per-address cap to --max-peers (see the module docstring).
            p = r.start([P2P, "seed", str(src), "--signal", url, "--ice-host", "127.0.0.1",
                         "--max-peers", str(SEED_MAX_PEERS),
                         "--max-peers-per-address", str(SEED_MAX_PEERS), "--json"],
                        f"seed{i}")
            link = r.wait_line(f"seed{i}", 600)  # first seeder hashes (cached after)
            seed_ps.append(psutil.Process(p.pid))
        seed_cpu0 = [cpu(p) for p in seed_ps]
        t0 = time.monotonic()
        fetch_ps = [
            r.start([P2P, "fetch", link, "--ice-host", "127.0.0.1", "-o", f"out{i}.bin",
                     "--json", "--timeout", "30"], f"fetch{i}")
            for i in range(fetchers)
        ]
        ps = [psutil.Process(p.pid) for p in fetch_ps]
        fetch_cpu = [0.0] * fetchers
        fetch_rss = [0] * fetchers
        fetch_wall = [0.0] * fetchers
        pending = set(range(fetchers))
        # Sampling 16 processes every 50 ms would take a share of the 2 cores they share.
        tick = 0.05 if fetchers <= 4 else 0.1
        while pending:
            for i in list(pending):
                try:
                    fetch_cpu[i] = cpu(ps[i])
                    fetch_rss[i] = max(fetch_rss[i], ps[i].memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
                if fetch_ps[i].poll() is not None:
                    fetch_wall[i] = time.monotonic() - t0
                    pending.discard(i)
            if time.monotonic() - t0 > 900:
                raise TimeoutError("fetch took over 900 s")
            time.sleep(tick)
        wall = time.monotonic() - t0
        for i, p in enumerate(fetch_ps):
            if p.returncode != 0:
                raise RuntimeError(f"fetch{i} exited {p.returncode}: "
                                   f"{(workdir / f'fetch{i}.err').read_text()[-2000:]}")
        seed_cpu = sum(cpu(p) - c0 for p, c0 in zip(seed_ps, seed_cpu0, strict=True))
        seed_rss = max(peak_rss(p) for p in seed_ps)
        seed_ids = set()
        refused_seed = 0
        for i in range(seeders):
            ev = r.events(f"seed{i}")
            seed_ids |= {e["peer"] for e in ev if e["event"] == "signaling-connected"}
            refused_seed += sum(e["event"] == "peer-refused" for e in ev)
        transfer = []
        seed_up = 0
        refused_fetch = 0
        for i in range(fetchers):
            ev = r.events(f"fetch{i}")
            t_manifest = next(e["t"] for e in ev if e["event"] == "manifest")
            done = next(e for e in ev if e["event"] == "done")
            transfer.append(done["t"] - t_manifest)
            seed_up += sum(n for peer, n in done["peers"].items() if peer in seed_ids)
            refused_fetch += sum(e["event"] == "peer-refused" for e in ev)
            if (workdir / f"out{i}.bin").stat().st_size != size:
                raise RuntimeError("output size differs")
        row = figures(size, wall, fetch_wall, transfer, seed_cpu=seed_cpu,
                      fetch_cpu=sum(fetch_cpu), seed_up=seed_up, seed_rss=seed_rss,
                      fetch_rss=max(fetch_rss), refused=(refused_seed, refused_fetch))
    finally:
        r.stop_all()
        for f in workdir.glob("out*.bin"):
            f.unlink()
    # The first seeder's sending side, read after it exited: the packet size it ended at,
    # its loss recoveries (why a lossy row is slow).
    st = r.tuning_stats("seed0")
    if st:
        row |= {"seed_packet": st["packet_size"], "seed_fast_recoveries": st["fast_recoveries"],
                "seed_t3": st["t3_expiries"], "seed_trains": st.get("probe_trains", "-")}
    # The first fetcher's T3s: its requests time out too (a lone one waits for a
    # delayed SACK), and a request stream held back starves the transfer.
    st = r.tuning_stats("fetch0")
    if st:
        row["fetch_t3"] = st["t3_expiries"]
    return row


def peak_rss(p: psutil.Process) -> int:
    """The process's peak RSS so far (VmHWM), not its RSS now."""
    try:
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return p.memory_info().rss


def figures(size: int, wall: float, fetch_wall: list[float], transfer: list[float], *,
            seed_cpu: float, fetch_cpu: float, seed_up: int, seed_rss: int, fetch_rss: int,
            refused: tuple[int, int]) -> dict:
    """One p2p row from what a run measured: `wall` from the fetchers' start until the last
    exited, `fetch_wall[i]` until fetcher i exited, `transfer[i]` its manifest -> done,
    `seed_up` the bytes the seeders uploaded (the rest came from other fetchers)."""
    n = len(fetch_wall)
    delivered = size * n
    return {
        "mb_per_s": round(delivered / wall / 1e6, 2),
        "mb_per_s_connected": round(delivered / max(transfer) / 1e6, 2),
        "wall_s": round(wall, 2),
        "transfer_s": round(max(transfer), 2),
        "seed_cpu_s_per_gib": round(seed_cpu / (delivered / GIB), 2),
        "fetch_cpu_s_per_gib": round(fetch_cpu / (delivered / GIB), 2),
        "seed_peak_rss_mb": round(seed_rss / 1e6, 1),
        "fetch_peak_rss_mb": round(fetch_rss / 1e6, 1),
        "fetchers": n,
        "seed_up_mb": round(seed_up / 1e6, 1),
        "seed_share": round(seed_up / delivered, 3),
        "seed_up_mb_per_s": round(seed_up / wall / 1e6, 2),
        "fetch_median_mb_per_s": round(statistics.median(size / w for w in fetch_wall) / 1e6, 2),
        "fetch_median_mb_per_s_connected": round(
            statistics.median(size / t for t in transfer) / 1e6, 2),
        "refused_by_seed": refused[0],
        "refused_by_fetchers": refused[1],
    } | ({"seed_cpu_s_per_gib_up": round(seed_cpu / (seed_up / GIB), 2)} if seed_up else {})


def bare_scenario(size: int) -> dict:
    return _channel_row(run_bare(size, msg_size=65536, use_uvloop=None))


def _channel_row(res: dict) -> dict:
    """A row from a raw channel's result (bare_channel.py and ndc_channel.mjs share its
    shape): no set-up, so end to end and once connected are the same."""
    s, rcv = res["sender"], res["receiver"]
    return {
        "mb_per_s": round(res["mb_per_s"], 2),
        "mb_per_s_connected": round(res["mb_per_s"], 2),
        "wall_s": round(res["transfer_s"], 2),
        "transfer_s": round(res["transfer_s"], 2),
        "seed_cpu_s_per_gib": round(s["cpu_s_per_gib"], 2),
        "fetch_cpu_s_per_gib": round(rcv["cpu_s_per_gib"], 2),
        "seed_peak_rss_mb": round(s["peak_rss_bytes"] / 1e6, 1),
        "fetch_peak_rss_mb": round(rcv["peak_rss_bytes"] / 1e6, 1),
    }


def bare_tuned_scenario(size: int) -> dict:
    import tuning  # imports p2pcli.aiortc_tuning: only when asked for

    res = tuning.run_variant("tuned", size, 65536)
    return {
        "mb_per_s": res["mb_per_s"],
        "mb_per_s_connected": res["mb_per_s"],
        "seed_cpu_s_per_gib": res["sender_cpu_s_per_gib"],
        "fetch_cpu_s_per_gib": res["receiver_cpu_s_per_gib"],
    }


def _node_json(script: Path, args: list[str], need: str, installed: bool = True) -> dict:
    """Run a node benchmark script (600 s of work at most) and read its JSON result.
    `need`: what to install, said when node or the script's packages are missing."""
    node = shutil.which("node")
    if node is None or not installed:
        raise RuntimeError(need)
    out = subprocess.run([node, str(script), *args, "--timeout", "600"],
                         capture_output=True, text=True, timeout=660)
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def ndc_scenario(size: int) -> dict:
    """libdatachannel's figure: benchmarks/ndc_channel.mjs, two node processes."""
    return _channel_row(_node_json(NDC, ["--size", str(size)],
                                   "the ndc scenario needs node (and `npm ci` in tests/js)"))


def webtorrent_scenario(src: Path) -> dict:
    """WebTorrent 2.8.5 over WebRTC in node, seeding the same file: wt_swarm.mjs."""
    res = _node_json(WEBTORRENT, ["--file", str(src)],
                     "the webtorrent scenario needs node and, once, "
                     "`npm ci --ignore-scripts` in benchmarks/webtorrent",
                     installed=(WEBTORRENT.parent / "node_modules" / "webtorrent").is_dir())
    return {
        "mb_per_s": round(res["mb_per_s"], 2),
        "mb_per_s_connected": round(res["mb_per_s_connected"], 2),
        "wall_s": round(res["e2e_s"], 2),
        "transfer_s": round(res["connected_s"], 2),
        "seed_cpu_s_per_gib": round(res["seed_cpu_s_per_gib"], 2),
        "fetch_cpu_s_per_gib": round(res["fetch_cpu_s_per_gib"], 2),
    }


P2P_SCENARIO = re.compile(r"(\d+)to(\d+)(-stock|-before)?")
"""p2p rows: M seeders to N fetchers (1to1, 2to1, 1to16), `-stock` with P2P_STOCK_AIORTC=1,
`-before` running the checkout given by --before (same round, same namespace and loss)."""
MAX_FETCHERS = 64  # under the seeder's --max-peers (128) and a signaling peer list (100)
RAW = {"bare": bare_scenario, "bare-tuned": bare_tuned_scenario, "ndc": ndc_scenario}
DEFAULT = "bare,1to1,2to1,1to3"
DEFAULT_NETNS = "ndc,bare,bare-tuned,1to1"
KNOWN = (f"{','.join(RAW)},webtorrent,1to1,2to1,1to3,1to4,1to16,1to1-stock,1to1-before "
         "(any MtoN[-stock|-before])")


def p2p_shape(name: str) -> tuple[int, int, bool] | None:
    """(seeders, fetchers, stock aiortc) of a p2p scenario name, None if it is not one."""
    m = P2P_SCENARIO.fullmatch(name)
    if m is None:
        return None
    seeders, fetchers = int(m[1]), int(m[2])
    if not (1 <= seeders <= 8 and 1 <= fetchers <= MAX_FETCHERS):
        return None
    return seeders, fetchers, m[3] == "-stock"


def known_scenario(name: str) -> bool:
    return name in RAW or name == "webtorrent" or p2p_shape(name) is not None


def run_scenario(name: str, workdir: Path, src: Path, size: int) -> dict:
    if name in RAW:
        return RAW[name](size)
    if name == "webtorrent":
        return webtorrent_scenario(src)
    shape = p2p_shape(name)
    assert shape is not None, name
    seeders, fetchers, stock = shape
    env = {"P2P_STOCK_AIORTC": "1"} if stock else {}
    if name.endswith("-before"):
        before = os.environ.get(BEFORE_ENV)
        if not before:
            raise RuntimeError(f"{name} needs --before DIR")
        env["PYTHONPATH"] = before  # its p2pcli and p2p_cli (a `p2p_cli -> cli` link)
    return p2p_scenario(workdir, src, seeders, fetchers, env=env)


def set_loss(percent: float) -> None:
    """Inside the namespace: drop `percent`% of UDP datagrams from now on (0: none)."""
    subprocess.run(["iptables", "-F", "OUTPUT"], check=True, timeout=30)
    if percent:
        subprocess.run(["iptables", "-A", "OUTPUT", "-p", "udp", "-m", "statistic", "--mode",
                        "random", "--probability", f"{percent / 100:g}", "-j", "DROP"],
                       check=True, timeout=30)


def add_ratios(rows: dict[str, dict]) -> None:
    """x ndc and x bare of every row, against the rows at the same loss (same round)."""
    for key, res in rows.items():
        loss = key.rpartition("@")[2] if "@" in key else ""
        suffix = f"@{loss}" if loss else ""
        for base, col in (("ndc", "x_ndc"), ("bare", "x_bare")):
            ref = rows.get(base + suffix, {}).get("mb_per_s")
            if ref:
                res[col] = round(res["mb_per_s"] / ref, 2)


def udp_counters() -> dict[str, int]:
    """The Udp line of /proc/net/snmp (this network namespace's), by field name."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
                 if ln.startswith("Udp:")]
        return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=False)}
    except (OSError, IndexError, ValueError):
        return {}


def row_key(name: str, loss: float) -> str:
    return f"{name}@{loss:g}%" if loss else name


def measure(args: argparse.Namespace, size: int, losses: list[float]) -> list[dict[str, dict]]:
    workdir = Path(tempfile.mkdtemp(prefix="p2p-bench-"))
    rounds: list[dict[str, dict]] = []
    in_netns = bool(os.environ.get(NETNS_ENV))
    try:
        src = workdir / "src.bin"
        with open(src, "wb") as f:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
            f.write(os.urandom(size % (1 << 20)))
        for i in range(args.repeat):
            rows: dict[str, dict] = {}
            for loss in losses:
                if in_netns:
                    set_loss(loss)
                for name in args.scenarios.split(","):
                    key = row_key(name, loss)
                    load = os.getloadavg()[0]  # other work on the machine skews the row
                    udp = udp_counters()
                    rows[key] = {**run_scenario(name, workdir, src, size),
                                 "load_1m": round(load, 2)}
                    if in_netns:
                        # This namespace's own counters: datagrams a socket buffer dropped
                        # (a receiver's loop fell behind) are loss the iptables rule did not add.
                        rows[key]["udp_rcvbuf_drops"] = (
                            udp_counters().get("RcvbufErrors", 0) - udp.get("RcvbufErrors", 0))
                    print(f"round {i + 1} {key}: {rows[key]}", file=sys.stderr, flush=True)
            add_ratios(rows)
            rounds.append(rows)
    finally:
        if in_netns:
            set_loss(0)
        shutil.rmtree(workdir, ignore_errors=True)
    return rounds


def medians(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key in rounds[0]:
        cols = {c for rows in rounds for c in rows.get(key, {})}
        out[key] = {}
        for c in sorted(cols):
            vals = [rows[key][c] for rows in rounds if c in rows.get(key, {})]
            out[key][c] = round(statistics.median(vals), 2)
    return out


def in_namespace(script: str, argv: list[str], *, tag: str, why: str,
                 mtu: int | None = None) -> int:
    """Re-run `script` inside a fresh namespace (loopback up, its MTU set when given);
    delete it after. `why`: the message when not root.

    Everything the run starts (the signaling server, p2p, the bare channel's and node's
    children, Chromium) inherits the namespace, so its traffic never leaves it and iptables
    rules set there touch nothing else. Named like tests/netns.py's, so a run that dies
    leaves nothing the next Lab does not reap.
    """
    if os.geteuid() != 0:
        sys.exit(why)
    sys.path.insert(0, str(ROOT / "tests"))
    import netns

    netns.reap_stale()
    ns = f"{netns.PREFIX}{os.getpid()}xbench-{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    inner = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        if mtu:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "mtu", str(mtu)],
                           check=True, timeout=30)
        inner = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, script, *argv],
                                 env={**os.environ, NETNS_ENV: ns}, start_new_session=True)
        return inner.wait()
    finally:
        if inner is not None and inner.poll() is None:
            os.killpg(inner.pid, signal.SIGTERM)
            try:
                inner.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(inner.pid, signal.SIGKILL)
                inner.wait()
        subprocess.run(["ip", "netns", "del", ns], timeout=30)

COLS = ["mb_per_s", "x_ndc", "x_bare", "mb_per_s_connected", "wall_s", "seed_cpu_s_per_gib",
        "seed_cpu_s_per_gib_up", "seed_up_mb_per_s", "seed_share", "fetch_median_mb_per_s",
        "fetch_median_mb_per_s_connected", "fetch_cpu_s_per_gib", "seed_peak_rss_mb",
        "fetch_peak_rss_mb", "refused_by_seed", "refused_by_fetchers", "seed_packet",
        "seed_fast_recoveries", "seed_t3", "fetch_t3", "seed_trains", "udp_rcvbuf_drops",
        "load_1m"]


def print_table(title: str, rows: dict[str, dict]) -> None:
    # Only the columns some row has: the fan-out ones stay out of a raw-channels table.
    cols = [c for c in COLS if any(c in res for res in rows.values())]
    print(title)
    print("scenario        " + " ".join(f"{c:>{len(c)}}" for c in cols))
    for name, res in rows.items():
        print(f"{name:<15} " + " ".join(f"{res.get(c, '-')!s:>{len(c)}}" for c in cols))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="256M", help="file size (K/M/G suffixes)")
    ap.add_argument("--scenarios", default=None,
                    help=f"comma-separated, from {KNOWN} (default "
                         f"{DEFAULT}; with --mtu or --loss: {DEFAULT_NETNS})")
    ap.add_argument("--mtu", type=int, default=0,
                    help="run in a fresh network namespace whose loopback has this MTU (root)")
    ap.add_argument("--loss", default="0",
                    help="comma-separated percentages of UDP datagrams to drop, one set of "
                         "rows each, e.g. 1,5 (in a namespace: root)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; >1 adds a median table")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--before", metavar="DIR",
                    help="another checkout (with a `p2p_cli -> cli` link) that `-before` rows "
                         "run, e.g. 1to1-before: before/after in one round")
    args = ap.parse_args(argv)
    if args.before:
        os.environ[BEFORE_ENV] = str(Path(args.before).resolve())
    size = parse_size(args.size)
    try:
        losses = [float(x) for x in args.loss.split(",")]
    except ValueError:
        ap.error("--loss takes percentages, e.g. 1,5")
    if any(not 0 <= x < 100 for x in losses):
        ap.error("--loss: each percentage in 0..100")
    netns_mode = bool(args.mtu) or any(losses)
    if args.scenarios is None:
        args.scenarios = DEFAULT_NETNS if netns_mode else DEFAULT
    unknown = [n for n in args.scenarios.split(",") if not known_scenario(n)]
    if unknown:
        ap.error(f"unknown scenarios {unknown}")
    # SIGTERM (from `timeout`, or from the namespace's owner) unwinds like Ctrl-C, so every
    # finally stops its processes, and the namespace is deleted after them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if netns_mode and not os.environ.get(NETNS_ENV):
        return in_namespace(__file__, argv, tag="mtu", mtu=args.mtu,
                            why="--mtu and --loss need root (ip netns, iptables)")

    rounds = measure(args, size, losses)
    where = (f"in a network namespace, loopback MTU {args.mtu or 65536}" if netns_mode
             else "on loopback (MTU 65536)")
    if args.json:
        out = {"size": size, "mtu": args.mtu or None, "where": where, "rounds": rounds}
        if len(rounds) > 1:
            out["median"] = medians(rounds)
        print(json.dumps(out, indent=2))
        return 0
    for i, rows in enumerate(rounds):
        print_table(f"round {i + 1}: {size / 2**20:g} MiB {where}", rows)
    if len(rounds) > 1:
        print_table(f"median of {len(rounds)} rounds (each ratio: median of its rounds)",
                    medians(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
