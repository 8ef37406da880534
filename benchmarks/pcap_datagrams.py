"""UDP datagrams in a pcap, per direction: how many, how large, how often (no dependencies).

DTLS hides SCTP, so a data channel's packets can only be counted and sized: the direction
carrying the data shows the sender's packet size (usrsctp's, aiortc's), the other its SACK
rate. IPv4 fragments are joined by IP id into the datagram they carry. Reads the classic
pcap format tcpdump writes (`tcpdump -i lo -w FILE`, Ethernet or Linux cooked headers).

    python benchmarks/pcap_datagrams.py FILE
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections import defaultdict


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def datagrams(path: str):
    """Yield (time, src port, dst port, UDP payload length) per datagram."""
    with open(path, "rb") as f:
        header = f.read(24)
        magic = struct.unpack("<I", header[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        linktype = struct.unpack(endian + "I", header[20:24])[0]
        skip = {1: 14, 113: 16, 276: 20}.get(linktype)
        if skip is None:
            raise SystemExit(f"link type {linktype} not handled")
        pending: dict[tuple, list] = {}
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            t = sec + frac / (1e9 if magic == 0xA1B23C4D else 1e6)
            ip = data[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            ident, frag = struct.unpack("!HH", ip[4:8])
            more, offset = frag & 0x2000, (frag & 0x1FFF) * 8
            key = (ip[12:16], ip[16:20], ident)
            payload_len = total - ihl
            if offset == 0 and not more:
                sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
                yield t, sport, dport, ulen - 8
                continue
            entry = pending.setdefault(key, [t, None, None, 0, None])
            entry[3] += payload_len
            if offset == 0:
                sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
                entry[1], entry[2], entry[4] = sport, dport, ulen
            if entry[4] is not None and entry[3] >= entry[4]:
                del pending[key]
                yield entry[0], entry[1], entry[2], entry[4] - 8


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    flows: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for t, sport, dport, size in datagrams(args[0]):
        flows[sport, dport].append((t, size))
    for (sport, dport), items in sorted(flows.items(), key=lambda kv: -len(kv[1])):
        if len(items) < 100:
            continue
        sizes = [s for _, s in items]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(items)]
        back = len(flows.get((dport, sport), []))
        print(f"{sport} -> {dport}: {len(items)} datagrams, {sum(sizes) / 1e6:.1f} MB, "
              f"size p10/p50/p90 {_pct(sizes, .1)}/{_pct(sizes, .5)}/{_pct(sizes, .9)}, "
              f"spacing p50/p90 {_pct(gaps, .5) * 1e3:.3f}/{_pct(gaps, .9) * 1e3:.3f} ms, "
              f"reverse datagrams per datagram {back / len(items):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
