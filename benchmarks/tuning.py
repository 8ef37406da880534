"""Stock vs tuned aiortc (p2pcli/aiortc_tuning.py) on the bare data channel, in one run.

Each variant runs benchmarks/bare_channel.py's two-process transfer unchanged, except that
its child processes first install the chosen tuning features (none for `stock`):

  stock   aiortc 1.16 as shipped (what benchmarks/transfer.py's `bare` measures)
  sack    delayed SACKs only
  large   larger SCTP packets only (probed, between two tuned peers)
  flow    flow control only (peer window honoured, receive buffer enlarged)
  tuned   all of them: what `p2p` runs with by default
  mixed   stock sender -> tuned receiver (what a stock peer seeding to us gets)
  mixed-r tuned sender -> stock receiver
  a+b     any combination of sack, large, flow on both sides, e.g. sack+large

Per variant: MB/s, CPU seconds per GiB on each side (the robust figure on a busy machine),
and both relative to `stock` measured in the same run; plus the tuning's own counters
(SACKs per data packet, largest confirmed packet, probes, loss recoveries).

    python benchmarks/tuning.py [--size 128M] [--variants stock,tuned] [--repeat 1] [--json]
    python benchmarks/tuning.py --variants tuned --cprofile /tmp/prof   # cProfile per side
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bare_channel  # noqa: E402

_ORIGINAL_CHILD = bare_channel._child_main
VARIANTS_ENV = "P2P_BENCH_TUNING"  # "<sender features>/<receiver features>"
STATS_ENV = "P2P_BENCH_STATS_DIR"

VARIANTS = {
    "stock": ("", ""),
    "sack": ("sack", "sack"),
    "large": ("large", "large"),
    "flow": ("flow", "flow"),
    "tuned": ("all", "all"),
    "mixed": ("", "all"),
    "mixed-r": ("all", ""),
}


def _features(spec: str):
    from p2pcli.aiortc_tuning import ALL_FEATURES, Feature

    names = {"sack": Feature.DELAYED_SACK, "large": Feature.LARGE_PACKETS,
             "flow": Feature.FLOW_CONTROL, "all": ALL_FEATURES}
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
    try:
        _ORIGINAL_CHILD(role, peer, result, cfg)
    finally:
        stats_dir = os.environ.get(STATS_ENV)
        if stats_dir and spec:
            Path(stats_dir, f"{role}.json").write_text(json.dumps(asdict(aiortc_tuning.STATS)))


def _specs(name: str) -> tuple[str, str]:
    if name in VARIANTS:
        return VARIANTS[name]
    if all(part in ("sack", "large", "flow") for part in name.split("+")):
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
    if r and r["data_packets_received"]:
        out["sacks_per_data_packet"] = round(r["sacks_sent"] / r["data_packets_received"], 2)
    if s:
        out["packet_bytes"] = s["largest_packet"]
        out["probes"] = f"{s['probes_acked']}/{s['probes_sent']}"
        out["fast_recoveries"] = s["fast_recoveries"]
        out["t3_expiries"] = s["t3_expiries"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=bare_channel.parse_size, default=128 * 2**20)
    ap.add_argument("--msg-size", type=bare_channel.parse_size, default=64 * 1024)
    ap.add_argument("--variants", default="stock,tuned",
                    help=f"comma-separated, from {','.join(VARIANTS)}")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all variants")
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

    rounds: list[dict[str, dict]] = []
    for i in range(args.repeat):
        results: dict[str, dict] = {}
        for name in names:
            results[name] = run_variant(name, args.size, args.msg_size, args.cprofile)
            print(f"round {i + 1} {name}: {results[name]}", file=sys.stderr, flush=True)
        base = results.get("stock")
        if base:
            for res in results.values():
                res["speed_vs_stock"] = round(res["mb_per_s"] / base["mb_per_s"], 2)
                res["cpu_vs_stock"] = round(
                    (res["sender_cpu_s_per_gib"] + res["receiver_cpu_s_per_gib"])
                    / (base["sender_cpu_s_per_gib"] + base["receiver_cpu_s_per_gib"]), 3)
        rounds.append(results)

    if args.json:
        print(json.dumps({"size": args.size, "msg_size": args.msg_size, "rounds": rounds},
                         indent=2))
        return 0
    cols = ["mb_per_s", "speed_vs_stock", "sender_cpu_s_per_gib", "receiver_cpu_s_per_gib",
            "cpu_vs_stock", "sacks_per_data_packet", "packet_bytes", "probes",
            "fast_recoveries", "t3_expiries"]
    print(f"bare aiortc channel, {args.size / 2**20:g} MiB in {args.msg_size // 1024} KiB "
          f"messages, stock vs tuned (CPU s/GiB: transfer phase, per side)")
    for i, results in enumerate(rounds):
        print(f"round {i + 1}")
        print("variant  " + " ".join(f"{c:>22}" for c in cols))
        for name, res in results.items():
            print(f"{name:<8} " + " ".join(f"{res.get(c, '-')!s:>22}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
