"""Run `p2p` with a memory probe: where a long-running seeder's memory goes.

    python benchmarks/memprobe.py OUT.jsonl seed FILE ...   (then: kill -USR1 PID)

Everything after OUT.jsonl is the `p2p` command line. On SIGUSR1 (or SIGUSR2, which also
trims the heap) the process appends one JSON line to OUT.jsonl: its RSS; glibc's view of
the heap (`mallinfo2`: bytes in use versus bytes free but still held, i.e. fragmentation);
SIGUSR2 only, the RSS after `malloc_trim(0)` (what giving free heap back to the system
returns); live counts of the objects a peer connection is made of (aiortc, aioice, our
sessions) and of asyncio tasks; and, with P2P_TRACEMALLOC=1, the Python allocations that
grew most since the first probe. This tells
a leak (live objects or traced bytes keep rising) from allocator fragmentation (in-use
stays flat, free-but-held rises, malloc_trim drops RSS) from a bounded cache.

SIGUSR1 reads the process from the inside and changes nothing it does (bar a gc pass);
SIGUSR2 gives free heap back to the system. The soak uses it with `--probe`.

P2P_PROBE_CONSENT_INTERVAL=S makes aioice check a peer's consent every S seconds instead
of 5: a peer killed without a word is let go after 6 failed checks, ~6 S instead of ~30 s
(tests/test_memory_bound.py waits for exactly that, and has no use for the 30 s).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from typing import Any

import psutil

# Objects that make up one peer connection, by class name (module-qualified names would
# tie this to aiortc's layout; these are unique enough here).
WATCHED = (
    "RTCPeerConnection", "RTCSctpTransport", "RTCDtlsTransport", "RTCIceTransport",
    "RTCIceGatherer", "RTCDataChannel", "Connection", "StunProtocol", "Peer",
    "PeerLink", "PeerProtocol", "Task", "Future", "TimerHandle", "Handle",
)


# The swarm's parts whose containers are reported (as "Class.attribute"): the asyncio
# adapter and each part of the sans-IO core that keeps per-peer state.
SWARM_PARTS = ("Swarm", "SwarmCore", "PieceExchange", "Admission", "Slots", "Uploader")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


class Probe:
    def __init__(self, out: str) -> None:
        self.out = out
        self.libc = _libc()
        self.first: tracemalloc.Snapshot | None = None
        self.proc = psutil.Process()
        self.busy = False

    def mallinfo(self) -> dict[str, int] | None:
        if self.libc is None or not hasattr(self.libc, "mallinfo2"):
            return None
        self.libc.mallinfo2.restype = _MallInfo2
        m = self.libc.mallinfo2()
        # arena: main heap from sbrk; hblkhd: mmapped chunks; uordblks/fordblks: in use/free.
        return {"arena": m.arena, "mmapped": m.hblkhd, "in_use": m.uordblks, "free": m.fordblks}

    def counts(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Live objects by class; the sizes of every container the swarm's parts hold (per-peer
        state that outlives its peer shows up here even when each entry is small); the
        bytes held by the store's caches against their bounds."""
        gc.collect()
        c: collections.Counter[str] = collections.Counter()
        sizes: collections.Counter[str] = collections.Counter()
        cache: collections.Counter[str] = collections.Counter()
        for o in gc.get_objects():
            name = type(o).__name__
            if name in WATCHED:
                c[name] += 1
            if name in SWARM_PARTS:
                for attr, v in vars(o).items():
                    if isinstance(v, dict | set | list | collections.deque | bytearray):
                        sizes[f"{name}.{attr}"] += len(v)
            elif name in ("PieceCache", "BlockChecks"):  # store.py's bounded caches
                cache[f"{name}.bytes"] += o._bytes
                cache[f"{name}.max_bytes"] += o.max_bytes
        return dict(c), dict(sizes), dict(cache)

    def referrers(self, cls: str) -> list[list[str]]:
        """What keeps each live `cls` object alive, two levels up (a debugging aid)."""
        out = []
        objs = [o for o in gc.get_objects() if type(o).__name__ == cls]
        for o in objs[:5]:
            chain = []
            for r in gc.get_referrers(o):
                if r is objs:
                    continue
                desc = type(r).__name__
                if isinstance(r, dict):
                    ups = [type(u).__name__ + (f":{getattr(u, '__qualname__', '')}")
                           for u in gc.get_referrers(r) if u is not objs][:4]
                    desc += f"<-{ups}"
                elif type(r).__name__ in ("function", "cell", "frame", "coroutine"):
                    desc += f":{getattr(r, '__qualname__', '') or getattr(r, 'f_code', '')}"
                chain.append(desc)
            out.append(chain)
        return out

    def snapshot(self, trim: bool) -> dict[str, Any]:
        row: dict[str, Any] = {"time": time.time(), "rss": self.proc.memory_info().rss}
        row["objects"], row["swarm"], row["piece_cache"] = self.counts()
        if os.environ.get("P2P_PROBE_REFERRERS") == "1":
            row["refs"] = self.referrers("Peer")
        try:
            row["tasks"] = len(asyncio.all_tasks())
        except RuntimeError:
            row["tasks"] = None
        row["malloc"] = self.mallinfo()
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            row["traced"] = tracemalloc.get_traced_memory()[0]
            if self.first is None:
                self.first = snap
            stats = snap.compare_to(self.first, "lineno")[:15]
            row["top_growth"] = [
                {"where": str(s.traceback[0]), "size": s.size, "diff": s.size_diff,
                 "count": s.count} for s in stats]
        if trim and self.libc is not None and hasattr(self.libc, "malloc_trim"):
            self.libc.malloc_trim(0)
            row["rss_after_trim"] = self.proc.memory_info().rss
        return row

    def on_signal(self, signum: int, frame: object) -> None:
        # A signal that comes while a probe runs would nest a second one inside it (with
        # tracemalloc a probe can take seconds): skip it instead.
        if self.busy:
            return
        self.busy = True
        try:
            with open(self.out, "a") as f:
                f.write(json.dumps(self.snapshot(trim=signum == signal.SIGUSR2)) + "\n")
        finally:
            self.busy = False


def main() -> None:
    out, rest = sys.argv[1], sys.argv[2:]
    if os.environ.get("P2P_TRACEMALLOC") == "1":
        tracemalloc.start(int(os.environ.get("P2P_TRACEMALLOC_FRAMES", "1")))
    if interval := os.environ.get("P2P_PROBE_CONSENT_INTERVAL"):
        import aioice.ice

        # Read by aioice's query_consent at each check, so setting it before p2p starts
        # is enough; the way a dead peer is let go (consent expires, ICE closes) is unchanged.
        aioice.ice.CONSENT_INTERVAL = float(interval)  # type: ignore[attr-defined]
    probe = Probe(out)
    signal.signal(signal.SIGUSR1, probe.on_signal)
    signal.signal(signal.SIGUSR2, probe.on_signal)
    from p2p_cli.main import main as p2p_main

    sys.argv = ["p2p", *rest]
    sys.exit(p2p_main())


if __name__ == "__main__":
    main()
