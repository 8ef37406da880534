"""One tuned data channel between two peer connections in this process, over 127.0.0.1.

Run by tests/test_fragments.py inside a network namespace whose loopback MTU is 1500, so
SCTP packets above ~1388 bytes cross as IP fragments. Sends `--size` bytes in 64 KiB
messages with back-pressure and prints one JSON line: whether every byte arrived in order,
the longest gap between two received messages, the largest RTO the sender had (the fallback
bound is counted in RTOs), and the sender's packet-size state.

--drop-fragments-after N: once N bytes have arrived (with 16384-byte packets confirmed),
insert an iptables rule dropping every IPv4 fragment: a path that stops carrying fragments
in the middle of a transfer, with large chunks in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiortc import RTCConfiguration, RTCPeerConnection

from p2pcli import aiortc_tuning as tuning
from p2pcli.patches import choose_host_addresses

MESSAGE = 64 * 1024
HIGH_WATER = 1024 * 1024
DROP_FRAGMENTS = ["iptables", "-t", "raw", "-A", "PREROUTING", "-f", "-j", "DROP"]


async def transfer(size: int, drop_after: int | None, timeout: float) -> dict:
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    arrivals: list[float] = []
    received = bytearray()
    done = asyncio.Event()
    rtos: list[float] = []
    dropped_at: float | None = None
    payload = bytes(range(256)) * (MESSAGE // 256)
    try:
        channel = a.createDataChannel("bulk", ordered=True)
        channel.bufferedAmountLowThreshold = HIGH_WATER // 4
        drained = asyncio.Event()
        channel.on("bufferedamountlow", drained.set)

        @b.on("datachannel")
        def _on_channel(ch):
            @ch.on("message")
            def _on_message(m):
                arrivals.append(time.monotonic())
                received.extend(m)
                if len(received) >= size:
                    done.set()

        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 20)
        sctp = a.sctp
        # Data flows while the search goes on; to test a black hole appearing mid-transfer,
        # wait until fragmented packets are confirmed first.
        while sctp._sizer is None or (
            drop_after is not None and sctp._sizer.confirmed <= sctp._sizer.path_limit
        ):
            await asyncio.sleep(0.05)

        async def watch() -> None:
            nonlocal dropped_at
            while not done.is_set():
                rtos.append(sctp._rto)
                if drop_after is not None and dropped_at is None and len(received) >= drop_after:
                    subprocess.run(DROP_FRAGMENTS, check=True, timeout=10)
                    dropped_at = time.monotonic()
                await asyncio.sleep(0.02)

        watcher = asyncio.ensure_future(watch())
        start = time.monotonic()
        sent = 0
        while sent < size:
            if channel.bufferedAmount > HIGH_WATER:
                drained.clear()
                await asyncio.wait_for(drained.wait(), timeout)
            chunk = payload[: min(MESSAGE, size - sent)]
            channel.send(chunk)
            sent += len(chunk)
        await asyncio.wait_for(done.wait(), timeout)
        watcher.cancel()
        gaps = [t1 - t0 for t0, t1 in zip([start, *arrivals], arrivals, strict=False)]
        sizer = sctp._sizer
        expected = (payload * (size // MESSAGE + 1))[:size]
        return {
            "ok": bytes(received) == expected,
            "bytes": len(received),
            "seconds": round(arrivals[-1] - start, 3),
            "max_gap": round(max(gaps), 3),
            "max_rto": round(max(rtos), 3),
            "fallback_bound": round(tuning.fallback_bound(max(rtos)), 3),
            "dropped_fragments_at": None if dropped_at is None else round(dropped_at - start, 3),
            "confirmed": sizer.confirmed,
            "size": sizer.size,
            "path_limit": sizer.path_limit,
            "probes_sent": sizer.probes_sent,
            "black_holes": tuning.STATS.black_holes,
            "split_packets": tuning.STATS.split_packets,
            "largest_packet": tuning.STATS.largest_packet,
        }
    finally:
        await a.close()
        await b.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16 * 2**20)
    ap.add_argument("--drop-fragments-after", type=int)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    choose_host_addresses(["127.0.0.1"])
    tuning.install()
    print(json.dumps(asyncio.run(transfer(args.size, args.drop_fragments_after,
                                          args.timeout))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
