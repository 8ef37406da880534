"""Stock vs tuned aiortc (p2pcli/aiortc_tuning.py) on the bare data channel, in one run.

Each variant runs benchmarks/bare_channel.py's two-process transfer unchanged, except that
its child processes first install the chosen tuning features (none for `stock`):

  stock   aiortc 1.16 as shipped (what benchmarks/transfer.py's `bare` measures)
  sack    delayed SACKs only
  large   larger SCTP packets only (probed, between two tuned peers)
  flow    flow control only (peer window honoured, receive buffer enlarged)
  tlp     tail loss probe only (a stalled sender probes before its T3 timer)
  bundle  bundling only (a message's last fragment shares a packet with the next one)
  tuned   all of them: what `p2p` runs with by default
  mixed   stock sender -> tuned receiver (what a stock peer seeding to us gets)
  mixed-r tuned sender -> stock receiver
  a+b     any combination of sack, large, flow, tlp, bundle on both sides, e.g. sack+large

Per variant: MB/s, CPU seconds per GiB on each side (the robust figure on a busy machine),
and both relative to `stock` measured in the same run; plus the tuning's own counters
(SACKs per data packet, largest confirmed packet, probes, loss recoveries).

On a real path: `--mtu 1500 --loss 0,0.01,0.05` runs every round once per loss rate, each
inside a fresh network namespace (tests/netns.py, needs root) whose loopback has that MTU
and drops that share of UDP datagrams at random (iptables `statistic` on OUTPUT, which a
datagram on loopback crosses once; the same rule benchmarks/faults.py uses). Each rate's
variants run in the same namespace one after the other, so `speed_vs_stock` compares
figures from the same conditions.

    python benchmarks/tuning.py [--size 128M] [--variants stock,tuned] [--repeat 1] [--json]
    python benchmarks/tuning.py --variants tuned --cprofile /tmp/prof   # cProfile per side
    python benchmarks/tuning.py --size 32M --mtu 1500 --loss 0.01,0.05 --repeat 3
"""

from __future__ import annotations

import argparse
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

_ORIGINAL_CHILD = bare_channel._child_main
VARIANTS_ENV = "P2P_BENCH_TUNING"  # "<sender features>/<receiver features>"
STATS_ENV = "P2P_BENCH_STATS_DIR"

VARIANTS = {
    "stock": ("", ""),
    "sack": ("sack", "sack"),
    "large": ("large", "large"),
    "flow": ("flow", "flow"),
    "tlp": ("tlp", "tlp"),
    "tuned": ("all", "all"),
    "mixed": ("", "all"),
    "mixed-r": ("all", ""),
}


def _features(spec: str):
    from p2pcli.aiortc_tuning import ALL_FEATURES, Feature

    names = {"sack": Feature.DELAYED_SACK, "large": Feature.LARGE_PACKETS,
             "flow": Feature.FLOW_CONTROL, "tlp": Feature.LOSS_PROBE, "all": ALL_FEATURES}
    if hasattr(Feature, "BUNDLING"):  # absent in checkouts before it (packet_sizes --before)
        names["bundle"] = Feature.BUNDLING
    out = Feature(0)
    for name in filter(None, spec.split("+")):
        out |= names[name]
    return out


def _tuned_child(role: str, peer, result, cfg: dict) -> None:
    """bare_channel's child entry point, after installing this side's tuning features."""
    from dataclasses import asdict

    from p2pcli import aiortc_tuning

    sender_spec, receiver_spec = os.environ.get(VARIANTS_ENV, "/").split("/")
    spec = sender_spec if role == "sender" else receiver_spec
    if spec:
        aiortc_tuning.install(_features(spec))
    recovery = _count_recovery()
    try:
        _ORIGINAL_CHILD(role, peer, result, cfg)
    finally:
        stats_dir = os.environ.get(STATS_ENV)
        if stats_dir:
            stats = asdict(aiortc_tuning.STATS) if spec else {}
            stats.update(recovery)
            Path(stats_dir, f"{role}.json").write_text(json.dumps(stats))


def _count_recovery() -> dict[str, int]:
    """Count loss recovery in whichever SCTP class this process uses, stock or tuned, the
    same way for both: T3 expiries, fast recoveries entered, DATA chunks sent again.
    The wrappers only count; this process runs nothing but the benchmark."""
    import aiortc.rtcpeerconnection as pc_module
    from aiortc import rtcsctptransport as sctp

    counts = {"t3": 0, "fast_recoveries_entered": 0, "retransmits": 0}
    cls = pc_module.RTCSctpTransport
    t3_expired, receive_sack, send_chunk = (
        cls._t3_expired, cls._receive_sack_chunk, cls._send_chunk)

    def _t3(self) -> None:
        counts["t3"] += 1
        t3_expired(self)

    async def _sack(self, chunk) -> None:
        before = self._fast_recovery_exit
        await receive_sack(self, chunk)
        if before is None and self._fast_recovery_exit is not None:
            counts["fast_recoveries_entered"] += 1

    async def _send(self, chunk) -> None:
        if type(chunk) is sctp.DataChunk and chunk._sent_count > 1:
            counts["retransmits"] += 1
        await send_chunk(self, chunk)

    cls._t3_expired, cls._receive_sack_chunk, cls._send_chunk = _t3, _sack, _send
    return counts


def _specs(name: str) -> tuple[str, str]:
    if name in VARIANTS:
        return VARIANTS[name]
    if all(part in ("sack", "large", "flow", "tlp", "bundle") for part in name.split("+")):
        return name, name
    raise ValueError(name)


def run_variant(name: str, size: int, msg_size: int, cprofile_dir: str | None = None) -> dict:
    sender_spec, receiver_spec = _specs(name)
    with tempfile.TemporaryDirectory(prefix="p2p-tuning-") as stats_dir:
        saved = {k: os.environ.get(k) for k in (VARIANTS_ENV, STATS_ENV)}
        os.environ[VARIANTS_ENV] = f"{sender_spec}/{receiver_spec}"
        os.environ[STATS_ENV] = stats_dir
        bare_channel._child_main = _tuned_child  # spawn pickles it by name: this module
        try:
            res = bare_channel.run(size, msg_size=msg_size, use_uvloop=None,
                                   cprofile_dir=cprofile_dir and str(Path(cprofile_dir, name)))
        finally:
            bare_channel._child_main = _ORIGINAL_CHILD
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        stats = {}
        for role in ("sender", "receiver"):
            p = Path(stats_dir, f"{role}.json")
            if p.exists():
                stats[role] = json.loads(p.read_text())
    out = {
        "mb_per_s": round(res["mb_per_s"], 2),
        "sender_cpu_s_per_gib": round(res["sender"]["cpu_s_per_gib"], 2),
        "receiver_cpu_s_per_gib": round(res["receiver"]["cpu_s_per_gib"], 2),
        "loadavg_1m": [round(x, 2) for x in res["loadavg_1m"]],
    }
    r, s = stats.get("receiver"), stats.get("sender")
    if r and r.get("data_packets_received"):
        out["sacks_per_data_packet"] = round(r["sacks_sent"] / r["data_packets_received"], 2)
    if s and "largest_packet" in s:
        out["packet_bytes"] = s["largest_packet"]
        out["probes"] = f"{s['probes_acked']}/{s['probes_sent']}"
        out["loss_probes"] = s.get("loss_probes", 0)
    if s:
        out["fast_recoveries"] = s["fast_recoveries_entered"]
        out["t3_expiries"] = s["t3"]
        out["retransmits"] = s["retransmits"]
    return out


def run_round(names: list[str], size: int, msg_size: int,
              cprofile_dir: str | None = None) -> dict[str, dict]:
    """Every variant once, here; ratios against this round's `stock`."""
    results: dict[str, dict] = {}
    for name in names:
        results[name] = run_variant(name, size, msg_size, cprofile_dir)
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    base = results.get("stock")
    if base:
        for res in results.values():
            res["speed_vs_stock"] = round(res["mb_per_s"] / base["mb_per_s"], 2)
            res["cpu_vs_stock"] = round(
                (res["sender_cpu_s_per_gib"] + res["receiver_cpu_s_per_gib"])
                / (base["sender_cpu_s_per_gib"] + base["receiver_cpu_s_per_gib"]), 3)
    return results


def run_round_in_namespace(names: list[str], size: int, msg_size: int, *, loss: float,
                           mtu: int | None, timeout: float = 900) -> dict[str, dict]:
    """`run_round` in a fresh namespace whose loopback has `mtu` and loses `loss` of the
    UDP datagrams: this script again, inside it, so both processes see that path."""
    import netns

    reason = netns.unavailable()
    if reason:
        raise SystemExit(f"--loss/--mtu: {reason}")
    with netns.Lab() as lab:
        node = lab.add("tuning")
        if mtu:
            node.run("ip", "link", "set", "lo", "mtu", str(mtu))
        if loss:
            lab.loss(node, loss, chains=("OUTPUT",))  # loopback: OUTPUT once per datagram
        out = subprocess.run(
            node.cmd("timeout", str(int(timeout)), sys.executable, __file__,
                     "--size", str(size), "--msg-size", str(msg_size),
                     "--variants", ",".join(names), "--json"),
            stdout=subprocess.PIPE, text=True, timeout=timeout + 30,
        )
        dropped = lab.drops(node)
    if out.returncode != 0:
        raise SystemExit(f"run in namespace (loss {loss:g}) failed: exit {out.returncode}")
    results = json.loads(out.stdout)["rounds"][0]
    for res in results.values():
        res["loss"] = loss
    results["stock" if "stock" in results else names[0]]["dropped_all_variants"] = dropped
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=bare_channel.parse_size, default=128 * 2**20)
    ap.add_argument("--msg-size", type=bare_channel.parse_size, default=64 * 1024)
    ap.add_argument("--variants", default="stock,tuned",
                    help=f"comma-separated, from {','.join(VARIANTS)}")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all variants")
    ap.add_argument("--mtu", type=int, default=None,
                    help="run in a network namespace whose loopback has this MTU (root)")
    ap.add_argument("--loss", default=None,
                    help="comma-separated UDP loss rates, e.g. 0,0.01,0.05: each round runs "
                         "once per rate in its own namespace (root)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--cprofile", metavar="DIR",
                    help="write DIR/<variant>/sender.prof and receiver.prof (slows it down)")
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    unknown = []
    for n in names:
        try:
            _specs(n)
        except ValueError:
            unknown.append(n)
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    in_namespace = args.mtu is not None or args.loss is not None
    losses = [float(x) for x in args.loss.split(",")] if args.loss else [0.0]
    if in_namespace and args.cprofile:
        ap.error("--cprofile runs on the host only")

    # rounds[i] maps a condition ("loopback", or "loss 1%") to that round's variants.
    rounds: list[dict[str, dict[str, dict]]] = []
    for i in range(args.repeat):
        conditions: dict[str, dict[str, dict]] = {}
        for loss in (losses if in_namespace else [None]):
            label = "loopback" if loss is None else f"loss {loss:.0%} mtu {args.mtu or '-'}"
            print(f"round {i + 1} {label}", file=sys.stderr, flush=True)
            if loss is None:
                conditions[label] = run_round(names, args.size, args.msg_size, args.cprofile)
            else:
                conditions[label] = run_round_in_namespace(
                    names, args.size, args.msg_size, loss=loss, mtu=args.mtu)
        rounds.append(conditions)

    if args.json:
        if not in_namespace:  # the shape benchmarks/faults.py reads: rounds[i][variant]
            print(json.dumps({"size": args.size, "msg_size": args.msg_size,
                              "rounds": [r["loopback"] for r in rounds]}, indent=2))
        else:
            print(json.dumps({"size": args.size, "msg_size": args.msg_size, "mtu": args.mtu,
                              "losses": losses, "rounds": rounds}, indent=2))
        return 0
    cols = ["mb_per_s", "speed_vs_stock", "sender_cpu_s_per_gib", "receiver_cpu_s_per_gib",
            "cpu_vs_stock", "sacks_per_data_packet", "packet_bytes", "probes",
            "fast_recoveries", "t3_expiries", "retransmits", "loss_probes"]
    print(f"bare aiortc channel, {args.size / 2**20:g} MiB in {args.msg_size // 1024} KiB "
          f"messages, stock vs tuned (CPU s/GiB: transfer phase, per side)")
    for i, conditions in enumerate(rounds):
        for label, results in conditions.items():
            print(f"round {i + 1}, {label}")
            print("variant    " + " ".join(f"{c:>{len(c)}}" for c in cols))
            for name, res in results.items():
                print(f"{name:<10} " + " ".join(f"{res.get(c, '-')!s:>{len(c)}}" for c in cols))
    if len(rounds) > 1 and "stock" in names:
        print("speed_vs_stock per round (same-run ratio), by condition")
        for label in rounds[0]:
            for name in names:
                ratios = [r[label][name]["speed_vs_stock"] for r in rounds]
                print(f"  {label:<22} {name:<10} {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
