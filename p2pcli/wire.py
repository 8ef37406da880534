"""The peer wire protocol (sans-IO): message codec and the per-peer state machine.

Every message is one binary data-channel message: a type byte, then fixed big-endian
fields, then (for data messages) a payload. docs/PROTOCOL.md is the normative description.

`PeerProtocol` takes received bytes and returns events; it builds the bytes to send. It
tracks what this side asked for, so a peer cannot push data nobody requested, and raises
`ProtocolError` (a reason suitable for a log line) on anything malformed or out of turn.
"""

from __future__ import annotations

import contextlib
import struct
from collections import Counter, deque
from dataclasses import dataclass

PROTOCOL_VERSION = 1
MAGIC = b"P2PW"
CHANNEL_LABEL = "p2p"
CHANNEL_PROTOCOL = "p2p/1"

# The block size we ask for. Chromium and aiortc advertise 256 KiB as max-message-size, so
# a 64 KiB block plus its 9-byte header always fits. Larger blocks cost more CPU, not less:
# aiortc reassembles a message in time quadratic in its fragments (benchmarks/README-bare.md;
# measured: 64 KiB blocks used 10% less CPU per GiB on the fetching side than 128 KiB).
DEFAULT_MAX_BLOCK = 64 * 1024
MIN_MAX_BLOCK = 16 * 1024
MAX_BLOCK_LIMIT = 256 * 1024 - 64  # nobody may ask for more than fits a 256 KiB message
MAX_REASON = 512
MANIFEST_CHUNK = 64 * 1024 - 64
# MANIFEST_REQUESTs a peer may send beyond two full reads of the manifest: the one answered
# "not yet" (total 0) before we had a manifest, and a little slack. More is a peer making
# us send the manifest again and again (each 9-byte request draws up to 64 KiB).
MANIFEST_REQUEST_SLACK = 4

# -- limits a peer is held to (the swarm applies them; they are part of the protocol) -------

MAX_MESSAGE = 256 * 1024  # what aiortc and Chromium advertise as max-message-size
MAX_MANIFEST = 16 * 1024 * 1024  # bytes; a 16 MiB piece list already describes > 8 TiB
MAX_QUEUED_REQUESTS = 512  # unanswered REQUESTs from one peer; more is a flood
HANDSHAKE_TIMEOUT = 10.0  # seconds from channel open to the remote's handshake
# Seconds for a peer to answer a manifest request. It goes behind the answering side's
# upload limit, so it gets longer than a block request.
MANIFEST_TIMEOUT = 20.0
BAD_PIECE_STRIKES = 3  # shared blame for bad pieces before a peer is dropped
MAX_REFUSALS = 8  # REJECTs of pieces a peer said it had, before it counts as lying

# -- extensions, negotiated through the channel's protocol string (PROTOCOL.md 3.5) --------
# Old peers and the page drop a peer that sends a message type they do not know, so an
# extension's messages go only to a peer that said it speaks them: the offerer lists the
# extensions it speaks in the channel's protocol string ("p2p/1 pex"; old answerers read
# only the label), and an answerer that speaks some of them says which in an EXTENSIONS
# message right after its HANDSHAKE. An old offerer's "p2p/1" gets no EXTENSIONS.

PEX = "pex"
SUPPORTED_EXTENSIONS = frozenset({PEX})
MAX_EXTENSIONS = 256  # bytes of extension names in one EXTENSIONS message
PEX_MAX_PEERS = 50  # peer ids in one PEX message
PEX_INTERVAL = 30.0  # seconds a sender leaves between PEX messages after the first
PEX_BURST = 3  # PEX messages a receiver takes at once; then one per PEX_INTERVAL / 2
SIGNAL_MAX = 16 * 1024  # bytes of SDP (or busy reason) in one RELAY / RELAYED
SIGNAL_BURST = 8  # RELAY + RELAYED a sender sends on one link at once...
SIGNAL_REFILL = 2.0  # ...then one per this many seconds; a receiver allows twice as many


class Signal:
    """What a RELAY / RELAYED carries (its kind byte); the payload is UTF-8 text."""

    OFFER = 1  # an SDP offer
    ANSWER = 2  # an SDP answer
    BUSY = 3  # "no slot for you now", the reason (at most MAX_REASON bytes)


SIGNAL_NAMES = {Signal.OFFER: "offer", Signal.ANSWER: "answer", Signal.BUSY: "busy"}


def channel_protocol(extensions: frozenset[str] | set[str]) -> str:
    """The protocol string an offerer gives its channel: "p2p/1", then the extensions."""
    return " ".join([CHANNEL_PROTOCOL, *sorted(extensions)])


def offered_extensions(protocol: str | None) -> frozenset[str] | None:
    """The extensions a remote offerer listed in its channel's protocol string (None: it
    listed none, so it must never receive an EXTENSIONS message)."""
    words = (protocol or "").split(" ")
    if words[0] != CHANNEL_PROTOCOL or len(words) == 1:
        return None
    return frozenset(w for w in words[1:] if w)


def manifest_request_limit(size: int | None) -> int:
    """How many MANIFEST_REQUESTs one peer may send us while our manifest is `size` bytes
    (None: we have none yet): enough to read it twice, chunk by chunk, plus the slack."""
    chunks = -(-size // MANIFEST_CHUNK) if size else 0
    return 2 * chunks + MANIFEST_REQUEST_SLACK


class MsgType:
    HANDSHAKE = 0x01
    CLOSE = 0x02
    MANIFEST_REQUEST = 0x03
    MANIFEST_DATA = 0x04
    BITFIELD = 0x05
    HAVE_ALL = 0x06
    HAVE = 0x07
    REQUEST = 0x08
    PIECE = 0x09
    CANCEL = 0x0A
    REJECT = 0x0B
    EXTENSIONS = 0x0C
    PEX = 0x0D
    RELAY = 0x0E
    RELAYED = 0x0F


class ProtocolError(Exception):
    """The remote peer broke the protocol; drop it with this reason."""


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    version: int
    "Remote protocol version."
    content_hash: bytes
    "Content the remote peer is talking about."
    peer_id: bytes
    "Remote's random 16-byte id (detects connecting to ourselves)."
    max_block: int
    "Largest PIECE payload the remote wants to receive."


@dataclass(frozen=True)
class Closed:
    reason: str
    "Why the remote closed the conversation."


@dataclass(frozen=True)
class ManifestRequested:
    offset: int
    "First manifest byte wanted."
    length: int
    "How many bytes wanted."


@dataclass(frozen=True)
class ManifestData:
    total: int
    "Size of the whole manifest."
    offset: int
    "Where `data` starts in the manifest."
    data: bytes
    "A slice of the manifest bytes."


@dataclass(frozen=True)
class BitfieldReceived:
    bits: bytes
    "One bit per piece, most significant bit of byte 0 is piece 0."


@dataclass(frozen=True)
class HaveAllReceived:
    """The remote has every piece."""


@dataclass(frozen=True)
class HaveReceived:
    piece: int
    "A piece the remote now has."


@dataclass(frozen=True)
class BlockRequested:
    piece: int
    "Piece index."
    offset: int
    "Offset in the piece."
    length: int
    "Block length."


@dataclass(frozen=True)
class BlockReceived:
    piece: int
    "Piece index."
    offset: int
    "Offset in the piece."
    data: bytes
    "Block bytes (unverified: the piece is checked when complete)."


@dataclass(frozen=True)
class BlockCancelled:
    piece: int
    "Piece index."
    offset: int
    "Offset in the piece."
    length: int
    "Block length."


@dataclass(frozen=True)
class BlockRejected:
    piece: int
    "Piece index."
    offset: int
    "Offset in the piece."
    length: int
    "Block length."


@dataclass(frozen=True)
class ExtensionsAccepted:
    names: frozenset[str]
    "The extensions of our offer the remote speaks too (possibly none)."


@dataclass(frozen=True)
class PexReceived:
    peers: tuple[bytes, ...]
    "Peer ids (16 bytes each) of peers the remote is connected to and can relay to."


@dataclass(frozen=True)
class RelayRequested:
    target: bytes
    "The peer id the remote wants this signal forwarded to."
    kind: int
    "A `Signal` kind."
    payload: str
    "SDP, or a busy reason."


@dataclass(frozen=True)
class RelayedSignal:
    source: bytes
    "The peer id the signal came from, as the relaying remote stamps it."
    kind: int
    "A `Signal` kind."
    payload: str
    "SDP, or a busy reason."


Event = (
    Handshake
    | Closed
    | ManifestRequested
    | ManifestData
    | BitfieldReceived
    | HaveAllReceived
    | HaveReceived
    | BlockRequested
    | BlockReceived
    | BlockCancelled
    | BlockRejected
    | ExtensionsAccepted
    | PexReceived
    | RelayRequested
    | RelayedSignal
)

_HANDSHAKE = struct.Struct(">B4sB32s16sI")
_U32 = struct.Struct(">BI")
_U32x2 = struct.Struct(">BII")
_U32x3 = struct.Struct(">BIII")
_SIGNAL = struct.Struct(">B16sB")
Block = tuple[int, int, int]  # piece, offset, length


# -- encoders (pure) -----------------------------------------------------------------------


def encode_handshake(content_hash: bytes, peer_id: bytes, max_block: int) -> bytes:
    return _HANDSHAKE.pack(
        MsgType.HANDSHAKE, MAGIC, PROTOCOL_VERSION, content_hash, peer_id, max_block
    )


def encode_close(reason: str) -> bytes:
    # Cut at a character boundary (the reason must stay valid UTF-8), and survive lone
    # surrogates: reasons quote error messages, which can quote remote input.
    raw = reason.encode("utf-8", "replace")[:MAX_REASON]
    return bytes([MsgType.CLOSE]) + raw.decode("utf-8", "ignore").encode("utf-8")


def encode_manifest_request(offset: int, length: int) -> bytes:
    return _U32x2.pack(MsgType.MANIFEST_REQUEST, offset, length)


def encode_manifest_data(total: int, offset: int, data: bytes) -> bytes:
    return _U32x2.pack(MsgType.MANIFEST_DATA, total, offset) + data


def encode_bitfield(bits: bytes) -> bytes:
    return bytes([MsgType.BITFIELD]) + bits


def encode_have_all() -> bytes:
    return bytes([MsgType.HAVE_ALL])


def encode_have(piece: int) -> bytes:
    return _U32.pack(MsgType.HAVE, piece)


def encode_request(piece: int, offset: int, length: int) -> bytes:
    return _U32x3.pack(MsgType.REQUEST, piece, offset, length)


def encode_piece_header(piece: int, offset: int) -> bytes:
    return _U32x2.pack(MsgType.PIECE, piece, offset)


def encode_cancel(piece: int, offset: int, length: int) -> bytes:
    return _U32x3.pack(MsgType.CANCEL, piece, offset, length)


def encode_reject(piece: int, offset: int, length: int) -> bytes:
    return _U32x3.pack(MsgType.REJECT, piece, offset, length)


def encode_extensions(names: frozenset[str] | set[str]) -> bytes:
    raw = " ".join(sorted(names)).encode("ascii")
    if len(raw) > MAX_EXTENSIONS:
        raise ValueError("extension names too long")
    return bytes([MsgType.EXTENSIONS]) + raw


def encode_pex(peers: list[bytes] | tuple[bytes, ...]) -> bytes:
    if len(peers) > PEX_MAX_PEERS or len(set(peers)) != len(peers):
        raise ValueError(f"PEX of {len(peers)} ids (at most {PEX_MAX_PEERS}, no repeats)")
    if any(len(p) != 16 for p in peers):
        raise ValueError("peer ids are 16 bytes")
    return bytes([MsgType.PEX]) + b"".join(peers)


def _encode_signal(t: int, peer: bytes, kind: int, payload: str) -> bytes:
    raw = payload.encode("utf-8")
    limit = MAX_REASON if kind == Signal.BUSY else SIGNAL_MAX
    if kind not in SIGNAL_NAMES or len(raw) > limit or len(peer) != 16:
        raise ValueError(f"signal of kind {kind}, {len(raw)} bytes, id of {len(peer)}")
    return _SIGNAL.pack(t, peer, kind) + raw


def encode_relay(target: bytes, kind: int, payload: str) -> bytes:
    return _encode_signal(MsgType.RELAY, target, kind, payload)


def encode_relayed(source: bytes, kind: int, payload: str) -> bytes:
    return _encode_signal(MsgType.RELAYED, source, kind, payload)


def _decode_extension(t: int, data: bytes) -> Event:
    """The extensions' messages (types 0x0C..0x0F), checked against their limits."""
    if t == MsgType.EXTENSIONS:
        if len(data) - 1 > MAX_EXTENSIONS:
            raise ProtocolError(f"EXTENSIONS of {len(data) - 1} bytes")
        try:
            text = data[1:].decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("EXTENSIONS names are not ASCII") from None
        return ExtensionsAccepted(frozenset(w for w in text.split(" ") if w))
    if t == MsgType.PEX:
        n, rest = divmod(len(data) - 1, 16)
        if rest or n > PEX_MAX_PEERS:
            raise ProtocolError(f"PEX of {len(data) - 1} bytes (at most {PEX_MAX_PEERS} ids)")
        peers = tuple(data[1 + 16 * i : 17 + 16 * i] for i in range(n))
        if len(set(peers)) != n:
            raise ProtocolError("PEX names a peer twice")
        return PexReceived(peers)
    _, peer, kind = _SIGNAL.unpack_from(data)
    raw = data[_SIGNAL.size :]
    if kind not in SIGNAL_NAMES:
        raise ProtocolError(f"signal of unknown kind {kind}")
    if len(raw) > (MAX_REASON if kind == Signal.BUSY else SIGNAL_MAX):
        raise ProtocolError(f"signal of {len(raw)} bytes")
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("signal is not UTF-8") from None
    if t == MsgType.RELAY:
        return RelayRequested(peer, kind, payload)
    return RelayedSignal(peer, kind, payload)


def decode(data: bytes) -> Event:
    """Decode one message without context. Raises only `ProtocolError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("text message on the binary protocol channel")
    data = bytes(data)
    if not data:
        raise ProtocolError("empty message")
    t = data[0]
    try:
        if t == MsgType.HANDSHAKE:
            if len(data) != _HANDSHAKE.size:
                raise ProtocolError(f"handshake of {len(data)} bytes, expected {_HANDSHAKE.size}")
            _, magic, version, content_hash, peer_id, max_block = _HANDSHAKE.unpack(data)
            if magic != MAGIC:
                raise ProtocolError("not a p2p peer (bad handshake magic)")
            return Handshake(version, content_hash, peer_id, max_block)
        if t == MsgType.CLOSE:
            return Closed(data[1 : 1 + MAX_REASON].decode("utf-8", "replace"))
        if t == MsgType.MANIFEST_REQUEST:
            _, offset, length = _exact(_U32x2, data)
            return ManifestRequested(offset, length)
        if t == MsgType.MANIFEST_DATA:
            _, total, offset = _U32x2.unpack_from(data)
            return ManifestData(total, offset, data[_U32x2.size :])
        if t == MsgType.BITFIELD:
            return BitfieldReceived(data[1:])
        if t == MsgType.HAVE_ALL:
            if len(data) != 1:
                raise ProtocolError("HAVE_ALL with a payload")
            return HaveAllReceived()
        if t == MsgType.HAVE:
            return HaveReceived(_exact(_U32, data)[1])
        if t == MsgType.REQUEST:
            _, p, o, n = _exact(_U32x3, data)
            return BlockRequested(p, o, n)
        if t == MsgType.PIECE:
            _, p, o = _U32x2.unpack_from(data)
            return BlockReceived(p, o, data[_U32x2.size :])
        if t == MsgType.CANCEL:
            _, p, o, n = _exact(_U32x3, data)
            return BlockCancelled(p, o, n)
        if t == MsgType.REJECT:
            _, p, o, n = _exact(_U32x3, data)
            return BlockRejected(p, o, n)
        if MsgType.EXTENSIONS <= t <= MsgType.RELAYED:
            return _decode_extension(t, data)
    except struct.error:
        raise ProtocolError(f"truncated message of type {t:#04x}") from None
    raise ProtocolError(f"unknown message type {t:#04x}")


def _exact(s: struct.Struct, data: bytes) -> tuple[int, ...]:
    if len(data) != s.size:
        raise ProtocolError(f"message of type {data[0]:#04x} has {len(data)} bytes, not {s.size}")
    return s.unpack(data)


# -- bitfields -----------------------------------------------------------------------------


def bitfield_bytes(count: int) -> int:
    return (count + 7) // 8


def bitfield_from(have: set[int] | list[bool], count: int) -> bytes:
    out = bytearray(bitfield_bytes(count))
    indices = have if isinstance(have, set) else (i for i, h in enumerate(have) if h)
    for i in indices:
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def bitfield_pieces(bits: bytes, count: int) -> set[int]:
    """Pieces set in a bitfield; spare bits must be zero and the length exact."""
    if len(bits) != bitfield_bytes(count):
        raise ProtocolError(f"bitfield of {len(bits)} bytes for {count} pieces")
    out = {i for i in range(count) if bits[i >> 3] & (0x80 >> (i & 7))}
    if count % 8 and bits and bits[-1] & (0xFF >> (count % 8)):
        raise ProtocolError("bitfield has spare bits set")
    return out


# -- state machine -------------------------------------------------------------------------


@dataclass
class Geometry:
    """What the protocol needs to know of the content to validate messages."""

    piece_count: int
    piece_size: int
    size: int

    def piece_length(self, piece: int) -> int:
        return min(self.piece_size, self.size - piece * self.piece_size)


class PeerProtocol:
    """One conversation with one remote peer about one content hash.

    Call `receive()` with each incoming message; it returns events and raises
    `ProtocolError` when the peer misbehaves. Use the `send_*` methods to build outgoing
    messages: they record what we asked for, which `receive()` then holds the peer to.
    """

    def __init__(self, content_hash: bytes, peer_id: bytes, max_block: int = DEFAULT_MAX_BLOCK):
        self.content_hash = content_hash
        self.peer_id = peer_id
        self.max_block = max_block
        self.remote: Handshake | None = None
        self.geometry: Geometry | None = None
        self.manifest_size: int | None = None
        self.outstanding: set[Block] = set()  # requests we sent, not yet answered
        # Cancelled by us, with how many times: a block re-requested after a cancel can be
        # cancelled again, and every one of those requests may still be answered.
        self.cancelled: Counter[Block] = Counter()
        self.manifest_wanted: tuple[int, int] | None = None
        # Serving the manifest: the remote's request not yet answered (one at a time, as
        # PROTOCOL.md 3.3 says), how many it sent, and our manifest's size once we have one.
        self.manifest_asked: tuple[int, int] | None = None
        self.manifest_requests = 0
        self.local_manifest_size: int | None = None
        self.remote_bitfield_seen = False
        self.closed = False
        # Sending side, so the order of what we send is checked too: the handshake first,
        # availability (BITFIELD or HAVE_ALL) once, HAVEs after it, and a PIECE or REJECT
        # only for a block the remote asked for (in `requests`, oldest first, or taken off
        # it by `next_request` and being read).
        self.handshake_sent = False
        self.availability_sent = False
        self.requests: deque[Block] = deque()
        self.serving: Counter[Block] = Counter()
        # Extensions (PROTOCOL.md 3.5): those we offered as the offerer (None: we answer,
        # or offered none), those the remote offered when we answer, those both speak.
        self.offered: frozenset[str] | None = None
        self.remote_offered: frozenset[str] | None = None
        self.extensions: frozenset[str] = frozenset()
        self.received_since_handshake = 0

    # -- outgoing

    def handshake(self) -> bytes:
        if self.handshake_sent:
            raise ValueError("handshake sent twice")
        self.handshake_sent = True
        return encode_handshake(self.content_hash, self.peer_id, self.max_block)

    def offer_extensions(self, names: frozenset[str]) -> None:
        """We are the offerer and listed `names` in the channel's protocol string."""
        self.offered = names

    def answer_extensions(self, protocol: str | None) -> None:
        """We answer a channel whose protocol string the offerer set to `protocol`."""
        self.remote_offered = offered_extensions(protocol)
        if self.remote_offered is not None:
            self.extensions = self.remote_offered & SUPPORTED_EXTENSIONS

    def extensions_message(self) -> bytes | None:
        """The EXTENSIONS an answerer sends right after its HANDSHAKE; None when the
        offerer listed no extension (it may be an old peer, which would drop us for it)."""
        if self.remote_offered is None or self.offered is not None:
            return None
        if not self.handshake_sent:
            raise ValueError("EXTENSIONS before our handshake")
        return encode_extensions(self.extensions)

    @property
    def speaks_pex(self) -> bool:
        """Both handshakes are done and both sides said they speak peer exchange."""
        return PEX in self.extensions and self.handshake_sent and self.remote is not None

    def _check_pex(self) -> None:
        if not self.speaks_pex:
            raise ValueError("peer exchange with a peer that did not negotiate it")

    def send_pex(self, peers: list[bytes]) -> bytes:
        self._check_pex()
        return encode_pex(peers)

    def send_relay(self, target: bytes, kind: int, payload: str) -> bytes:
        self._check_pex()
        return encode_relay(target, kind, payload)

    def send_relayed(self, source: bytes, kind: int, payload: str) -> bytes:
        self._check_pex()
        return encode_relayed(source, kind, payload)

    def _check_started(self, what: str) -> None:
        if not self.handshake_sent or self.remote is None:
            raise ValueError(f"{what} before both handshakes")

    def send_close(self, reason: str) -> bytes:
        """CLOSE may go at any time, even before a handshake (a refused connection)."""
        return encode_close(reason)

    def send_availability(self, have: set[int] | None) -> bytes:
        """BITFIELD of `have`, or HAVE_ALL for None; once, after the geometry is known."""
        self._check_started("availability")
        if self.geometry is None:
            raise ValueError("availability before the content is known")
        if self.availability_sent:
            raise ValueError("availability sent twice")
        self.availability_sent = True
        if have is None:
            return encode_have_all()
        return encode_bitfield(bitfield_from(have, self.geometry.piece_count))

    def send_have(self, piece: int) -> bytes:
        if not self.availability_sent:
            raise ValueError("HAVE before availability")
        assert self.geometry is not None
        if not 0 <= piece < self.geometry.piece_count:
            raise ValueError(f"HAVE of piece {piece} beyond the last piece")
        return encode_have(piece)

    def next_request(self) -> Block | None:
        """The remote's oldest unanswered request, now being served (None: none queued)."""
        if not self.requests:
            return None
        block = self.requests.popleft()
        self.serving[block] += 1
        return block

    def _take_request(self, block: Block) -> None:
        if self.serving[block]:
            self.serving[block] -= 1
            if not self.serving[block]:
                del self.serving[block]
            return
        self.serving.pop(block, None)  # a Counter lookup above may have added it
        try:
            self.requests.remove(block)
        except ValueError:
            raise ValueError(f"answer to block {block} nobody asked for") from None

    def send_piece(self, piece: int, offset: int, data: bytes | bytearray) -> bytes:
        """The PIECE message answering the remote's request for this block."""
        self._take_request((piece, offset, len(data)))
        return encode_piece_header(piece, offset) + data

    def send_reject(self, piece: int, offset: int, length: int) -> bytes:
        """REJECT a request we will not answer with data (queued or being served)."""
        self._take_request((piece, offset, length))
        return encode_reject(piece, offset, length)

    def send_manifest_request(self, offset: int, length: int) -> bytes:
        self._check_started("manifest request")
        self.manifest_wanted = (offset, length)
        return encode_manifest_request(offset, length)

    def manifest_answer(self, manifest: bytes | None) -> bytes:
        """The answer to the remote's pending MANIFEST_REQUEST, from `manifest` (None: we
        have none yet, total 0). Call `manifest_answered` once it is sent."""
        if self.manifest_asked is None:
            raise ValueError("no manifest request to answer")
        offset, length = self.manifest_asked
        if manifest is None:
            return encode_manifest_data(0, offset, b"")
        return encode_manifest_data(len(manifest), offset, manifest[offset : offset + length])

    def manifest_answered(self) -> None:
        """The answer is sent: the remote may ask for the next chunk."""
        self.manifest_asked = None

    def send_request(self, piece: int, offset: int, length: int) -> bytes:
        self._check_started("request")
        if length > self.max_block:
            raise ValueError("block longer than we advertised")
        self.outstanding.add((piece, offset, length))
        return encode_request(piece, offset, length)

    def send_cancel(self, piece: int, offset: int, length: int) -> bytes | None:
        block = (piece, offset, length)
        if block not in self.outstanding:
            return None
        self.outstanding.discard(block)
        self.cancelled[block] += 1
        return encode_cancel(piece, offset, length)

    def piece_message_limit(self) -> int:
        """The largest block the remote accepts from us."""
        return self.remote.max_block if self.remote else MIN_MAX_BLOCK

    # -- context

    def set_geometry(self, geometry: Geometry) -> None:
        self.geometry = geometry

    def set_local_manifest_size(self, size: int) -> None:
        """We now have a manifest of `size` bytes: it sets how often the remote may ask."""
        self.local_manifest_size = size

    # -- incoming

    def receive(self, data: bytes | str) -> Event:
        if isinstance(data, str):
            raise ProtocolError("text message on the binary protocol channel")
        if len(data) > MAX_MESSAGE:
            raise ProtocolError(f"message of {len(data)} bytes exceeds 256 KiB")
        if self.closed:
            raise ProtocolError("message after close")
        ev = decode(data)
        if self.remote is None:
            if not isinstance(ev, Handshake):
                if isinstance(ev, Closed):
                    self.closed = True
                    return ev
                raise ProtocolError("first message was not a handshake")
            if ev.version != PROTOCOL_VERSION:
                raise ProtocolError(f"peer speaks protocol version {ev.version}, we speak 1")
            if ev.content_hash != self.content_hash:
                raise ProtocolError("peer is sharing different content (content hash mismatch)")
            if not MIN_MAX_BLOCK <= ev.max_block <= MAX_BLOCK_LIMIT:
                raise ProtocolError(f"peer advertised block size {ev.max_block} out of range")
            self.remote = ev
            return ev
        if isinstance(ev, Handshake):
            raise ProtocolError("second handshake")
        self.received_since_handshake += 1
        if isinstance(ev, Closed):
            self.closed = True
        elif isinstance(ev, ManifestRequested):
            self._check_manifest_request(ev)
        elif isinstance(ev, ManifestData):
            self._check_manifest_data(ev)
        elif isinstance(ev, BitfieldReceived | HaveAllReceived):
            if self.remote_bitfield_seen:
                raise ProtocolError("second bitfield")
            self.remote_bitfield_seen = True
            if isinstance(ev, BitfieldReceived) and self.geometry is not None:
                bitfield_pieces(ev.bits, self.geometry.piece_count)
        elif isinstance(ev, HaveReceived):
            if self.geometry is not None and ev.piece >= self.geometry.piece_count:
                raise ProtocolError(f"HAVE for piece {ev.piece} beyond the last piece")
        elif isinstance(ev, BlockRequested):
            self._check_block(ev.piece, ev.offset, ev.length, limit=self.piece_message_limit())
            if len(self.requests) >= MAX_QUEUED_REQUESTS:
                raise ProtocolError("request flood")
            self.requests.append((ev.piece, ev.offset, ev.length))
        elif isinstance(ev, BlockCancelled):
            self._check_block(ev.piece, ev.offset, ev.length, limit=self.piece_message_limit())
            # A block already being read goes out anyway: the remote counts cancelled
            # blocks that may still arrive.
            with contextlib.suppress(ValueError):
                self.requests.remove((ev.piece, ev.offset, ev.length))
        elif isinstance(ev, BlockReceived):
            block = (ev.piece, ev.offset, len(ev.data))
            if not self._answered(block):
                raise ProtocolError(
                    f"unrequested data for piece {ev.piece} offset {ev.offset} "
                    f"({len(ev.data)} bytes)"
                )
        elif isinstance(ev, BlockRejected) and not self._answered((ev.piece, ev.offset, ev.length)):
            raise ProtocolError("reject for a block we did not request")
        elif isinstance(ev, ExtensionsAccepted):
            if (self.offered is None or self.received_since_handshake != 1
                    or not ev.names <= self.offered):
                raise ProtocolError("EXTENSIONS we did not ask for, or not right after "
                                    "the handshake")
            self.extensions = ev.names
        elif isinstance(ev, PexReceived | RelayRequested | RelayedSignal) and not self.speaks_pex:
            raise ProtocolError("peer exchange message without negotiating peer exchange")
        return ev

    def _answered(self, block: Block) -> bool:
        """Consume one request for `block` (PIECE or REJECT answer exactly one)."""
        if block in self.outstanding:
            self.outstanding.discard(block)
        elif block in self.cancelled:
            self.cancelled[block] -= 1
            if not self.cancelled[block]:
                del self.cancelled[block]
        else:
            return False
        return True

    def _check_block(self, piece: int, offset: int, length: int, *, limit: int) -> None:
        g = self.geometry
        if g is None:
            raise ProtocolError("block message before the content is known")
        if piece >= g.piece_count:
            raise ProtocolError(f"block of piece {piece}, beyond the last piece")
        if length == 0 or length > limit:
            raise ProtocolError(f"block of {length} bytes (limit {limit})")
        if offset + length > g.piece_length(piece):
            raise ProtocolError(f"block {offset}+{length} runs past the end of piece {piece}")

    def _check_manifest_request(self, ev: ManifestRequested) -> None:
        if ev.length == 0 or ev.length > MANIFEST_CHUNK:
            raise ProtocolError(f"manifest request of {ev.length} bytes")
        if self.manifest_asked is not None:
            # A requester waits for each answer; a second request is a flood of them.
            raise ProtocolError("manifest request before the previous one was answered")
        self.manifest_requests += 1
        limit = manifest_request_limit(self.local_manifest_size)
        if self.manifest_requests > limit:
            raise ProtocolError(
                f"asked for the manifest again and again (request {self.manifest_requests}, "
                f"limit {limit})"
            )
        self.manifest_asked = (ev.offset, ev.length)

    def _check_manifest_data(self, ev: ManifestData) -> None:
        if self.manifest_wanted is None:
            raise ProtocolError("manifest data nobody asked for")
        offset, length = self.manifest_wanted
        if self.manifest_size is not None and ev.total != self.manifest_size:
            raise ProtocolError("manifest size changed between chunks")
        if ev.offset != offset or len(ev.data) != min(length, max(ev.total - offset, 0)):
            raise ProtocolError("manifest data does not match the request")
        # total = 0 is "I don't have it yet", not a size: the peer may answer for real later.
        self.manifest_size = ev.total or None
        self.manifest_wanted = None
