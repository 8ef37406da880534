"""Which SCTP packet size wins at a 1500-byte MTU, with and without loss, in one run.

Runs benchmarks/tuning.py's bare-channel transfer (two processes, one aiortc data channel)
inside a network namespace this script creates, whose loopback MTU is set to `--mtu`
(1500: Ethernet), so a packet larger than ~1388 bytes crosses as IP fragments. Variants:

  stock     aiortc 1.16 as shipped (1189-byte packets); every ratio is against it
  tuned     the shipped tuning, packet size chosen by its own policy (PacketSizer)
  <bytes>   the tuning with only that packet size probed and kept whatever the loss, e.g.
            1388 (no fragments at MTU 1500: what the tuning used before issue 14), 4096,
            8192, 16384
  before    the shipped tuning of another checkout (`--before DIR`, e.g. an export of the
            commit before a change), run in the same namespace and round

Loss (`--loss 0,1,5`, percent) is dropped per IP packet, that is per fragment, in the raw
table's PREROUTING chain: a fragment is dropped there before the kernel reassembles its
datagram, so one lost fragment loses the whole SCTP packet, as on a real link. (A rule on
OUTPUT would see whole datagrams before fragmentation and flatter large packets.)
`--per-datagram` drops on OUTPUT instead, whole datagrams before fragmentation (what
benchmarks/transfer.py's `--loss` does; loss at a socket or queue that drops whole
datagrams): there a large packet is lost no more often than a small one.
`--drop-fragments` also drops every IPv4 fragment (`iptables -f`): a path that carries no
fragments at all, where only unfragmented sizes work.

Needs root (ip netns, iptables); deletes its namespace on exit.

    python benchmarks/packet_sizes.py [--size 64M] [--loss 0,1] [--sizes 1388,16384]
        [--variants stock,tuned,before] [--before /tmp/old-tree] [--repeat 2]
        [--drop-fragments] [--per-datagram] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
import bare_channel  # noqa: E402
import tuning  # noqa: E402

FORCE_ENV = "P2P_BENCH_PACKET_SIZES"  # comma-separated sizes the tuned children may probe
TREE_ENV = "P2P_BENCH_TREE"  # checkout whose p2pcli the children import (for `before`)
EXTRA_ENV = "P2P_BENCH_SIZES_DIR"  # where the sender writes the sizer's last state
if os.environ.get(TREE_ENV):  # here, not later: spawned children re-run this module
    sys.path.insert(0, os.environ[TREE_ENV])
_TUNED_CHILD = tuning._tuned_child


def _sized_child(role: str, peer, result, cfg: dict) -> None:
    """tuning.py's child, with the candidate sizes replaced by the forced ones."""
    forced = os.environ.get(FORCE_ENV)
    if forced:
        from p2pcli import aiortc_tuning

        sizes = tuple(int(s) for s in forced.split(","))
        aiortc_tuning.candidate_sizes = lambda *_a, **_k: sizes
        if hasattr(aiortc_tuning, "LOSS_BUDGET"):  # keep the size whatever the loss
            aiortc_tuning.PacketSizer = functools.partial(aiortc_tuning.PacketSizer,
                                                          loss_budget=1.0)
    try:
        _TUNED_CHILD(role, peer, result, cfg)
    finally:
        from dataclasses import asdict

        from p2pcli import aiortc_tuning

        if role == "sender" and os.environ.get(EXTRA_ENV):
            Path(os.environ[EXTRA_ENV], "sender.json").write_text(
                json.dumps(asdict(aiortc_tuning.STATS)))


def run_inner(variants: list[str], size: int, msg_size: int) -> dict[str, dict]:
    """Every variant once, here (already inside the namespace)."""
    tuning._tuned_child = _sized_child  # run_variant hands this to bare_channel's spawn
    out: dict[str, dict] = {}
    for name in variants:
        if name.isdigit():
            os.environ[FORCE_ENV] = name
        else:
            os.environ.pop(FORCE_ENV, None)
        with tempfile.TemporaryDirectory(prefix="p2p-sizes-") as extra:
            os.environ[EXTRA_ENV] = extra
            try:
                kind = "tuned" if name.isdigit() or name == "before" else name
                res = tuning.run_variant(kind, size, msg_size)
            except bare_channel.BenchmarkError as e:  # e.g. no progress within its timeout
                res = {"mb_per_s": 0.0, "error": str(e)[:200]}
            stats = Path(extra, "sender.json")
            if stats.exists() and kind != "stock":
                st = json.loads(stats.read_text())
                res["final_packet"] = st.get("packet_size", "-")  # absent before issue 14
                res["split_packets"] = st.get("split_packets", "-")
                res["black_holes"] = st["black_holes"]
                res["fragment_loss"] = st.get("fragment_loss", "-")
                res["probe_trains"] = st.get("probe_trains", "-")  # absent before this change
        print(f"  {name}: {res}", file=sys.stderr, flush=True)
        out[name] = res
    return out


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _rule(ns: str, *rule: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", *rule], check=True,
                   capture_output=True, timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=bare_channel.parse_size, default=64 * 2**20)
    ap.add_argument("--msg-size", type=bare_channel.parse_size, default=64 * 1024)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--loss", default="0,1", help="percent per IP packet, comma-separated")
    ap.add_argument("--sizes", default="1388,4096,8192,16384")
    ap.add_argument("--variants", default="stock,tuned", help="besides --sizes")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--drop-fragments", action="store_true")
    ap.add_argument("--per-datagram", action="store_true",
                    help="drop whole datagrams on OUTPUT (before fragmentation)")
    ap.add_argument("--before", metavar="DIR", help="checkout for the `before` variant")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.inner:  # child run inside the namespace: variants in, JSON out
        print(json.dumps(run_inner(args.inner.split(","), args.size, args.msg_size)))
        return 0

    import netns

    reason = netns.unavailable()
    if reason:
        print(f"packet_sizes.py: {reason}", file=sys.stderr)
        return 2
    netns.reap_stale()
    variants = [v for v in args.variants.split(",") if v] + [
        s for s in args.sizes.split(",") if s]
    ns = f"{netns.PREFIX}{os.getpid()}xsizes-raw"
    rounds: list[dict] = []
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "mtu", str(args.mtu), "up")
        for i in range(args.repeat):
            for loss in (float(x) for x in args.loss.split(",")):
                _rule(ns, "-t", "raw", "-F", "PREROUTING")
                _rule(ns, "-F", "OUTPUT")
                if args.drop_fragments:
                    _rule(ns, "-t", "raw", "-A", "PREROUTING", "-f", "-j", "DROP")
                where = ["-A", "OUTPUT"] if args.per_datagram else [
                    "-t", "raw", "-A", "PREROUTING"]
                if loss:
                    _rule(ns, *where, "-p", "udp", "-m", "statistic", "--mode", "random",
                          "--probability", f"{loss / 100:g}", "-j", "DROP")
                print(f"round {i + 1}, {loss:g}% loss per "
                      f"{'datagram' if args.per_datagram else 'IP packet'}, MTU {args.mtu}",
                      file=sys.stderr, flush=True)
                results: dict[str, dict] = {}
                for name in variants:  # one inner process each: `before` imports other code
                    env = dict(os.environ)
                    if name == "before":
                        if not args.before:
                            ap.error("the `before` variant needs --before DIR")
                        env[TREE_ENV] = args.before
                    r = subprocess.run(
                        ["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", name,
                         "--size", str(args.size), "--msg-size", str(args.msg_size)],
                        stdout=subprocess.PIPE, text=True, timeout=3600, env=env)
                    if r.returncode != 0:
                        print(f"inner run failed ({r.returncode})", file=sys.stderr)
                        return 1
                    results.update(json.loads(r.stdout))
                base = results.get("stock")
                if base and base["mb_per_s"]:
                    for res in results.values():
                        res["speed_vs_stock"] = round(res["mb_per_s"] / base["mb_per_s"], 2)
                rounds.append({"round": i + 1, "loss_pct": loss, "results": results})
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    if args.json:
        print(json.dumps({"size": args.size, "mtu": args.mtu,
                          "drop_fragments": args.drop_fragments,
                          "per_datagram": args.per_datagram, "rounds": rounds}, indent=2))
        return 0
    cols = ["mb_per_s", "speed_vs_stock", "sender_cpu_s_per_gib", "receiver_cpu_s_per_gib",
            "packet_bytes", "final_packet", "probes", "probe_trains", "fast_recoveries",
            "t3_expiries"]
    print(f"bare channel, {args.size / 2**20:g} MiB, MTU {args.mtu}"
          + (", every IPv4 fragment dropped" if args.drop_fragments else ""))
    for rnd in rounds:
        print(f"round {rnd['round']}, {rnd['loss_pct']:g}% loss per "
              f"{'datagram' if args.per_datagram else 'IP packet'}")
        print("variant  " + " ".join(f"{c:>22}" for c in cols))
        for name, res in rnd["results"].items():
            print(f"{name:<8} " + " ".join(f"{res.get(c, '-')!s:>22}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
