"""Trace aiortc's SCTP congestion control in a running process, then summarise the trace.

Recording: with P2P_SCTP_TRACE=<dir> in the environment and benchmarks/trace_site on
PYTHONPATH (its sitecustomize.py calls `install()`), every process that imports Python
(the bare channel's children, `p2p seed`, `p2p fetch`) wraps the SCTP transport's methods
and, at exit, writes one JSON file per association that carried data: per SACK received
(time, cumulative TSN, gap blocks, cwnd / ssthresh / flight before and after, fast
recovery in/out, chunks waiting to be sent), per T3 expiry, per RTT sample, per DATA chunk
sent (TSN, send count, size) and per SACK sent (gap blocks). Only counts and times: the
wrappers change nothing they wrap. Works on the stock and on the tuned transport.

    P2P_SCTP_TRACE=/tmp/tr PYTHONPATH=$PWD:$PWD/benchmarks/trace_site \\
        python benchmarks/transfer.py --mtu 1500 --loss 5 --size 256M \\
        --scenarios bare-tuned,1to1
    python benchmarks/sctp_trace.py /tmp/tr            # one summary per association

The summary: loss recovery (fast recoveries, their length in round trips, T3s, chunks
fast-retransmitted more than once), the window (cwnd in packets, how often the sender
was window-limited, how often it had nothing to send), SACK spacing and RTT samples.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

TRACE_ENV = "P2P_SCTP_TRACE"
_traced: list = []


def install() -> None:
    """Wrap the SCTP transport classes this process may use (stock and tuned)."""
    out = os.environ.get(TRACE_ENV)
    if not out:
        return
    from aiortc import rtcsctptransport as sctp

    classes = [sctp.RTCSctpTransport]
    try:
        from p2pcli import aiortc_tuning

        classes.append(aiortc_tuning.TunedSctpTransport)
    except ImportError:
        pass
    for cls in classes:
        _wrap(cls, sctp)
    atexit.register(_dump, out)


def _log(self, *event) -> None:
    tr = self.__dict__.get("_trace")
    if tr is None:
        tr = self.__dict__["_trace"] = []
        _traced.append(self)
    tr.append((round(time.monotonic(), 6), *event))


def _wrap(cls, sctp) -> None:
    own = cls.__dict__
    receive_sack = own.get("_receive_sack_chunk")
    t3_expired = own.get("_t3_expired")
    send_chunk = own.get("_send_chunk")
    update_rto = own.get("_update_rto")

    if receive_sack is not None:
        async def _receive_sack_chunk(self, chunk):
            before = (self._cwnd, self._flight_size, self._fast_recovery_exit is not None)
            await receive_sack(self, chunk)
            _log(self, "sack", chunk.cumulative_tsn, len(chunk.gaps), *before,
                 self._cwnd, self._ssthresh, self._flight_size,
                 self._fast_recovery_exit is not None, len(self._outbound_queue),
                 getattr(self, "_max_data", sctp.USERDATA_MAX_LENGTH))
        cls._receive_sack_chunk = _receive_sack_chunk

    if t3_expired is not None:
        def _t3_expired(self):
            _log(self, "t3", self._cwnd, self._flight_size)
            t3_expired(self)
        cls._t3_expired = _t3_expired

    if send_chunk is not None:
        async def _send_chunk(self, chunk):
            # Both classes are wrapped and the tuned one calls the stock one: log once.
            if self.__dict__.get("_trace_sending"):
                return await send_chunk(self, chunk)
            if type(chunk) is sctp.DataChunk:
                _log(self, "data", chunk.tsn, chunk._sent_count, len(chunk.user_data))
            elif type(chunk) is sctp.SackChunk:
                _log(self, "sacksent", chunk.cumulative_tsn, len(chunk.gaps))
            self._trace_sending = True
            try:
                await send_chunk(self, chunk)
            finally:
                self._trace_sending = False
        cls._send_chunk = _send_chunk

    send_bundle = own.get("_send_bundle")
    if send_bundle is not None:
        async def _send_bundle(self, chunks, size):
            for chunk in chunks:
                _log(self, "data", chunk.tsn, chunk._sent_count, len(chunk.user_data))
            await send_bundle(self, chunks, size)
        cls._send_bundle = _send_bundle

    if update_rto is not None:
        def _update_rto(self, R):
            _log(self, "rtt", round(R, 6))
            update_rto(self, R)
        cls._update_rto = _update_rto


def _dump(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(_traced):
        events = t.__dict__.get("_trace", [])
        if sum(e[1] in ("data", "sacksent") for e in events) < 100:
            continue  # a signaling or handshake-only association
        Path(out, f"{os.getpid()}-{i}-{type(t).__name__}.json").write_text(
            json.dumps({"argv": sys.argv[:3], "events": events}))


# -- summary ---------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summarise(events: list) -> dict:
    sacks = [e for e in events if e[1] == "sack"]
    data = [e for e in events if e[1] == "data"]
    rtts = [e[2] for e in events if e[1] == "rtt"]
    t3s = [e for e in events if e[1] == "t3"]
    sent_sacks = [e for e in events if e[1] == "sacksent"]
    out: dict = {}
    if data:
        t0, t1 = data[0][0], data[-1][0]
        first = [e for e in data if e[3] == 1]
        out["data_sent"] = len(data)
        out["duration_s"] = round(t1 - t0, 3)
        out["mb_per_s_sent"] = round(sum(e[4] for e in first) / max(t1 - t0, 1e-9) / 1e6, 2)
        out["chunk_bytes"] = statistics.median(e[4] for e in first) if first else None
        out["retransmitted"] = len(data) - len(first)
        out["retransmitted_share"] = round((len(data) - len(first)) / len(data), 4)
        # Send count 3+ without a T3 in between is a second fast retransmit of one TSN.
        out["sent_3_or_more"] = sum(e[3] >= 3 for e in data)
    if sacks:
        mtu = sacks[-1][12]
        cw = [e[7] / mtu for e in sacks]
        out["sacks_received"] = len(sacks)
        out["cwnd_pkts_p10_p50_p90"] = [round(_pct(cw, q), 1) for q in (0.1, 0.5, 0.9)]
        out["ssthresh_pkts_p50"] = round(_pct([e[8] / mtu for e in sacks], 0.5), 1)
        out["flight_pkts_before_p50"] = round(_pct([e[5] / mtu for e in sacks], 0.5), 1)
        # Window-limited: flight was at cwnd when the SACK came (RFC 9260 7.2.1's "fully
        # utilized"); app-limited: nothing was queued to send after the SACK.
        out["window_limited_share"] = round(sum(e[5] >= e[4] for e in sacks) / len(sacks), 3)
        out["nothing_queued_share"] = round(sum(e[11] == 0 for e in sacks) / len(sacks), 3)
        entries = [i for i, e in enumerate(sacks) if not e[6] and e[10]]
        exits = [i for i, e in enumerate(sacks) if e[6] and not e[10]]
        out["fast_recoveries"] = len(entries)
        in_fr = sum(1 for e in sacks if e[10])
        out["sacks_in_fast_recovery_share"] = round(in_fr / len(sacks), 3)
        srtt = _pct(rtts, 0.5) if rtts else None
        if entries and exits and srtt:
            lengths = []
            for i in entries:
                j = next((x for x in exits if x > i), None)
                if j is not None:
                    lengths.append((sacks[j][0] - sacks[i][0]) / srtt)
            out["fast_recovery_rtts_p50_p90"] = [round(_pct(lengths, q), 1) for q in (0.5, 0.9)]
        times = [e[0] for e in sacks]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        out["sack_spacing_ms_p50_p90_p99"] = [round(_pct(gaps, q) * 1e3, 3)
                                              for q in (0.5, 0.9, 0.99)]
        out["sack_silences_over_50ms"] = sum(g > 0.05 for g in gaps)
        out["sack_silence_total_s"] = round(sum(g for g in gaps if g > 0.05), 3)
        dur = times[-1] - times[0]
        if dur > 0 and srtt:
            out["loss_events_per_rtt"] = round(len(entries) * srtt / dur, 3)
    if rtts:
        out["rtt_ms_p10_p50_p90"] = [round(_pct(rtts, q) * 1e3, 3) for q in (0.1, 0.5, 0.9)]
    out["t3"] = len(t3s)
    if sent_sacks:
        out["sacks_sent"] = len(sent_sacks)
        out["sacks_sent_with_gaps"] = sum(e[3] > 0 for e in sent_sacks)
    return out


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    for path in sorted(Path(args[0]).glob("*.json")):
        trace = json.loads(path.read_text())
        print(f"{path.name} {' '.join(trace['argv'])}")
        for k, v in summarise(trace["events"]).items():
            print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
