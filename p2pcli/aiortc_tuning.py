"""Less CPU per byte through aiortc's SCTP/DTLS path, applied at runtime and reversibly.

Everything this project changes in aiortc's behaviour is in this module. `install()` makes
every `RTCPeerConnection` created afterwards use two subclasses, `TunedDtlsTransport` and
`TunedSctpTransport`, by rebinding the names `aiortc.rtcpeerconnection` constructs them
from; `uninstall()` puts the stock classes back. aiortc's own classes are never modified,
and `install()` refuses (and logs a warning) unless aiortc is exactly the pinned version,
since the subclasses replace private methods copied from that version.
tests/test_aiortc_tuning.py fails loudly when a new aiortc changes what is relied on.

Why: on a bare aiortc data channel the cost is per packet, not per byte. Every ~1200-byte
SCTP packet goes through the event loop, aioice, DTLS (pyOpenSSL) and SCTP parsing, and the
receiver answers each one with a SACK. The changes, each standard or negotiated so that a
stock peer (stock aiortc, Chromium's dcsctp, usrsctp) sees an ordinary SCTP endpoint:

1. Delayed SACKs (RFC 9260 section 6.2): a SACK for every second packet carrying DATA, at
   once on a gap, a gap filled, a duplicate or FORWARD TSN and for the 16 packets after
   one, otherwise within 200 ms. Stock aiortc SACKs every packet. Receiver-side only; any
   RFC-conforming sender copes.
2. Larger SCTP packets, up to one full DTLS record (16 KiB), between two tuned peers only:
   - the DTLS layer reads and writes whole records (stock aiortc reads at most 1500 bytes
     of a record and then stays one record behind for the rest of the association, so a
     stock peer must never be sent a larger packet, not even a probe);
   - each tuned side announces the largest packet it can receive in an INIT/INIT-ACK
     parameter of a type that RFC 9260 section 3.2.1 tells other stacks to skip silently;
   - the sender confirms the path with an RFC 8899-style probe (a HEARTBEAT padded with a
     PAD chunk, RFC 4820, to the candidate size) and fragments new messages at the larger
     size only once the peer has acknowledged a probe of that size. It probes the largest
     size that fits the link whole first, then sizes that cross as IP fragments (a LAN
     carries them, some internet paths drop them; relayed paths are not probed);
   - under loss it cuts messages at the largest confirmed size whose predicted packet
     loss stays within a budget: one lost fragment loses the whole packet, while loss of
     whole datagrams (measured at two sizes to tell them apart) does not favour small ones;
   - a black hole (repeated retransmission timeouts) steps the size down within a bounded
     time, and chunks already cut larger cross as pieces the tuned peer joins (a TSN cannot
     be re-fragmented), so no transfer stalls for good.
3. Flow control the stock sender lacks: a tuned sender honours the peer's advertised
   receiver window (RFC 9260 section 6.1 rule A; stock aiortc ignores it), and a tuned
   receiver enlarges its UDP receive buffer (best effort, up to net.core.rmem_max) and
   advertises no more window than that buffer holds, so a burst no longer overflows the
   socket and costs a loss recovery.
4. Loss recovery without timeouts: a sender whose SACKs stop with data outstanding sends
   a probe packet after two round trips (RFC 8985's tail loss probe; up to three, after 2,
   4 and 8 round trips) instead of waiting for T3, which takes at least 1 s and restarts
   from a one-packet window. Together with
   the quick SACKs after a loss (1.), this is what keeps a lossy path from being slower
   than stock (docs/aiortc-patch.md, "Under loss"). The retransmission timer starts at
   RFC 9260's 1 s, not aiortc's 3 s, for handshake and early DATA losses. A chunk is
   fast-retransmitted again only once chunks sent after its resend arrive without it
   (aiortc resent it on every third SACK still in flight, up to 6 times per loss).
5. Cheaper receiving from peers that still send small packets (stock aiortc, browsers): a
   stream's fragment list is scanned for complete messages only when the arriving chunk
   can complete one (aiortc rescans it for every chunk: quadratic in fragments per
   message), and in-order TSNs skip re-sorting the gap set.
6. Bundling (RFC 9260 section 6.10): a message's last fragment shares its packet with the
   first fragment of the next message when that one is already waiting, cut to fit;
   aiortc sends one chunk per packet, so a 32 KiB block in 16 KiB packets took three, one
   of them 121 bytes. Only while packets cross the link whole: above it the short packets
   are what tells the packet sizer which kind of loss it sees. Any SCTP receiver takes
   bundled chunks.

The sans-IO decisions (`DelayedAck`, `TailLossProbe`, `PacketSizer`, `candidate_sizes`) are
plain classes and functions with time as an input; the transports are thin adapters around
them.
Nothing is installed on import: p2pcli/patches.py's `apply()` installs it at a command's
start, unless `P2P_STOCK_AIORTC=1` in the environment keeps that process stock.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import json
import logging
import math
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import aiortc
import aiortc.rtcpeerconnection as _pc_module
from aiortc import rtcdtlstransport as _dtls
from aiortc import rtcsctptransport as _sctp
from OpenSSL import SSL

log = logging.getLogger(__name__)

PINNED_AIORTC_VERSION = "1.16.0"

# -- wire constants --------------------------------------------------------------------------

# aiortc's packet size, which every peer takes without a probe.
BASE_PACKET = _sctp.SCTP_MAX_PACKET_LENGTH
# One DTLS record carries one SCTP packet; DTLS plaintext is at most 2^14 bytes (RFC 6347).
MAX_PACKET = 1 << 14
# Ciphertext of a full record: header, explicit nonce/IV, tag/MAC and padding fit in this.
RECORD_READ_SIZE = MAX_PACKET + 2048
# Per-datagram overhead below SCTP on a direct path: IPv6 header (the larger), UDP, DTLS
# record (AES-GCM adds 37 bytes; CBC with SHA-1 up to 61).
PATH_OVERHEAD = 40 + 8 + 64
DEFAULT_LINK_MTU = 1500  # assumed when the interface's MTU cannot be read

# INIT/INIT-ACK parameter "largest SCTP packet I can receive" (uint32). The two top bits
# 10 mean "skip this parameter and continue" (RFC 9260 section 3.2.1), so stacks that do
# not know it ignore it without reporting. The type is unassigned by IANA; an upstream
# version would ask for one.
RECEIVE_LIMIT_PARAM = 0x8F50
# INIT/INIT-ACK parameter "I join split packets" (uint32 version, 1), same skip bits:
# the sender may then send an SCTP packet as pieces (`split_packet`) instead of IP
# fragments, which it does only for packets cut larger than the path turned out to carry.
SPLIT_PARAM = 0x8F51
# A piece starts with SCTP source port 0, which no SCTP packet has (RFC 9260 section 3.1).
SPLIT_MARK = b"\x00\x00"
SPLIT_HEADER = struct.Struct("!2sLBB")  # mark, packet id, piece index, piece count
PAD_CHUNK_TYPE = 0x84  # RFC 4820: also skip-and-continue for stacks without PAD support
HEARTBEAT_INFO_PARAM = 1
PROBE_MAGIC = b"p2p-plpmtud-probe"

# -- tuning constants ------------------------------------------------------------------------

SACK_EVERY = 2  # packets with new DATA per SACK (RFC 9260 section 6.2: at least every 2nd)
SACK_DELAY = 0.2  # seconds; RFC 9260 recommends at most 200 ms
# After a sign of loss, this many packets are each acknowledged at once (Linux TCP's
# quick-ack count, TCP_MAX_QUICKACKS). A lossy path keeps the sender's window small, and
# a window of a few packets with half as many SACKs loses all of them far more often
# (5% loss, 4 packets: 1 in 400 windows with 2 SACKs, 1 in 160,000 with 4), each time
# a retransmission timeout (>= 1 s) that drops the window to one packet.
SACK_QUICK_AFTER_LOSS = 16
# Tail loss probe (RFC 8985 section 7): at least this long after the last SACK.
LOSS_PROBE_MIN_TIMEOUT = 0.01
# Probes per silence, each after twice the wait of the one before (2, 4, 8 round trips).
# One was not enough at 5% loss: a lost probe (or its SACK) left a ~5-packet window idle
# until T3, a second at least, in 2 of 10 rounds (benchmarks/README.md, sixth pass).
MAX_LOSS_PROBES = 3
# RFC 9260 section 16's RTO.Initial (aiortc keeps RFC 4960's 3 s). It times the INIT and
# COOKIE-ECHO resends and any DATA lost before the first RTT sample (the data channel's
# OPEN, a manifest request): under 5% loss one of those is lost in about one start-up in
# five, and each cost 3 s of a transfer that takes 2.
RTO_INITIAL = 1.0
PROBE_TIMEOUT = 1.0  # seconds without a HEARTBEAT-ACK before a probe counts as lost...
# ...once the round trip is known, PROBE_RTTS of them but at least PROBE_MIN_TIMEOUT. A late
# answer still confirms its size, so a short timeout costs a resent probe, never a size.
PROBE_RTTS = 4
PROBE_MIN_TIMEOUT = 0.1
PROBES_REMEMBERED = 8  # probes whose late answer still counts
MAX_PROBES = 3  # lost probes of one size before trying the next smaller one
# Consecutive T3 expiries above the base size that make a black hole: one size step down.
# Under random loss aiortc often times out twice in a row (the one chunk resent after a T3
# is lost as well: 2 black holes in 3 runs of 64 MiB at 4096 bytes and 1% loss per IP
# packet); three in a row are about as rare as that loss squared.
BLACK_HOLE_T3 = 3
# Sizes probed above the link MTU, crossing as IP fragments (plus the largest the peer takes).
FRAGMENTED_SIZES = (4096, 8192)
# Largest predicted packet loss (a packet is lost when any of its fragments is) at which a
# size is still used; chosen from benchmarks/packet_sizes.py, see docs/aiortc-patch.md.
LOSS_BUDGET = 0.04
STAY_MARGIN = 1.25  # a size in use is kept up to this multiple of LOSS_BUDGET
# Largest predicted loss (from one measured fragment count, read as loss per IP packet) at
# which a newly confirmed larger fragment count is still tried, to tell the kinds of loss
# apart: up to 5% per IP packet (14.3% of 4096-byte packets). One lost 16 KiB probe at 5%
# per datagram lets the base size's count become trusted (about 700 packets in the 0.1 s
# before the next probe); without trying 4096 the transfer stayed at 1388 bytes (8.3 MB/s
# against 89 at 16384 in the round before).
EXPLORE_LIMIT = 0.15
# Probe trains (`ProbeTrain`): when data measured at one fragment count keeps a transfer
# below a confirmed fragmented size, probes at both sizes tell the kinds of loss apart
# without risking data. TRAIN_PAIRS pairs, TRAIN_GAP apart (a burst of 16 KiB probes
# would overflow a receive buffer and read as loss per IP packet); the larger size is
# tried with data when its probes lose at most TRAIN_MARGIN more than the smaller one's:
# 5% per IP packet makes that difference ~39% (16 KiB: 12 fragments), 5% per datagram
# ~0 (standard deviation ~6% at 48 pairs). A train that says no is repeated after
# TRAIN_EVERY seconds, doubling up to TRAIN_EVERY_MAX (~0.85 MB each time at 16 KiB). At
# 10 s, the ~3% of trains that say no at 5% per datagram held a transfer at 1388-byte
# packets for 10 s (24-35 MB/s against 140 for a 256 MiB round, 2 rounds in 20).
TRAIN_PAIRS = 48
TRAIN_GAP = 0.002
TRAIN_MARGIN = 0.12
TRAIN_EVERY = 2.0
TRAIN_EVERY_MAX = 80.0
LOSS_MIN_PACKETS = 200  # DATA packets sent before the loss estimate is trusted...
# ...or this many lost: heavy loss must be acted on within a few dozen packets (at 5% per IP
# packet, 16 KiB packets are lost at 46%, and each T3 that follows costs aiortc a second).
LOSS_MIN_LOSSES = 8
LOSS_WINDOW = 2000  # packets; older counts are halved away past it
# A retransmission timeout counts as this many packets lost at the size in flight: a T3 at a
# fragmented size says more than one lost packet (three in a row make a black hole), yet
# counting every chunk aiortc resends after it read one T3 as 100 losses.
T3_LOSSES = 4
LOSS_CHOICE_EVERY = 64  # packets sent between two size choices (a loss triggers one at once)
REPROBE_AFTER = 600.0  # seconds after a black hole before the sizes above are probed again
# Seconds after a search that confirmed no fragmented size before it tries again: probes
# risk no data, and on a loaded machine a probe's answer can come after PROBE_TIMEOUT.
RETRY_SEARCH_AFTER = 60.0
RECEIVE_BUFFER = 4 * 1024 * 1024  # SO_RCVBUF asked for; the kernel caps it at rmem_max
# Share of the kernel's receive buffer (as getsockopt reports it) that holds SCTP user
# data: the kernel charges each datagram its buffer's true size, about twice a ~1.2 kB
# datagram, barely more than a 16 kB one.
RECEIVE_BUFFER_USABLE = 0.45
# Least user data worth starting a message with in the packet of the previous message's
# last fragment (RFC 9260 section 6.10 bundling); less, and the tail goes alone.
BUNDLE_MIN = 256


class Feature(enum.Flag):
    """The changes `install()` can switch on, one by one for benchmarks (default: all)."""

    DELAYED_SACK = enum.auto()
    LARGE_PACKETS = enum.auto()
    FLOW_CONTROL = enum.auto()
    LOSS_PROBE = enum.auto()
    BUNDLING = enum.auto()


ALL_FEATURES = (Feature.DELAYED_SACK | Feature.LARGE_PACKETS | Feature.FLOW_CONTROL
                | Feature.LOSS_PROBE | Feature.BUNDLING)


# -- sans-IO: when to SACK -------------------------------------------------------------------


@dataclass
class DelayedAck:
    """When a receiver sends a SACK (RFC 9260 section 6.2).

    Call `on_packet` once per received packet after which a SACK is owed; `urgent` marks a
    sign of loss: a gap, a packet that fills one (RFC 5681 section 4.2's rule for TCP), a
    duplicate or a FORWARD TSN. Such a packet is acknowledged at once, and so are the
    `quick` packets after the last one: while the path loses packets the sender's window
    is small and each of its SACKs counts (see SACK_QUICK_AFTER_LOSS). Otherwise a SACK
    goes out for every `every`-th such packet, or when `deadline` passes.
    """

    every: int = SACK_EVERY
    delay: float = SACK_DELAY
    quick: int = SACK_QUICK_AFTER_LOSS
    owed: int = 0
    """Packets received since the last SACK that it has not covered yet."""
    deadline: float | None = None
    """When a SACK is due at the latest, None when none is owed."""
    quick_left: int = -1
    """Packets still to be acknowledged one by one since the last sign of loss, or since
    the association started: a sender's first window is a few packets (about 3.6 kB), and
    a SACK held back for `delay` then stalls it (a manifest answer waited 200 ms for one
    in about half of `p2p stream` start-ups; TCP's quick-ack mode does the same)."""

    def __post_init__(self) -> None:
        if self.quick_left < 0:
            self.quick_left = self.quick  # a new association starts quick

    def on_packet(self, now: float, *, urgent: bool = False) -> bool:
        """True: send a SACK now. False: one is owed by `deadline`."""
        self.owed += 1
        if urgent:
            self.quick_left = self.quick
            return True
        if self.quick_left > 0:
            self.quick_left -= 1
            return True
        if self.owed >= self.every:
            return True
        if self.deadline is None:
            self.deadline = now + self.delay
        return False

    def on_sack_sent(self) -> None:
        self.owed = 0
        self.deadline = None

    def due(self, now: float) -> bool:
        """True when a SACK is owed and its deadline has passed."""
        return self.deadline is not None and now >= self.deadline


# -- sans-IO: when a stalled sender probes ------------------------------------------------------


@dataclass
class TailLossProbe:
    """When a sender whose SACKs stopped sends one packet to draw one (RFC 8985 section 7).

    A lossy path keeps the congestion window at a few packets. When the last SACKs of such
    a window are lost, or too few packets follow a lost one to report it missing three
    times, nothing comes back: aiortc then waits for T3 (at least 1 s, RFC 9260), which
    also drops the window to one packet. Instead, `timeout()` after the last SACK (or the
    first packet sent after a quiet spell) with data still outstanding, `on_timer` says to
    send one packet: new data if there is some (the SACK it draws reports every gap below
    it), else the last chunk again. Up to `max_probes` per silence, each after twice the
    wait of the one before, since a probe or its SACK can be lost too; a SACK starts over.
    The congestion window is left alone: a probe is not a loss signal.
    """

    min_timeout: float = LOSS_PROBE_MIN_TIMEOUT
    sack_delay: float = SACK_DELAY
    max_probes: int = MAX_LOSS_PROBES
    deadline: float | None = None
    """When to probe, None when not armed."""
    probes: int = 0
    """Probes sent since the last SACK."""

    @property
    def probed(self) -> bool:
        """A probe went out since the last SACK."""
        return self.probes > 0

    def timeout(self, srtt: float, outstanding: int) -> float:
        """Two smoothed round trips; plus the peer's SACK delay when only one packet is
        out, since a delaying receiver holds its SACK for that long (RFC 8985 7.2)."""
        return max(2 * srtt, self.min_timeout) + (self.sack_delay if outstanding == 1 else 0)

    def on_sack(self, now: float, srtt: float | None, outstanding: int) -> None:
        """A SACK arrived; `outstanding`: DATA chunks sent and not yet acknowledged."""
        self.probes = 0
        self.deadline = None
        self.on_send(now, srtt, outstanding)

    def on_send(self, now: float, srtt: float | None, outstanding: int) -> None:
        """Data went out: arm, unless armed already, probed already or no RTT known."""
        if self.deadline is None and not self.probes and srtt is not None and outstanding:
            self.deadline = now + self.timeout(srtt, outstanding)

    def timer(self) -> float | None:
        return self.deadline

    def on_timer(self, now: float, srtt: float | None = None, outstanding: int = 0) -> bool:
        """True: send a probe now (and the next one is armed, if any is left)."""
        if self.deadline is None or now < self.deadline:
            return False
        self.probes += 1
        self.deadline = None
        if self.probes < self.max_probes and srtt is not None and outstanding:
            # No SACK delay from here: the peer answers a probe at once (data after a
            # gap, or a duplicate).
            self.deadline = now + max(2 * srtt, self.min_timeout) * 2 ** self.probes
        return True

    def cancel(self) -> None:
        """T3 took over, or the association closed."""
        self.deadline = None


# -- sans-IO: which packet size --------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One padded HEARTBEAT that tests whether packets of `size` bytes reach the peer."""

    size: int
    """SCTP packet length, common header included."""
    token: int
    """Echoed in the peer's HEARTBEAT-ACK; tells this probe from any other heartbeat."""


@dataclass
class ProbeTrain:
    """Probes at two confirmed sizes, sent in alternation, `gap` seconds apart.

    One count of data loss cannot tell loss per IP packet (a packet of k fragments is lost
    when any is: 16 KiB packets, 12 fragments at MTU 1500, lose 46% at 5%) from loss per
    datagram (every size loses the same). Probes can: if the larger size's probes are lost
    no more often than the smaller's, larger packets cost no extra loss. Probes carry no
    data, so finding out costs no retransmission; answers lost on the way back strike both
    sizes alike (a HEARTBEAT-ACK is small) and cancel out in the difference.
    """

    small: int
    big: int
    pairs: int = TRAIN_PAIRS
    gap: float = TRAIN_GAP
    sent: dict[int, int] = field(default_factory=dict)
    answered: dict[int, int] = field(default_factory=dict)
    end: float | None = None
    """When the last probe's answer is due (None: probes left to send)."""
    _tokens: dict[int, int] = field(default_factory=dict)
    _due: float = 0.0

    def next_probe(self, now: float, token: int, wait: float) -> Probe | None:
        """The next probe if one is due; `wait`: how long its answer may take."""
        if self.end is not None or now < self._due:
            return None
        total = sum(self.sent.values())
        size = self.big if total % 2 else self.small
        self.sent[size] = self.sent.get(size, 0) + 1
        self._tokens[token] = size
        self._due = now + self.gap
        if total + 1 >= 2 * self.pairs:
            self.end = now + wait
        return Probe(size=size, token=token)

    def on_ack(self, token: int) -> bool:
        """True when `token` was one of this train's probes (counted once)."""
        size = self._tokens.pop(token, None)
        if size is None:
            return False
        self.answered[size] = self.answered.get(size, 0) + 1
        return True

    def timer(self) -> float:
        return self.end if self.end is not None else self._due

    def done(self, now: float) -> bool:
        return self.end is not None and now >= self.end

    def loss(self, size: int) -> float:
        sent = self.sent.get(size, 0)
        return 1 - self.answered.get(size, 0) / sent if sent else 0.0

    def per_datagram(self, margin: float = TRAIN_MARGIN) -> bool:
        """The larger size loses no more than the smaller (within `margin`)."""
        return self.loss(self.big) - self.loss(self.small) <= margin


class SizerState(enum.Enum):
    SEARCHING = "searching"
    DONE = "done"


def fragments(packet_size: int, path_limit: int) -> int:
    """IP packets one SCTP packet of `packet_size` bytes crosses the path as (1: whole)."""
    return max(1, math.ceil(packet_size / path_limit))


@dataclass
class PacketSizer:
    """The SCTP packet size to use towards one peer: probed (RFC 8899), then fitted to loss.

    Sizes up to `path_limit` cross the path whole; larger ones cross as IP fragments, which
    a LAN carries and some internet paths drop. Search: unfragmented candidates first,
    largest first, then fragmented ones, largest first, one probe at a time; a size is
    `confirmed` once a probe of that size was acknowledged (every smaller size with it),
    and `max_probes` lost probes move on to the next candidate. Data keeps flowing at the
    confirmed size meanwhile, so a path that drops fragments costs lost probes, no stall.

    Loss: the adapter reports every DATA packet sent (`on_sent`) and retransmitted
    (`on_lost`) with its size. A packet of k fragments is lost when any one is; loss can
    also strike whole datagrams whatever their size (a full socket buffer or queue):
    1-(1-q)(1-p)^k. Counted per fragment count, two measured counts give p, the loss per
    IP packet, and q, the loss per datagram; one alone cannot tell them apart and is read
    as all p (the cautious reading). The sizer cuts new messages at `size`: the largest
    confirmed size whose predicted loss from fragments, 1-(1-p)^k, stays within
    `loss_budget` (one lost fragment loses the whole packet, so under loss per IP packet
    smaller packets win; under loss per datagram they only cost more packets). A size in
    use is kept until its predicted loss passes STAY_MARGIN times the budget, so noise in
    the estimate does not make it flap. When a probe confirms sizes with more fragments
    than the one measured, the next larger is tried if its predicted loss is at most
    EXPLORE_LIMIT: only measuring a second count tells the two kinds of loss apart.

    Black hole: `on_black_hole` (after BLACK_HOLE_T3 consecutive T3 expiries above `base`)
    takes `confirmed` one step down: fragmented -> the largest unfragmented confirmed size
    -> `base`. Packets above `confirmed` must no longer be sent whole (the adapter splits
    the ones already cut, see `split_packet`). After `reprobe_after` seconds the sizes
    above are probed again (RFC 8899's PMTU_RAISE_TIMER); a search that ended without
    confirming the largest candidate tries again after `retry_after`.
    """

    base: int = BASE_PACKET
    candidates: tuple[int, ...] = ()
    path_limit: int = MAX_PACKET
    """Largest packet that crosses the path unfragmented (link MTU - PATH_OVERHEAD)."""
    probe_timeout: float = PROBE_TIMEOUT
    max_probes: int = MAX_PROBES
    loss_budget: float = LOSS_BUDGET
    reprobe_after: float = REPROBE_AFTER
    retry_after: float = RETRY_SEARCH_AFTER
    min_packets: int = LOSS_MIN_PACKETS
    min_losses: int = LOSS_MIN_LOSSES
    window: int = LOSS_WINDOW
    size: int = 0
    """Size new messages are cut at (<= confirmed)."""
    confirmed: int = 0
    """Largest size known to cross the path; larger packets must not be sent whole."""
    state: SizerState = SizerState.SEARCHING
    probes_sent: int = 0
    sent: float = 0.0
    """DATA packets sent (first transmissions), decayed: the recent window only."""
    lost: float = 0.0
    """DATA packets retransmitted (lost or presumed lost), same window."""
    by_fragments: dict[int, list[float]] = field(default_factory=dict)
    """Fragments per packet -> [sent, lost], decayed with `sent` and `lost`."""
    _queue: list[int] = field(default_factory=list)
    _attempts: int = 0
    _outstanding: Probe | None = None
    _sent_at: float = 0.0
    _deadline: float | None = None
    _recent: list[Probe] = field(default_factory=list)
    _reprobe_at: float | None = None
    _unchosen: int = 0
    _exploring: int = 0
    """Fragment count tried to tell the kinds of loss apart (0: none)."""
    trains: int = 0
    """Probe trains started (`ProbeTrain`)."""
    _train: ProbeTrain | None = None
    _train_wanted: bool = False
    _train_after: float = 0.0
    _train_every: float = TRAIN_EVERY
    _rearm: bool = False
    _next_token: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))

    def __post_init__(self) -> None:
        self.size = self.size or self.base
        self.confirmed = self.confirmed or self.base
        self.candidates = tuple(sorted({c for c in self.candidates if c > self.base},
                                       reverse=True))
        self._search()

    # -- probing --------------------------------------------------------------------------

    def _search(self) -> None:
        """(Re)start the search over the candidates above `confirmed`."""
        above = [c for c in self.candidates if c > self.confirmed]
        self._queue = ([c for c in above if c <= self.path_limit]
                       + [c for c in above if c > self.path_limit])
        self._attempts = 0
        self.state = SizerState.SEARCHING if self._queue else SizerState.DONE

    def next_probe(self, now: float, rto: float = 0.0, srtt: float | None = None
                   ) -> Probe | None:
        """A probe to send now, if the search wants one; it counts as lost after
        `probe_wait(srtt)`. (`rto` is accepted and unused: aiortc's starts at 3 s, longer
        than many a transfer, and is never under 1 s.) The search comes first; a probe
        train (`ProbeTrain`) only runs outside it."""
        if self.state is not SizerState.SEARCHING:
            return self._train_probe(now, srtt)
        if self._outstanding is not None:
            return None
        self._next_token = (self._next_token + 1) % 2**64
        probe = Probe(size=self._queue[0], token=self._next_token)
        self._outstanding = probe
        self._sent_at = now
        self._deadline = now + self.probe_wait(srtt)
        self._attempts += 1
        self.probes_sent += 1
        self._recent = [*self._recent[-(PROBES_REMEMBERED - 1):], probe]
        return probe

    def probe_wait(self, srtt: float | None) -> float:
        """How long a probe may go unanswered: `probe_timeout` until the round trip is
        known, then PROBE_RTTS round trips (at least PROBE_MIN_TIMEOUT, at most
        `probe_timeout`)."""
        if srtt is None:
            return self.probe_timeout
        return min(self.probe_timeout, max(PROBE_MIN_TIMEOUT, PROBE_RTTS * srtt))

    def on_rtt(self, now: float, srtt: float | None) -> bool:
        """The association has a round-trip estimate: a probe sent before it was known
        gets the shorter wait. True when `timer()` moved earlier."""
        if self._deadline is None or self._outstanding is None:
            return False
        deadline = self._sent_at + self.probe_wait(srtt)
        if deadline >= self._deadline:
            return False
        self._deadline = max(deadline, now)
        return True

    def timer(self) -> float | None:
        """When `on_timer` (then `next_probe`) must be called next (None: no timer)."""
        search = self._deadline if self._deadline is not None else self._reprobe_at
        if self._train is not None:
            train: float | None = self._train.timer()
        else:
            train = self._train_after if self._train_wanted else None
        due = [t for t in (search, train) if t is not None]
        return min(due) if due else None

    def on_timer(self, now: float) -> bool:
        """Time passed: lost probes, a new search, a finished train. True when this
        changed `size`."""
        self._search_timer(now)
        if self._train is not None and self._train.done(now):
            return self._train_done(now)
        return False

    def _search_timer(self, now: float) -> None:
        if self._deadline is not None:
            if now < self._deadline:
                return
            self._outstanding = None
            self._deadline = None
            if self._attempts >= self.max_probes:
                self._queue.pop(0)
                self._attempts = 0
                if not self._queue:
                    self._done(now, self.retry_after)
        elif self._reprobe_at is not None and now >= self._reprobe_at:
            self._reprobe_at = None
            self._search()

    def _done(self, now: float, again_after: float) -> None:
        self.state = SizerState.DONE
        self._queue = []
        if any(c > self.confirmed for c in self.candidates):
            self._reprobe_at = now + again_after

    def on_probe_acked(self, token: int, now: float = 0.0) -> bool:
        """The peer echoed a probe (the one outstanding, or a recent one counted lost:
        its size crossed all the same). True when this changed `size`."""
        if self._train is not None and self._train.on_ack(token):
            return False  # counted; the train is judged when it ends
        probe = next((p for p in self._recent if p.token == token), None)
        if probe is None or probe.size <= self.confirmed:
            return False  # not ours, or it proves nothing new
        outstanding = self._outstanding
        if outstanding is not None and (outstanding is probe or outstanding.size <= probe.size):
            self._outstanding = None
            self._deadline = None
        self.confirmed = max(self.confirmed, probe.size)
        self._queue = [c for c in self._queue if c > self.confirmed]
        self._attempts = 0
        if not self._queue:
            self._done(now, self.retry_after)
        return self._choose(fresh=True)

    def on_black_hole(self, now: float = 0.0) -> bool:
        """Packets above the unfragmented size (or above base) seem lost. True when this
        lowered `confirmed`."""
        self._outstanding = None
        self._deadline = None
        self._recent = []  # answers to probes sent before the black hole prove nothing now
        self._train = None  # its larger size may be the one no longer crossing
        if self.confirmed <= self.base:
            return False
        if self.confirmed > self.path_limit:
            whole = [c for c in self.candidates if c <= self.path_limit]
            self.confirmed = max([self.base, *whole])
        else:
            self.confirmed = self.base
        self._done(now, self.reprobe_after)
        self._choose(fresh=True)
        return True

    # -- probe trains ---------------------------------------------------------------------

    def take_rearm(self) -> bool:
        """True once after loss made a probe train wanted: call `timer()` again."""
        rearm, self._rearm = self._rearm, False
        return rearm

    def _train_probe(self, now: float, srtt: float | None) -> Probe | None:
        if self._train is None:
            if not self._train_wanted or now < self._train_after:
                return None
            whole = [c for c in self.candidates if c <= min(self.confirmed, self.path_limit)]
            if self.confirmed <= self.path_limit:
                self._train_wanted = False  # nothing fragmented to ask about
                return None
            self._train = ProbeTrain(small=max([self.base, *whole]), big=self.confirmed)
            self.trains += 1
        token = (self._next_token + 1) % 2**64
        probe = self._train.next_probe(now, token, self.probe_wait(srtt))
        if probe is not None:
            self._next_token = token
            self.probes_sent += 1
        return probe

    def _train_done(self, now: float) -> bool:
        train, self._train = self._train, None
        self._train_wanted = False
        if train is not None and train.per_datagram():
            # Larger packets lose no more: measure the larger size with data, as a newly
            # confirmed size is (two fragment counts then tell p from q).
            self._train_every = TRAIN_EVERY
            self._train_after = now + TRAIN_EVERY
            return self._choose(fresh=True, explore=True)
        self._train_after = now + self._train_every
        self._train_every = min(TRAIN_EVERY_MAX, 2 * self._train_every)
        return False

    # -- loss -----------------------------------------------------------------------------

    def on_sent(self, packet_size: int) -> bool:
        """A DATA packet went out for the first time. True when this changed `size`."""
        self._count(packet_size, 0)
        self._unchosen += 1
        return self._unchosen >= LOSS_CHOICE_EVERY and self._choose()

    def on_lost(self, packet_size: int) -> bool:
        """A DATA packet is sent again: its previous transmission counts as lost, this
        one as sent. True when this changed `size`."""
        self._count(packet_size, 1)
        return self._choose()

    def on_timeout(self, packet_size: int) -> bool:
        """A retransmission timeout with packets of that size outstanding: T3_LOSSES of
        them count as lost. True when this changed `size`."""
        for _ in range(T3_LOSSES):
            self._count(packet_size, 1)
        return self._choose()

    def _count(self, packet_size: int, lost: int) -> None:
        self.sent += 1
        self.lost += lost
        counts = self.by_fragments.setdefault(fragments(packet_size, self.path_limit),
                                              [0.0, 0.0])
        counts[0] += 1
        counts[1] += lost
        if self.sent >= self.window:  # forget the old half: the estimate follows the path
            self.sent /= 2
            self.lost /= 2
            for counts in self.by_fragments.values():
                counts[0] /= 2
                counts[1] /= 2

    def _trusted(self, sent: float, lost: float) -> bool:
        return sent >= self.min_packets or lost >= self.min_losses

    def loss_model(self) -> tuple[float, float] | None:
        """(p, q): estimated loss per IP packet (fragment) and per datagram whatever its
        size; None until some size had `min_packets` sent or `min_losses` lost. From the
        fewest and the most fragments per packet measured; one count alone is read as
        all p (q = 0)."""
        measured = sorted((k, sent, lost) for k, (sent, lost) in self.by_fragments.items()
                          if sent and self._trusted(sent, lost))
        if len(measured) < 2:
            # One count or none: all packets pooled, all loss read as per IP packet (as a
            # packet of the average fragment count). Pooling judges a size from its first
            # losses when other sizes' packets already count: 16 KiB packets losing 46%
            # (5% per IP packet) must go before resends are lost too and T3s follow.
            if not self._trusted(self.sent, self.lost):
                return None
            per_packet = sum(k * c[0] for k, c in self.by_fragments.items()) / self.sent
            return 1 - (1 - min(self.lost / self.sent, 0.99)) ** (1 / per_packet), 0.0
        (k_lo, sent_lo, lost_lo), (k_hi, sent_hi, lost_hi) = measured[0], measured[-1]
        # Cautious: loss at the fewer fragments at its low end, at the more at its high end
        # (half a Poisson standard deviation of the count lost): 8 losses in 67 packets at
        # 8192 bytes (5.9% expected at 1% per IP packet) must not read as loss per datagram.
        loss_lo = max(0.0, lost_lo - 0.5 * math.sqrt(lost_lo)) / sent_lo
        loss_hi = min(0.99, (lost_hi + 0.5 * math.sqrt(lost_hi)) / sent_hi)
        kept = (1 - loss_hi) / (1 - loss_lo)  # (1-p)^(k_hi-k_lo)
        p = min(0.99, 1 - kept ** (1 / (k_hi - k_lo))) if kept < 1 else 0.0
        q = max(0.0, 1 - (1 - loss_lo) / (1 - p) ** k_lo)
        return p, q

    def may_bundle(self) -> bool:
        """Whether a message's last fragment may share its packet with the next message:
        only while the size in use crosses the link whole.

        Above it, the short packets that carry last fragments alone are the second
        fragment count that tells loss per datagram from loss per IP packet. Bundled away,
        5% loss per datagram at 16 KiB read as 0.43% per IP packet and the transfer stepped
        down to 8192 bytes for seconds (p2p at 25.7 MB/s against 46.3 before, same round);
        bundling only once two counts were trusted still let traces step down to 8192 and
        4096 (the short-packet count decays while bundling). Below the link MTU there is
        nothing to tell apart.
        """
        return fragments(self.size, self.path_limit) <= 1

    def fragment_loss(self) -> float | None:
        """Estimated loss per IP packet (fragment), p of `loss_model`."""
        model = self.loss_model()
        return None if model is None else model[0]

    def _choose(self, fresh: bool = False, explore: bool = False) -> bool:
        """Pick `size` among the usable sizes. fresh: `confirmed` changed (no hysteresis);
        explore: a probe train found the largest usable size losing no more than the
        measured one: measure it with data."""
        self._unchosen = 0
        usable = sorted({self.base, *(c for c in self.candidates if c <= self.confirmed)},
                        reverse=True)
        p = self.fragment_loss()
        measured = [k for k, (sent, lost) in self.by_fragments.items()
                    if self._trusted(sent, lost)]
        step = [s for s in usable if fragments(s, self.path_limit) > max(measured, default=0)]
        untried = fresh and len(measured) <= 1 and bool(step) and p is not None and (
            explore or (len(measured) == 1 and 1 - (1 - p) ** fragments(
                min(step), self.path_limit) <= EXPLORE_LIMIT))
        current = fragments(self.size, self.path_limit)
        if p is None:
            best = usable[0]
        elif untried:
            # Only one fragment count measured, which cannot tell loss per IP packet from
            # loss per datagram: measure the next larger one. One step, and only while its
            # predicted loss is moderate: a size losing many packets, resends included,
            # draws T3s and then a black hole (tried: exploring 8192 at 5% per IP packet,
            # 26% of its packets lost, ended at 1189 bytes). After a probe train that found
            # no extra loss at the largest size: that one.
            best = max(step) if explore else min(step)
            self._exploring = fragments(best, self.path_limit)
        elif not fresh and self._exploring == current and current not in measured:
            return False  # tried to tell the kinds of loss apart: judged on its own count
        else:
            # Nothing within budget: the largest of the sizes with the fewest fragments.
            fewest = fragments(usable[-1], self.path_limit)
            best = max(s for s in usable if fragments(s, self.path_limit) == fewest)
            for s in usable:
                loss = 1 - (1 - p) ** fragments(s, self.path_limit)
                # A size in use is kept up to STAY_MARGIN x the budget, and a larger one is
                # only taken within the budget / STAY_MARGIN: no flapping on noise (a stale,
                # noisy count at another size can make a larger size look fine).
                margin = 1.0 if fresh else STAY_MARGIN if s <= self.size else 1 / STAY_MARGIN
                if loss <= self.loss_budget * margin:
                    best = s
                    break
        if (len(measured) < 2 and p is not None and best < self.confirmed
                and self.confirmed > self.path_limit and self._train is None
                and not self._train_wanted):
            # Loss read from one fragment count keeps us below a confirmed fragmented
            # size: ask probes whether that size really loses more.
            self._train_wanted = self._rearm = True
        if best == self.size:
            return False
        self.size = best
        return True


def fallback_bound(rto: float) -> float:
    """Longest a path that stops carrying a packet size can hold DATA back: BLACK_HOLE_T3
    retransmission timeouts to conclude it is a black hole, then one more for the first
    resend (smaller, or as pieces) to be acknowledged. aiortc's RTO is at least 1 s."""
    return (BLACK_HOLE_T3 + 1) * rto


def max_user_data(packet_size: int) -> int:
    """User data in one DATA chunk of a packet of that size (chunks are padded to 4)."""
    overhead = _sctp.SCTP_COMMON_HEADER_LENGTH + _sctp.SCTP_DATA_CHUNK_HEADER_LENGTH
    return (packet_size - overhead) // 4 * 4


def path_limit(link_mtu: int | None) -> int:
    """Largest SCTP packet that crosses a link of that MTU without IP fragmentation."""
    return (link_mtu or DEFAULT_LINK_MTU) - PATH_OVERHEAD


def candidate_sizes(peer_limit: int | None, link_mtu: int | None,
                    *, relayed: bool = False) -> tuple[int, ...]:
    """Packet sizes worth probing, largest first; () when only BASE_PACKET is safe.

    peer_limit: what the peer announced it can receive (None: stock peer, never probe).
    link_mtu: MTU of the local interface carrying the path (None: unknown, assume 1500).
    The largest packet that fits the link whole, and FRAGMENTED_SIZES above it (IP
    fragments: the probe finds out whether the path carries them).
    """
    if peer_limit is None or relayed:
        return ()
    top = min(MAX_PACKET, peer_limit) // 4 * 4
    whole = min(top, path_limit(link_mtu) // 4 * 4)
    sizes = {top, whole} | {s for s in FRAGMENTED_SIZES if s < top}
    return tuple(sorted((s for s in sizes if s > BASE_PACKET), reverse=True))


def receive_window(buffer_bytes: int) -> int:
    """Receiver window to advertise for a socket whose SO_RCVBUF reads `buffer_bytes`."""
    return int(buffer_bytes * RECEIVE_BUFFER_USABLE)


# -- packets the stock code cannot build ------------------------------------------------------


def encode_probe(probe: Probe, src_port: int, dst_port: int, tag: int) -> bytes:
    """A `probe.size`-byte SCTP packet: HEARTBEAT (info: magic, token) + PAD chunk."""
    info = PROBE_MAGIC + struct.pack("!Q", probe.token)
    param = struct.pack("!HH", HEARTBEAT_INFO_PARAM, 4 + len(info)) + info
    param += b"\x00" * _sctp.padl(len(param))
    heartbeat = struct.pack("!BBH", _sctp.HeartbeatChunk.type, 0, 4 + len(param)) + param
    pad_len = probe.size - _sctp.SCTP_COMMON_HEADER_LENGTH - len(heartbeat)
    if pad_len < 4 or probe.size % 4:
        raise ValueError(f"cannot build a probe of {probe.size} bytes")
    pad = struct.pack("!BBH", PAD_CHUNK_TYPE, 0, pad_len) + bytes(pad_len - 4)
    header = struct.pack("!HHL", src_port, dst_port, tag)
    body = heartbeat + pad
    checksum = _sctp.crc32c(header + b"\x00\x00\x00\x00" + body)
    return header + struct.pack("<L", checksum) + body


def probe_token(params: Iterable[tuple[int, bytes]]) -> int | None:
    """The token in a HEARTBEAT-ACK answering one of our probes, else None."""
    for kind, value in params:
        if kind == HEARTBEAT_INFO_PARAM and value.startswith(PROBE_MAGIC):
            rest = value[len(PROBE_MAGIC):]
            if len(rest) == 8:
                return struct.unpack("!Q", rest)[0]
    return None


# -- split packets: what crosses a path that lost IP fragments ---------------------------------


def bundle_room(tail_len: int, max_data: int) -> int:
    """User data that fits, as a second DATA chunk, in a packet of `max_user_data` =
    max_data whose first DATA chunk carries `tail_len` bytes (chunks padded to 4)."""
    padded = tail_len + _sctp.padl(tail_len)
    return (max_data - _sctp.SCTP_DATA_CHUNK_HEADER_LENGTH - padded) // 4 * 4


def fragment_sizes(length: int, max_data: int, first: int | None = None) -> list[int]:
    """User data per DATA chunk of a `length`-byte message: `first` bytes in the first
    chunk (when it shares a packet with an earlier message's tail), max_data after."""
    if first is None or first >= max_data:
        first = max_data
    if length <= first:
        return [length]
    rest = length - first
    return [first] + [max_data] * (rest // max_data) + ([rest % max_data] if rest % max_data
                                                          else [])


def data_packet_size(chunk: _sctp.DataChunk) -> int:
    """Length of the SCTP packet carrying this DATA chunk alone."""
    n = len(chunk.user_data)
    return (_sctp.SCTP_COMMON_HEADER_LENGTH + _sctp.SCTP_DATA_CHUNK_HEADER_LENGTH
            + n + _sctp.padl(n))


# The most pieces one MAX_PACKET packet is split into (pieces of BASE_PACKET bytes).
MAX_SPLIT_PIECES = math.ceil(MAX_PACKET / (BASE_PACKET - SPLIT_HEADER.size))


def split_packet(packet: bytes, packet_id: int, piece_size: int = BASE_PACKET) -> list[bytes]:
    """An SCTP packet as pieces of at most `piece_size` bytes, for a peer that announced
    SPLIT_PARAM. Used for DATA chunks cut at a size the path stopped carrying (a TSN cannot
    be re-fragmented: RFC 9260 section 6.9), so they still get through."""
    room = piece_size - SPLIT_HEADER.size
    count = math.ceil(len(packet) / room)
    if count > 255:
        raise ValueError(f"cannot split {len(packet)} bytes into {piece_size}-byte pieces")
    return [SPLIT_HEADER.pack(SPLIT_MARK, packet_id % 2**32, i, count)
            + packet[i * room:(i + 1) * room] for i in range(count)]


@dataclass
class Reassembler:
    """Joins the pieces of split packets. A packet is complete when all its pieces came;
    at most `max_pending` incomplete packets are kept (oldest dropped: a lost piece loses
    its packet, which SCTP then retransmits under a new id)."""

    max_pending: int = 32
    _pending: dict[int, list[bytes | None]] = field(default_factory=dict)

    def add(self, piece: bytes) -> bytes | None:
        """The whole packet once this piece completes it, else None."""
        if len(piece) < SPLIT_HEADER.size:
            return None
        _, packet_id, index, count = SPLIT_HEADER.unpack_from(piece)
        # What `split_packet` can send, and no more: pieces of at most BASE_PACKET bytes
        # making up at most one MAX_PACKET packet. Anything else is not ours to keep (a
        # peer could otherwise park 32 x 255 pieces of 16 KiB, 130 MB, here).
        if index >= count or count > MAX_SPLIT_PIECES or len(piece) > BASE_PACKET:
            return None
        parts = self._pending.get(packet_id)
        if parts is None or len(parts) != count:
            parts = self._pending[packet_id] = [None] * count
            while len(self._pending) > self.max_pending:
                del self._pending[next(iter(self._pending))]
        parts[index] = piece[SPLIT_HEADER.size:]
        if any(p is None for p in parts):
            return None
        del self._pending[packet_id]
        return b"".join(parts)  # type: ignore[arg-type]


# -- process-wide counters (benchmarks read them) -----------------------------------------------


@dataclass
class Stats:
    sacks_sent: int = 0
    data_packets_received: int = 0
    data_chunks_sent: int = 0
    probes_sent: int = 0
    probes_acked: int = 0
    largest_packet: int = BASE_PACKET
    t3_expiries: int = 0
    fast_recoveries: int = 0
    loss_probes: int = 0
    black_holes: int = 0
    probe_trains: int = 0
    split_packets: int = 0
    size_changes: int = 0
    packet_size: int = BASE_PACKET
    """The size the last association cut messages at when it last changed."""
    fragment_loss: float = 0.0
    """The last association's loss estimate per IP packet when its size last changed."""
    receive_buffer: int = 0


STATS = Stats()
STATS_ENV = "P2P_TUNING_STATS"  # a file: install() appends STATS to it as JSON at exit


# -- adapters ----------------------------------------------------------------------------------


class TunedDtlsTransport(_dtls.RTCDtlsTransport):
    """Reads and writes whole DTLS records, so one record can carry a 16 KiB SCTP packet.

    Only the application-data path changes; the handshake keeps aiortc's code. Pieces of
    split SCTP packets (`split_packet`) are joined here, below the SCTP association.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pieces = Reassembler()

    async def _recv_next(self) -> None:
        # aiortc 1.16 RTCDtlsTransport._recv_next, reading up to MAX_PACKET bytes of a
        # record instead of 1500.
        timeout = None
        if not self._RTCDtlsTransport__handshake_done:  # type: ignore[attr-defined]
            timeout = self._ssl.DTLSv1_get_timeout()
            if timeout is None and self.encrypted:
                self._RTCDtlsTransport__handshake_done = True

        if timeout is not None:
            try:
                data = await asyncio.wait_for(self.transport._recv(), timeout=timeout)
            except TimeoutError:
                self._ssl.DTLSv1_handle_timeout()
                await self._write_ssl()
                return
        else:
            data = await self.transport._recv()

        self._RTCDtlsTransport__rx_bytes += len(data)
        self._RTCDtlsTransport__rx_packets += 1

        first_byte = data[0]
        if 19 < first_byte < 64:
            self._ssl.bio_write(data)
            try:
                data = self._ssl.recv(MAX_PACKET)
            except SSL.ZeroReturnError:
                data = None
            except SSL.Error:
                data = b""
            await self._write_ssl()
            if data is None:
                raise ConnectionError
            elif data and self._data_receiver:
                if data[:2] == SPLIT_MARK:
                    data = self._pieces.add(data)
                    if data is None:
                        return
                await self._data_receiver._handle_data(data)
        elif 127 < first_byte < 192 and self._rx_srtp:
            # SRTP / SRTCP: unchanged; data channels never get here.
            arrival_time_ms = _dtls.clock.current_ms()
            try:
                if _dtls.is_rtcp(data):
                    data = self._rx_srtp.unprotect_rtcp(data)
                    await self._handle_rtcp_data(data)
                else:
                    data = self._rx_srtp.unprotect(data)
                    await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)
            except _dtls.pylibsrtp.Error:
                pass

    async def _send_data(self, data: bytes) -> None:
        # aiortc's version flushes with bio_read(1500), which would split a larger record
        # across datagrams.
        if self._state != _dtls.State.CONNECTED:
            raise ConnectionError("Cannot send encrypted data, not connected")
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            # stop() shuts the TLS session down before it marks the transport CLOSED; a send
            # in between (a probe, a SACK, a retransmission task) must look like any other
            # send on a closed transport, which every caller already ignores.
            raise ConnectionError("Cannot send encrypted data, DTLS is shutting down") from exc
        try:
            record = self._ssl.bio_read(RECORD_READ_SIZE)
        except SSL.Error:
            record = b""
        if record:
            await self.transport._send(record)
            self._RTCDtlsTransport__tx_bytes += len(record)
            self._RTCDtlsTransport__tx_packets += 1


class TunedSctpTransport(_sctp.RTCSctpTransport):
    """aiortc's SCTP association with delayed SACKs, probed larger packets, flow control.

    The overridden methods are aiortc 1.16's with the changes marked; the rest is stock.
    """

    def __init__(self, transport: _dtls.RTCDtlsTransport, port: int = 5000) -> None:
        super().__init__(transport, port)
        features = _features if _installed else Feature(0)
        self._tuned_sack = Feature.DELAYED_SACK in features
        self._tuned_flow = Feature.FLOW_CONTROL in features
        self._tlp = TailLossProbe() if Feature.LOSS_PROBE in features else None
        if self._tlp is not None:
            self._rto = RTO_INITIAL
        self._tlp_handle: asyncio.TimerHandle | None = None
        # Large packets need whole-record DTLS on this side.
        self._tuned_large = Feature.LARGE_PACKETS in features and isinstance(
            transport, TunedDtlsTransport
        )
        self._ack = DelayedAck()
        self._ack_handle: asyncio.TimerHandle | None = None
        self._max_data = _sctp.USERDATA_MAX_LENGTH
        self._peer_receive_limit: int | None = None
        self._sizer: PacketSizer | None = None
        self._probe_handle: asyncio.TimerHandle | None = None
        self._peer_joins_pieces = False
        self._packet_id = 0
        self._t3_strikes = 0
        self._send_stamp = 0  # DATA transmissions so far, first sends and resends alike
        self._bundling = Feature.BUNDLING in features
        self._peer_rwnd: int | None = None
        self._receive_window: int | None = None
        self._tasks: set[asyncio.Future] = set()

    def _spawn(self, coro) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- INIT parameters ----------------------------------------------------------------------

    def _set_extensions(self, params: list[tuple[int, bytes]]) -> None:
        super()._set_extensions(params)
        if self._tuned_large:
            params.append((RECEIVE_LIMIT_PARAM, struct.pack("!L", MAX_PACKET)))
            params.append((SPLIT_PARAM, struct.pack("!L", 1)))

    def _get_extensions(self, params: list[tuple[int, bytes]]) -> None:
        super()._get_extensions(params)
        for kind, value in params:
            if kind == RECEIVE_LIMIT_PARAM and len(value) == 4:
                self._peer_receive_limit = struct.unpack("!L", value)[0]
            elif kind == SPLIT_PARAM and len(value) == 4:
                self._peer_joins_pieces = struct.unpack("!L", value)[0] >= 1

    def _set_state(self, state: _sctp.RTCSctpTransport.State) -> None:
        established = (
            state == self.State.ESTABLISHED and self._association_state != state
        )
        super()._set_state(state)
        if established:
            self._on_established()
        elif state == self.State.CLOSED:
            for handle in (self._ack_handle, self._probe_handle, self._tlp_handle):
                if handle is not None:
                    handle.cancel()
            self._ack_handle = self._probe_handle = self._tlp_handle = None

    def _on_established(self) -> None:
        pair = _nominated_pair(self.transport)
        if self._tuned_flow and pair is not None:
            size = _enlarge_receive_buffer(pair)
            if size:
                self._receive_window = receive_window(size)
                STATS.receive_buffer = size
        if self._tuned_large:
            relayed = pair is None or pair.local_candidate.type == "relay"
            mtu = None if pair is None else link_mtu(pair.local_candidate.host)
            self._sizer = PacketSizer(
                candidates=candidate_sizes(self._peer_receive_limit, mtu, relayed=relayed),
                path_limit=path_limit(mtu),
            )
            if self._peer_receive_limit is None:
                log.debug("SCTP: peer does not announce larger packets; staying at %d bytes",
                          BASE_PACKET)
            else:
                log.debug("SCTP: peer takes packets up to %d bytes; probing %s (link MTU %s)",
                          self._peer_receive_limit, self._sizer.candidates, mtu)
            self._probe_step()

    # -- probing ------------------------------------------------------------------------------

    def _probe_step(self) -> None:
        sizer = self._sizer
        if sizer is None or self._association_state != self.State.ESTABLISHED:
            return
        now = self._loop.time()
        searching = sizer.state is SizerState.SEARCHING
        trains = sizer.trains
        if sizer.on_timer(now):
            log.debug("SCTP: probe train: no extra loss at %d bytes; trying it with data",
                      sizer.size)
            self._use_packet_size(sizer.size)
        if searching and sizer.state is SizerState.DONE:
            log.debug("SCTP: no probe answered; staying at %d-byte packets", sizer.size)
        probe = sizer.next_probe(now, self._rto, self._srtt)
        if sizer.trains != trains:
            STATS.probe_trains += 1
        if probe is not None:
            STATS.probes_sent += 1
            packet = encode_probe(probe, self._local_port, self._remote_port,
                                  self._remote_verification_tag)
            self._spawn(self._send_raw(packet))
        deadline = sizer.timer()
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        if deadline is not None:
            self._probe_handle = self._loop.call_at(deadline, self._probe_step)

    async def _send_raw(self, packet: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            await self.transport._send_data(packet)

    def _use_packet_size(self, size: int) -> None:
        self._max_data = max_user_data(size)
        STATS.largest_packet = max(STATS.largest_packet, size)
        STATS.packet_size = size
        STATS.size_changes += 1
        if self._sizer is not None:
            STATS.fragment_loss = round(self._sizer.fragment_loss() or 0.0, 5)

    async def _receive_chunk(self, chunk: _sctp.Chunk) -> None:
        if type(chunk) is _sctp.HeartbeatAckChunk and self._sizer is not None:
            token = probe_token(chunk.params)
            if token is not None:
                confirmed = self._sizer.confirmed
                if self._sizer.on_probe_acked(token, self._loop.time()):
                    self._use_packet_size(self._sizer.size)
                if self._sizer.confirmed != confirmed:
                    STATS.probes_acked += 1
                    log.debug("SCTP: %d-byte packets confirmed by probe", self._sizer.confirmed)
                self._probe_step()
                return
        await super()._receive_chunk(chunk)

    async def _send_chunk(self, chunk: _sctp.Chunk) -> None:
        # aiortc lets a send on a closed DTLS transport raise ConnectionError to its caller;
        # only _abort catches it, and T1/T2 resends run as tasks nobody awaits, so a close
        # at the wrong moment printed "Task exception was never retrieved" and a traceback.
        # A packet sent on a closed transport is lost, like any other: drop it here.
        if type(chunk) is _sctp.DataChunk:
            # Send order of every transmission, first or again (see _receive_sack_chunk).
            self._send_stamp += 1
            chunk._stamp = self._send_stamp
        try:
            if self._count_data(chunk):
                await self._send_pieces(chunk)
            else:
                await super()._send_chunk(chunk)
        except ConnectionError:
            log.debug("SCTP: %s not sent, the transport is closed", type(chunk).__name__)

    def _count_data(self, chunk: _sctp.Chunk, size: int | None = None) -> bool:
        """Feed a DATA packet to the sizer's loss estimate. True when it was cut larger than
        the path now carries and goes as pieces to a peer that joins them (else whole, as
        aiortc would send it)."""
        sizer = self._sizer
        if sizer is None or not sizer.candidates or type(chunk) is not _sctp.DataChunk:
            return False  # nothing to choose (stock peer): no bookkeeping
        bundled = getattr(chunk, "_bundled", None)  # (packet size, first chunk of it)
        size = size or data_packet_size(chunk)
        if chunk._sent_count == 2 and not chunk._acked and not getattr(
                chunk, "_t3_resend", False) and not (bundled and not bundled[1]):
            # A bundled packet's loss counts once, at its size: the chunks it carried are
            # resent one per packet, and the first one's resend carries the count.
            changed = sizer.on_lost(bundled[0] if bundled else size)
        else:
            # A first send; or a resend not counted as a loss: after T3 although gap-acked
            # (aiortc resends those too), or a second resend, which aiortc also makes when
            # SACKs still show the gap before the first resend arrived (counting those put
            # the estimate at 1.7% for 1% loss per IP packet).
            changed = sizer.on_sent(size)
        if changed:
            log.debug("SCTP: cutting messages at %d bytes (loss per IP packet %.4f)",
                      sizer.size, sizer.fragment_loss() or 0.0)
            self._use_packet_size(sizer.size)
        if sizer.take_rearm():
            self._probe_step()  # a probe train is wanted: arm its timer
        return size > sizer.confirmed and self._peer_joins_pieces

    async def _send_pieces(self, chunk: _sctp.Chunk) -> None:
        self._packet_id += 1
        packet = _sctp.serialize_packet(self._local_port, self._remote_port,
                                        self._remote_verification_tag, chunk)
        STATS.split_packets += 1
        for piece in split_packet(packet, self._packet_id):
            await self.transport._send_data(piece)

    # -- receiving: reassembly only when a message can complete ------------------------------

    def _mark_received(self, tsn: int) -> bool:
        # The next TSN in order with no gap pending: what aiortc's version concludes, without
        # sorting and rebuilding its sets for every packet.
        if not self._sack_misordered and tsn == _sctp.tsn_plus_one(self._last_received_tsn):
            self._last_received_tsn = tsn
            if self._sack_duplicates:
                self._sack_duplicates = [
                    x for x in self._sack_duplicates if _sctp.uint32_gt(x, tsn)
                ]
            return False
        return super()._mark_received(tsn)

    async def _receive_data_chunk(self, chunk: _sctp.DataChunk) -> None:
        # aiortc 1.16 RTCSctpTransport._receive_data_chunk; changed: the stream's fragment list
        # is only scanned for complete messages when this chunk can complete one. aiortc scans
        # it from the start for every chunk, quadratic in fragments per message (112 for a
        # 128 KiB message in 1172-byte fragments from a stock or browser peer). A chunk that
        # is not a last fragment and lands at the end (highest TSN of its stream) cannot
        # complete a message, nor unblock an earlier one: fragments of a message have
        # consecutive TSNs (RFC 9260 section 6.9) and earlier messages have lower ones.
        self._sack_needed = True

        if self._mark_received(chunk.tsn):
            return

        inbound_stream = self._get_inbound_stream(chunk.stream_id)
        inbound_stream.add_chunk(chunk)
        self._advertised_rwnd -= len(chunk.user_data)
        if chunk.flags & _sctp.SCTP_DATA_LAST_FRAG or inbound_stream.reassembly[-1] is not chunk:
            for message in inbound_stream.pop_messages():
                self._advertised_rwnd += len(message[2])
                await self._receive(*message)

        await self._reset_deferred_streams()

    # -- receiving: delayed SACK ------------------------------------------------------------

    async def _handle_data(self, data: bytes) -> None:
        # aiortc 1.16 RTCSctpTransport._handle_data; changed: when the SACK is sent.
        try:
            _, _, verification_tag, chunks = _sctp.parse_packet(data)
        except ValueError:
            return

        init_chunk = len([x for x in chunks if isinstance(x, _sctp.InitChunk)])
        if init_chunk:
            assert len(chunks) == 1
            expected_tag = 0
        else:
            expected_tag = self._local_verification_tag
        if verification_tag != expected_tag:
            return

        had_gap = bool(self._sack_misordered)
        for chunk in chunks:
            await self._receive_chunk(chunk)

        if self._sack_needed:
            if not self._tuned_sack:
                await self._send_sack()
                return
            STATS.data_packets_received += 1
            # Signs of loss: a gap, one (partly) filled, a duplicate, a FORWARD TSN.
            urgent = bool(had_gap or self._sack_duplicates or self._sack_misordered) or any(
                type(c) is _sctp.ForwardTsnChunk for c in chunks
            )
            if self._ack.on_packet(self._loop.time(), urgent=urgent):
                await self._send_sack()
            elif self._ack_handle is None:
                self._ack_handle = self._loop.call_at(self._ack.deadline, self._ack_timer)

    def _ack_timer(self) -> None:
        self._ack_handle = None
        if self._association_state != self.State.ESTABLISHED or self._ack.deadline is None:
            return
        if self._ack.due(self._loop.time()):
            if self._sack_needed:
                self._spawn(self._send_sack_quietly())
            else:
                self._ack.on_sack_sent()
        else:
            # A SACK went out since this timer was armed and a new one is owed later.
            self._ack_handle = self._loop.call_at(self._ack.deadline, self._ack_timer)

    async def _send_sack_quietly(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._send_sack()

    async def _send_sack(self) -> None:
        # aiortc 1.16 RTCSctpTransport._send_sack; changed: the advertised window is capped
        # by the receive buffer, and the delayed-ack state is reset.
        gaps: list[list[int]] = []
        gap_next = None
        for tsn in sorted(self._sack_misordered):
            pos = (tsn - self._last_received_tsn) % _sctp.SCTP_TSN_MODULO
            if tsn == gap_next:
                gaps[-1][1] = pos
            else:
                gaps.append([pos, pos])
            gap_next = _sctp.tsn_plus_one(tsn)

        sack = _sctp.SackChunk()
        sack.cumulative_tsn = self._last_received_tsn
        rwnd = max(0, self._advertised_rwnd)
        if self._receive_window is not None:
            rwnd = min(rwnd, self._receive_window)
        sack.advertised_rwnd = rwnd
        sack.duplicates = self._sack_duplicates[:]
        sack.gaps = [tuple(x) for x in gaps]

        await self._send_chunk(sack)

        self._sack_duplicates.clear()
        self._sack_needed = False
        self._ack.on_sack_sent()
        STATS.sacks_sent += 1

    # -- sending: per-association packet size, peer window --------------------------------

    async def _send(
        self,
        stream_id: int,
        pp_id: int,
        user_data: bytes,
        expiry: float | None = None,
        max_retransmits: int | None = None,
        ordered: bool = True,
    ) -> None:
        # aiortc 1.16 RTCSctpTransport._send; changed: fragment at this association's size,
        # the first fragment cut to share a packet with the last one queued (bundling).
        self._queue_message(stream_id, pp_id, user_data, expiry, max_retransmits, ordered)
        await self._transmit()

    def _queue_message(self, stream_id: int, pp_id: int, user_data: bytes,
                       expiry: float | None, max_retransmits: int | None,
                       ordered: bool) -> None:
        max_data = self._max_data
        stream_seq = self._outbound_stream_seq.get(stream_id, 0) if ordered else 0

        first = None
        if self._outbound_queue and self._may_bundle():
            tail = self._outbound_queue[-1]
            room = bundle_room(len(tail.user_data), max_data)
            if tail._sent_count == 0 and room >= BUNDLE_MIN:
                first = room
        sizes = fragment_sizes(len(user_data), max_data, first)
        fragments = len(sizes)
        pos = 0
        for fragment in range(0, fragments):
            chunk = _sctp.DataChunk()
            chunk.flags = 0
            if not ordered:
                chunk.flags = _sctp.SCTP_DATA_UNORDERED
            if fragment == 0:
                chunk.flags |= _sctp.SCTP_DATA_FIRST_FRAG
            if fragment == fragments - 1:
                chunk.flags |= _sctp.SCTP_DATA_LAST_FRAG
            chunk.tsn = self._local_tsn
            chunk.stream_id = stream_id
            chunk.stream_seq = stream_seq
            chunk.protocol = pp_id
            chunk.user_data = user_data[pos : pos + sizes[fragment]]

            chunk._abandoned = False
            chunk._acked = False
            chunk._book_size = len(chunk.user_data)
            chunk._expiry = expiry
            chunk._in_flight = False
            chunk._max_retransmits = max_retransmits
            chunk._misses = 0
            chunk._retransmit = False
            chunk._sent_count = 0
            chunk._sent_time = None

            pos += sizes[fragment]
            self._local_tsn = _sctp.tsn_plus_one(self._local_tsn)
            self._outbound_queue.append(chunk)

        if ordered:
            self._outbound_stream_seq[stream_id] = _sctp.uint16_add(stream_seq, 1)

    def _queue_next_message(self) -> bool:
        """Move the next message waiting on a data channel to the outbound queue, as
        aiortc's _data_channel_flush does (which moves one only when that queue is empty).
        False, leaving it, when it is not a plain message on a channel with an id."""
        channel, protocol, user_data = self._data_channel_queue[0]
        if protocol == _sctp.WEBRTC_DCEP or channel.id is None:
            return False
        self._data_channel_queue.popleft()
        expiry = None
        if channel.maxPacketLifeTime:
            expiry = time.time() + (channel.maxPacketLifeTime / 1000)
        self._queue_message(channel.id, protocol, user_data, expiry, channel.maxRetransmits,
                            channel.ordered)
        channel._addBufferedAmount(-len(user_data))
        return True

    async def _transmit(self) -> None:
        # aiortc 1.16 RTCSctpTransport._transmit; changed: burst size in this association's
        # packets, and new data stays within the peer's advertised window.
        if self._forward_tsn_chunk is not None:
            await self._send_chunk(self._forward_tsn_chunk)
            self._forward_tsn_chunk = None
            if not self._t3_handle:
                self._t3_start()

        mtu = self._max_data
        burst_size = (2 if self._fast_recovery_exit is not None else 4) * mtu
        cwnd = min(self._flight_size + burst_size, self._cwnd)

        retransmit_earliest = True
        for chunk in self._sent_queue:
            if chunk._retransmit:
                if self._fast_recovery_transmit:
                    self._fast_recovery_transmit = False
                elif self._flight_size >= cwnd:
                    return
                self._flight_size_increase(chunk)

                chunk._misses = 0
                chunk._retransmit = False
                chunk._sent_count += 1
                await self._send_chunk(chunk)
                if retransmit_earliest:
                    self._t3_restart()
            retransmit_earliest = False

        if self._tuned_flow and self._peer_rwnd is not None:
            # RFC 9260 section 6.1 A: new data only while the peer has room for it; with
            # nothing in flight one chunk may go (zero window probe).
            cwnd = min(cwnd, self._peer_rwnd)
        packet_limit = mtu + _sctp.SCTP_COMMON_HEADER_LENGTH + _sctp.SCTP_DATA_CHUNK_HEADER_LENGTH
        while self._outbound_queue and (
            self._flight_size < cwnd or (self._flight_size == 0 and self._tuned_flow)
        ):
            bundling = self._may_bundle()
            if (bundling and len(self._outbound_queue) == 1 and self._data_channel_queue
                    and bundle_room(len(self._outbound_queue[0].user_data), mtu) >= BUNDLE_MIN):
                # The last fragment of a message, with the next message already waiting:
                # queue that one now, its first fragment cut to fill this packet (a 32 KiB
                # block in 16 KiB packets went as 3 packets, one of 121 bytes: a fifth of
                # all packets, each as likely to be lost and as costly to handle).
                self._queue_next_message()
            bundle = []
            size = _sctp.SCTP_COMMON_HEADER_LENGTH
            while True:
                chunk = self._outbound_queue.popleft()
                self._sent_queue.append(chunk)
                self._flight_size_increase(chunk)
                chunk._sent_count += 1
                chunk._sent_time = time.time()
                bundle.append(chunk)
                size += data_packet_size(chunk) - _sctp.SCTP_COMMON_HEADER_LENGTH
                # The packet started below cwnd: RFC 9260 6.1 B lets it reach cwnd + PMTU - 1,
                # so what fits in it may join whether or not the first chunk filled cwnd.
                if not (bundling and self._outbound_queue
                        and size + data_packet_size(self._outbound_queue[0])
                        - _sctp.SCTP_COMMON_HEADER_LENGTH <= packet_limit):
                    break

            if len(bundle) == 1:
                await self._send_chunk(chunk)
            else:
                await self._send_bundle(bundle, size)
            STATS.data_chunks_sent += len(bundle)
            if not self._t3_handle:
                self._t3_start()

        if self._tlp is not None:
            self._tlp.on_send(self._loop.time(), self._srtt, len(self._sent_queue))
            self._tlp_arm()

    def _may_bundle(self) -> bool:
        sizer = self._sizer
        return self._bundling and (sizer is None or not sizer.candidates or sizer.may_bundle())

    async def _send_bundle(self, chunks: list[_sctp.DataChunk], size: int) -> None:
        """Several new DATA chunks in one SCTP packet of `size` bytes (RFC 9260 6.10)."""
        for i, chunk in enumerate(chunks):
            self._send_stamp += 1
            chunk._stamp = self._send_stamp
            chunk._bundled = (size, i == 0)
        body = b"".join(bytes(c) for c in chunks)
        header = struct.pack("!HHL", self._local_port, self._remote_port,
                             self._remote_verification_tag)
        checksum = _sctp.crc32c(header + b"\x00\x00\x00\x00" + body)
        packet = header + struct.pack("<L", checksum) + body
        try:
            if self._count_data(chunks[0], size):
                self._packet_id += 1
                STATS.split_packets += 1
                for piece in split_packet(packet, self._packet_id):
                    await self.transport._send_data(piece)
            else:
                await self.transport._send_data(packet)
        except ConnectionError:
            log.debug("SCTP: bundled DATA not sent, the transport is closed")

    # -- sending: tail loss probe ------------------------------------------------------------

    def _tlp_arm(self) -> None:
        # One timer at most, re-armed when it fires early (as for delayed SACKs): a SACK
        # moves the deadline later thousands of times a second on a fast path. It moves
        # earlier only after probes (the next is armed 4 or 8 round trips out, and the
        # SACK a probe draws starts over at 2): then the timer is moved.
        deadline = self._tlp.deadline
        if deadline is None:
            return
        if self._tlp_handle is not None:
            if self._tlp_handle.when() <= deadline:
                return
            self._tlp_handle.cancel()
        self._tlp_handle = self._loop.call_at(deadline, self._tlp_timer)

    def _tlp_timer(self) -> None:
        self._tlp_handle = None
        if self._tlp is None or self._association_state != self.State.ESTABLISHED:
            return
        if self._tlp.on_timer(self._loop.time(), self._srtt, len(self._sent_queue)) and (
                self._sent_queue):
            STATS.loss_probes += 1
            self._spawn(self._send_loss_probe())
        self._tlp_arm()

    async def _send_loss_probe(self) -> None:
        # New data if the peer's window allows (its SACK reports every gap below it),
        # else the last chunk not yet acknowledged, again. Outside the congestion window:
        # one packet, to learn what happened to the others.
        if self._outbound_queue and (
            not self._tuned_flow or self._peer_rwnd is None
            or self._flight_size < self._peer_rwnd
        ):
            chunk = self._outbound_queue.popleft()
            self._sent_queue.append(chunk)
            chunk._sent_time = time.time()
        else:
            chunk = next((c for c in reversed(self._sent_queue)
                          if not c._acked and not c._abandoned), None)
            if chunk is None:
                return
            chunk._retransmit = False
        self._flight_size_increase(chunk)
        chunk._sent_count += 1
        with contextlib.suppress(ConnectionError):
            await self._send_chunk(chunk)
        if not self._t3_handle:
            self._t3_start()

    async def _receive_sack_chunk(self, chunk: _sctp.SackChunk) -> None:
        # aiortc 1.16 RTCSctpTransport._receive_sack_chunk; changed: congestion window
        # steps in this association's packet size, the peer's window is recorded,
        # progress clears the black-hole count, and a miss is counted only against a chunk
        # sent before one this SACK newly acknowledges (see `newest_acked`).
        if _sctp.uint32_gt(self._last_sacked_tsn, chunk.cumulative_tsn):
            return

        mtu = self._max_data
        received_time = time.time()
        self._last_sacked_tsn = chunk.cumulative_tsn
        self._peer_rwnd = chunk.advertised_rwnd
        cwnd_fully_utilized = self._flight_size >= self._cwnd
        done = 0
        done_bytes = 0
        # The latest transmission (send order) this SACK newly acknowledges. aiortc counted
        # a miss for every chunk below the highest TSN newly acknowledged (RFC 9260 7.2.4's
        # HTNA), also for a chunk already fast-retransmitted: the SACKs of packets sent
        # before its retransmission still show it missing, so it went a second and third
        # time (2,182 of 4,384 resends in 256 MiB at 5% loss, each a 16 KiB packet taking
        # a place in the halved window). RFC 9260 7.2.4 step 5 makes a fast-retransmitted
        # chunk ineligible for another fast retransmit, which leaves a lost retransmission
        # to T3 (1 s). Counting a miss only when a chunk sent after this chunk's last
        # transmission was delivered (RFC 8985's rule) keeps both: no resend while the
        # first may still arrive, and a lost resend is seen after three later deliveries.
        # For chunks sent once this is HTNA unchanged (TSNs are first sent in order).
        newest_acked = 0

        while self._sent_queue and _sctp.uint32_gte(
            self._last_sacked_tsn, self._sent_queue[0].tsn
        ):
            schunk = self._sent_queue.popleft()
            done += 1
            if not schunk._acked:
                done_bytes += schunk._book_size
                newest_acked = max(newest_acked, getattr(schunk, "_stamp", 0))
            self._flight_size_decrease(schunk)

            if done == 1 and schunk._sent_count == 1:
                self._update_rto(received_time - schunk._sent_time)

        loss = False
        if chunk.gaps:
            seen = set()
            for gap in chunk.gaps:
                for pos in range(gap[0], gap[1] + 1):
                    highest_seen_tsn = (chunk.cumulative_tsn + pos) % _sctp.SCTP_TSN_MODULO
                    seen.add(highest_seen_tsn)

            for schunk in self._sent_queue:
                if _sctp.uint32_gt(schunk.tsn, highest_seen_tsn):
                    break
                if schunk.tsn in seen:
                    if not schunk._acked:
                        done_bytes += schunk._book_size
                        schunk._acked = True
                        newest_acked = max(newest_acked, getattr(schunk, "_stamp", 0))
                    self._flight_size_decrease(schunk)

            for schunk in self._sent_queue:
                if _sctp.uint32_gt(schunk.tsn, highest_seen_tsn):
                    break
                if (schunk.tsn not in seen and not schunk._retransmit
                        and getattr(schunk, "_stamp", 0) < newest_acked):
                    schunk._misses += 1
                    if schunk._misses == 3:
                        schunk._misses = 0
                        if not self._maybe_abandon(schunk):
                            schunk._retransmit = True

                        schunk._acked = False
                        self._flight_size_decrease(schunk)

                        loss = True

        if self._fast_recovery_exit is None:
            if done and cwnd_fully_utilized:
                if self._cwnd <= self._ssthresh:
                    self._cwnd += min(done_bytes, mtu)
                else:
                    self._partial_bytes_acked += done_bytes
                    if self._partial_bytes_acked >= self._cwnd:
                        self._partial_bytes_acked -= self._cwnd
                        self._cwnd += mtu
            if loss:
                STATS.fast_recoveries += 1
                self._ssthresh = max(self._cwnd // 2, 4 * mtu)
                self._cwnd = self._ssthresh
                self._partial_bytes_acked = 0
                self._fast_recovery_exit = self._sent_queue[-1].tsn
                self._fast_recovery_transmit = True
        elif _sctp.uint32_gte(chunk.cumulative_tsn, self._fast_recovery_exit):
            self._fast_recovery_exit = None

        if done:
            self._t3_strikes = 0
        if not self._sent_queue:
            self._t3_cancel()
        elif done:
            self._t3_restart()

        if self._tlp is not None:
            self._tlp.on_sack(self._loop.time(), self._srtt, len(self._sent_queue))
        sizer = self._sizer
        if sizer is not None and sizer.state is SizerState.SEARCHING and sizer.on_rtt(
                self._loop.time(), self._srtt):
            self._probe_step()  # a probe sent before the first RTT sample: re-arm sooner

        self._update_advanced_peer_ack_point()
        await self._data_channel_flush()
        await self._transmit()

    def _t3_expired(self) -> None:
        # aiortc 1.16 RTCSctpTransport._t3_expired; changed: windows in this association's
        # packet size, and repeated timeouts with large packets fall back to BASE_PACKET.
        self._t3_handle = None
        STATS.t3_expiries += 1
        if self._tlp is not None:
            self._tlp.cancel()
        self._t3_strikes += 1
        if (
            self._sizer is not None
            and self._t3_strikes >= BLACK_HOLE_T3
            and self._sizer.on_black_hole(self._loop.time())
        ):
            # One step down (fragmented -> whole -> base); chunks already cut larger go as
            # pieces (_send_chunk), and the sizes above are probed again later.
            STATS.black_holes += 1
            self._t3_strikes = 0
            log.warning("SCTP: packets above %d bytes seem lost; down to %d bytes",
                        self._sizer.confirmed, self._sizer.size)
            self._use_packet_size(self._sizer.size)
            self._probe_step()

        if self._sizer is not None and self._sent_queue and self._sizer.on_timeout(
                data_packet_size(self._sent_queue[0])):
            self._use_packet_size(self._sizer.size)
        for chunk in self._sent_queue:
            if not self._maybe_abandon(chunk):
                chunk._retransmit = True
                # aiortc resends everything outstanding after T3, most of it never lost:
                # the sizer counted the timeout itself (one T3 with a window of 100 chunks
                # read as 100 losses stepped 16 KiB packets down to 1388).
                chunk._t3_resend = True
            self._flight_size_decrease(chunk)
        self._update_advanced_peer_ack_point()

        self._fast_recovery_exit = None
        self._partial_bytes_acked = 0

        mtu = self._max_data
        self._ssthresh = max(self._cwnd // 2, 4 * mtu)
        self._cwnd = mtu

        self._spawn(self._transmit())


# -- I/O helpers ------------------------------------------------------------------------------


def _nominated_pair(dtls: _dtls.RTCDtlsTransport):
    """aioice's nominated candidate pair under this DTLS transport, if any."""
    try:
        return dtls.transport._connection._nominated.get(1)
    except AttributeError:
        return None


def _enlarge_receive_buffer(pair) -> int | None:
    """Ask for RECEIVE_BUFFER on the pair's UDP socket; return what the kernel granted."""
    try:
        sock = pair.protocol.transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < RECEIVE_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except (AttributeError, OSError):
        return None


def link_mtu(address: str) -> int | None:
    """MTU of the local interface that has `address`, or None when it cannot be told."""
    try:
        import ifaddr  # aioice's own dependency

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                host = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                if host == address:
                    with open(f"/sys/class/net/{adapter.name}/mtu") as f:
                        return int(f.read().strip())
    except (ImportError, OSError, ValueError):
        return None
    return None


# -- install / uninstall ------------------------------------------------------------------------

_installed = False
_features = ALL_FEATURES


def installed() -> bool:
    return _installed


def install(features: Feature = ALL_FEATURES) -> bool:
    """Make new peer connections use the tuned transports. False (and a warning) when
    aiortc is not the pinned version: the copied methods would not match it."""
    global _installed, _features
    if aiortc.__version__ != PINNED_AIORTC_VERSION:
        log.warning(
            "aiortc %s is not the pinned %s: running stock aiortc (slower). "
            "p2pcli/aiortc_tuning.py must be re-checked against this version.",
            aiortc.__version__, PINNED_AIORTC_VERSION,
        )
        return False
    _features = features
    _pc_module.RTCDtlsTransport = TunedDtlsTransport
    _pc_module.RTCSctpTransport = TunedSctpTransport
    _installed = True
    log.debug("aiortc tuning installed: %s", features)
    stats_path = os.environ.get(STATS_ENV)
    if stats_path:
        # Benchmarks read a real p2p process's counters (T3s, recoveries, packet size).
        atexit.register(_dump_stats, stats_path)
    return True


def _dump_stats(path: str) -> None:
    with contextlib.suppress(OSError), open(path, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), **asdict(STATS)}) + "\n")


def uninstall() -> None:
    """Back to stock for peer connections created from now on."""
    global _installed
    _pc_module.RTCDtlsTransport = _dtls.RTCDtlsTransport
    _pc_module.RTCSctpTransport = _sctp.RTCSctpTransport
    _installed = False
