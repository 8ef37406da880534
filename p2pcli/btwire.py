"""The BitTorrent peer wire protocol (sans-IO): BEP 3, BEP 10 and BEP 9 ut_metadata.

WebTorrent speaks plain BitTorrent over a WebRTC data channel used as a byte stream: a
data-channel message may hold part of a BitTorrent message or several. `BtProtocol`
therefore buffers what `receive_data` gets, cuts it into messages and returns events;
its methods build the bytes to send. Like `p2pcli.wire.PeerProtocol` it holds the peer to
what we asked for: a PIECE we did not REQUEST, metadata we did not ask for, an oversized
message or a handshake for other content raise `ProtocolError` (drop the peer).

ut_metadata (BEP 9) moves the info dictionary in 16 KiB pieces. `MetadataAssembler`
collects them from one peer and checks the whole against the info hash, so a peer
serving wrong metadata is caught before anything is read from it.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from dataclasses import dataclass

from .magnet import MAX_METADATA, MagnetError, bdecode_prefix, bencode

PSTR = b"BitTorrent protocol"
HANDSHAKE_LEN = 1 + len(PSTR) + 8 + 20 + 20  # 68
EXTENSION_BIT = (5, 0x10)  # reserved byte 5, bit 0x10: BEP 10 extension protocol
BLOCK = 16 * 1024  # what we request, and what WebTorrent and every client request
METADATA_PIECE = 16 * 1024  # BEP 9's fixed metadata piece size
# A REQUEST for more than this is refused. BEP 3 asks for 16 KiB; some clients ask 32 KiB
# and libtorrent tolerates up to 128 KiB, so we do too, no further.
MAX_REQUEST = 128 * 1024
# A message longer than this drops the peer. It covers a PIECE of MAX_REQUEST and a
# bitfield of 1M pieces; a bigger length prefix is a peer making us buffer without end.
MAX_MESSAGE = MAX_REQUEST + 128 * 1024
MAX_EXTENDED = 64 * 1024  # an extension handshake or ut_metadata header; plenty for either
MAX_QUEUED_REQUESTS = 512  # unanswered REQUESTs from one peer; more is a flood
CANCELLED_KEPT = 256
"""Cancelled blocks of ours still accepted should they come (4 MiB of them): a peer that
honours CANCEL never sends them, so without a bound every seek of a stream would leave its
read-ahead's entries in `_pending` for the connection's life."""
UT_METADATA = b"ut_metadata"
OUR_UT_METADATA_ID = 3  # the id peers use to send ut_metadata messages to us (BEP 10: ours)


class ProtocolError(Exception):
    """The remote peer broke the BitTorrent protocol; drop it with this reason."""


class Msg:
    CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD = 0, 1, 2, 3, 4, 5
    REQUEST, PIECE, CANCEL, PORT, EXTENDED = 6, 7, 8, 9, 20


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    info_hash: bytes
    "The content the peer offers (already checked to be ours)."
    peer_id: bytes
    "The peer's 20-byte id."
    extensions: bool
    "The peer speaks BEP 10 (reserved bit set)."


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Choke:
    pass


@dataclass(frozen=True)
class Unchoke:
    pass


@dataclass(frozen=True)
class Interested:
    pass


@dataclass(frozen=True)
class NotInterested:
    pass


@dataclass(frozen=True)
class Have:
    index: int
    "A piece the peer now has."


@dataclass(frozen=True)
class Bitfield:
    bits: bytes
    "One bit per piece, high bit first (validated once the piece count is known)."


@dataclass(frozen=True)
class Request:
    index: int
    "Piece index."
    begin: int
    "Offset in the piece."
    length: int
    "Bytes wanted (at most MAX_REQUEST)."


@dataclass(frozen=True)
class Piece:
    index: int
    "Piece index."
    begin: int
    "Offset in the piece."
    data: bytes
    "The block; exactly what we requested."


@dataclass(frozen=True)
class Cancel:
    index: int
    "Piece index of the REQUEST withdrawn."
    begin: int
    "Its offset."
    length: int
    "Its length."


@dataclass(frozen=True)
class ExtendedHandshake:
    ut_metadata: int | None
    "The id to send ut_metadata messages to the peer with; None: it does not speak it."
    metadata_size: int | None
    "Size of the info dict in bytes, if the peer has it."
    client: str
    "The peer's `v` (client name), for logs."


@dataclass(frozen=True)
class MetadataRequest:
    piece: int
    "The metadata piece the peer wants."


@dataclass(frozen=True)
class MetadataData:
    piece: int
    "The metadata piece carried."
    data: bytes
    "Its bytes (16 KiB except the last)."


@dataclass(frozen=True)
class MetadataReject:
    piece: int
    "The metadata piece the peer will not send."


Event = (
    Handshake
    | KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | ExtendedHandshake
    | MetadataRequest
    | MetadataData
    | MetadataReject
)


# -- encoding -------------------------------------------------------------------------------


def handshake(info_hash: bytes, peer_id: bytes) -> bytes:
    reserved = bytearray(8)
    reserved[EXTENSION_BIT[0]] |= EXTENSION_BIT[1]
    return bytes([len(PSTR)]) + PSTR + bytes(reserved) + info_hash + peer_id


def _msg(msg_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), msg_id) + payload


def keep_alive() -> bytes:
    return b"\0\0\0\0"


def choke() -> bytes:
    return _msg(Msg.CHOKE)


def unchoke() -> bytes:
    return _msg(Msg.UNCHOKE)


def interested() -> bytes:
    return _msg(Msg.INTERESTED)


def not_interested() -> bytes:
    return _msg(Msg.NOT_INTERESTED)


def have(index: int) -> bytes:
    return _msg(Msg.HAVE, struct.pack(">I", index))


def bitfield(bits: bytes) -> bytes:
    return _msg(Msg.BITFIELD, bits)


def request(index: int, begin: int, length: int) -> bytes:
    return _msg(Msg.REQUEST, struct.pack(">III", index, begin, length))


def piece(index: int, begin: int, data: bytes) -> bytes:
    return _msg(Msg.PIECE, struct.pack(">II", index, begin) + data)


def cancel(index: int, begin: int, length: int) -> bytes:
    return _msg(Msg.CANCEL, struct.pack(">III", index, begin, length))


def extended(ext_id: int, payload: bytes) -> bytes:
    return _msg(Msg.EXTENDED, bytes([ext_id]) + payload)


def extended_handshake(metadata_size: int | None, client: str = "p2p") -> bytes:
    d: dict[str, object] = {"m": {"ut_metadata": OUR_UT_METADATA_ID}, "v": client}
    if metadata_size is not None:
        d["metadata_size"] = metadata_size
    return extended(0, bencode(d))


def bits_of(have_pieces: list[bool] | tuple[bool, ...]) -> bytes:
    out = bytearray((len(have_pieces) + 7) // 8)
    for i, h in enumerate(have_pieces):
        if h:
            out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def has_bit(bits: bytes, index: int) -> bool:
    return bool(bits[index >> 3] & (0x80 >> (index & 7)))


# -- the per-peer state machine ------------------------------------------------------------


class BtProtocol:
    """One BitTorrent connection: received bytes in, events out; bytes to send built here.

    `num_pieces` is None until the metadata is known (a magnet fetch); a bitfield received
    before that is checked when `set_num_pieces` is called.
    """

    def __init__(self, info_hash: bytes, peer_id: bytes, num_pieces: int | None = None):
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.num_pieces = num_pieces
        self._buf = bytearray()
        self._got_handshake = False
        self._peer_extensions = False
        self.peer_ut_metadata: int | None = None
        # Our REQUESTs not yet answered, counted: a block cancelled (a stream's seek) and
        # asked again may be answered twice by a peer that ignores CANCEL, both expected.
        self._pending: dict[tuple[int, int, int], int] = {}
        self._cancelled: deque[tuple[int, int, int]] = deque()  # oldest first
        self._metadata_asked: set[int] = set()
        self._peer_requests = 0
        self._early_bits: bytes | None = None

    # -- sending (each returns bytes and records what the answer may be) --

    def handshake(self) -> bytes:
        return handshake(self.info_hash, self.peer_id)

    def request(self, index: int, begin: int, length: int) -> bytes:
        if not 0 < length <= MAX_REQUEST:
            raise ValueError(f"request length {length}")
        key = (index, begin, length)
        self._pending[key] = self._pending.get(key, 0) + 1
        return request(index, begin, length)

    def cancel(self, index: int, begin: int, length: int) -> bytes:
        # A PIECE may already be on its way; BEP 3 lets it arrive, so it stays expected,
        # but only while it is among the last CANCELLED_KEPT cancelled.
        key = (index, begin, length)
        if key in self._pending:
            self._cancelled.append(key)
            if len(self._cancelled) > CANCELLED_KEPT:
                self._expect_one_fewer(self._cancelled.popleft())
        return cancel(index, begin, length)

    def _expect_one_fewer(self, key: tuple[int, int, int]) -> None:
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def metadata_request(self, piece_no: int) -> bytes:
        if self.peer_ut_metadata is None:
            raise ValueError("the peer does not speak ut_metadata")
        self._metadata_asked.add(piece_no)
        return extended(self.peer_ut_metadata, bencode({"msg_type": 0, "piece": piece_no}))

    def metadata_data(self, piece_no: int, total: int, data: bytes) -> bytes:
        assert self.peer_ut_metadata is not None
        head = bencode({"msg_type": 1, "piece": piece_no, "total_size": total})
        return extended(self.peer_ut_metadata, head + data)

    def metadata_reject(self, piece_no: int) -> bytes:
        assert self.peer_ut_metadata is not None
        return extended(self.peer_ut_metadata, bencode({"msg_type": 2, "piece": piece_no}))

    def answered_request(self) -> None:
        """We sent a PIECE (or dropped a REQUEST after a CANCEL): one fewer queued."""
        self._peer_requests = max(0, self._peer_requests - 1)

    def set_num_pieces(self, n: int) -> list[Event]:
        """The metadata is known now; check a bitfield that came early."""
        self.num_pieces = n
        if self._early_bits is None:
            return []
        bits, self._early_bits = self._early_bits, None
        self._check_bits(bits)
        return [Bitfield(bits)]

    # -- receiving --

    def receive_data(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        if not self._got_handshake:
            if len(self._buf) < HANDSHAKE_LEN:
                if self._buf[:1] and self._buf[0] != len(PSTR):
                    raise ProtocolError(f"not a BitTorrent handshake: {bytes(self._buf[:20])!r}")
                return events
            events.append(self._handshake(bytes(self._buf[:HANDSHAKE_LEN])))
            del self._buf[:HANDSHAKE_LEN]
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf)
            if n > MAX_MESSAGE:
                raise ProtocolError(f"a {n}-byte message (limit {MAX_MESSAGE})")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            ev = self._message(body)
            if ev is not None:
                events.append(ev)
        return events

    def _handshake(self, data: bytes) -> Handshake:
        if data[0] != len(PSTR) or data[1:20] != PSTR:
            raise ProtocolError(f"not a BitTorrent handshake: {data[:20]!r}")
        info_hash, peer_id = data[28:48], data[48:68]
        if info_hash != self.info_hash:
            raise ProtocolError("the peer's handshake names other content")
        self._got_handshake = True
        self._peer_extensions = bool(data[20 + EXTENSION_BIT[0]] & EXTENSION_BIT[1])
        return Handshake(info_hash, peer_id, self._peer_extensions)

    def _message(self, body: bytes) -> Event | None:
        if not body:
            return KeepAlive()
        mid, p = body[0], body[1:]
        simple = {
            Msg.CHOKE: Choke,
            Msg.UNCHOKE: Unchoke,
            Msg.INTERESTED: Interested,
            Msg.NOT_INTERESTED: NotInterested,
        }
        if mid in simple:
            self._size(p, 0, mid)
            return simple[mid]()
        if mid == Msg.HAVE:
            self._size(p, 4, mid)
            (index,) = struct.unpack(">I", p)
            self._check_index(index)
            return Have(index)
        if mid == Msg.BITFIELD:
            if self.num_pieces is None:
                self._early_bits = p
                return None
            self._check_bits(p)
            return Bitfield(p)
        if mid in (Msg.REQUEST, Msg.CANCEL):
            self._size(p, 12, mid)
            index, begin, length = struct.unpack(">III", p)
            if mid == Msg.CANCEL:
                return Cancel(index, begin, length)
            if not 0 < length <= MAX_REQUEST:
                raise ProtocolError(f"a REQUEST for {length} bytes (limit {MAX_REQUEST})")
            self._check_index(index)
            self._peer_requests += 1
            if self._peer_requests > MAX_QUEUED_REQUESTS:
                raise ProtocolError(f"more than {MAX_QUEUED_REQUESTS} REQUESTs unanswered")
            return Request(index, begin, length)
        if mid == Msg.PIECE:
            if len(p) < 8:
                raise ProtocolError("a PIECE shorter than its header")
            index, begin = struct.unpack_from(">II", p)
            key = (index, begin, len(p) - 8)
            if key not in self._pending:
                raise ProtocolError(f"a PIECE we did not request ({index}, {begin}, {key[2]})")
            self._expect_one_fewer(key)
            if self._cancelled and key in self._cancelled:
                # Answered: it no longer counts against the cancelled ones kept (forgetting
                # it later would take a newer request's due answer).
                self._cancelled.remove(key)
            return Piece(index, begin, p[8:])
        if mid == Msg.EXTENDED:
            if not self._peer_extensions:
                raise ProtocolError("an extended message without the extension bit")
            if not p:
                raise ProtocolError("an empty extended message")
            return self._extended(p[0], p[1:])
        return None  # PORT, the fast extension, anything new: BEP 3 says ignore

    def _extended(self, ext_id: int, p: bytes) -> Event | None:
        if ext_id == 0:
            if len(p) > MAX_EXTENDED:
                raise ProtocolError("an oversized extension handshake")
            d = self._bdict(p, whole=True)
            m = d.get(b"m", {})
            if not isinstance(m, dict):
                raise ProtocolError("the extension handshake's m is not a dictionary")
            ut = m.get(UT_METADATA)
            self.peer_ut_metadata = ut if isinstance(ut, int) and 0 < ut < 256 else None
            size = d.get(b"metadata_size")
            if size is not None and (not isinstance(size, int) or not 0 < size <= MAX_METADATA):
                raise ProtocolError(f"metadata_size {size!r} is outside 1..{MAX_METADATA}")
            v = d.get(b"v", b"")
            client = v.decode("utf-8", "replace")[:64] if isinstance(v, bytes) else ""
            return ExtendedHandshake(self.peer_ut_metadata, size, client)
        if ext_id != OUR_UT_METADATA_ID:
            return None  # ut_pex and others we did not offer: ignore
        d, end = self._bdict_prefix(p)
        kind, piece_no = d.get(b"msg_type"), d.get(b"piece")
        if not isinstance(kind, int) or not isinstance(piece_no, int) or piece_no < 0:
            raise ProtocolError("a ut_metadata message without msg_type/piece")
        if piece_no > MAX_METADATA // METADATA_PIECE:
            raise ProtocolError(f"ut_metadata piece {piece_no} is beyond any metadata")
        if kind == 0:
            return MetadataRequest(piece_no)
        if kind in (1, 2):
            if piece_no not in self._metadata_asked:
                raise ProtocolError(f"ut_metadata piece {piece_no} that we did not ask for")
            self._metadata_asked.discard(piece_no)
            if kind == 2:
                return MetadataReject(piece_no)
            data = p[end:]
            if len(data) > METADATA_PIECE:
                raise ProtocolError("a ut_metadata piece over 16 KiB")
            return MetadataData(piece_no, data)
        return None  # a msg_type from a later BEP 9: ignore

    def _bdict(self, p: bytes, whole: bool) -> dict:
        d, end = self._bdict_prefix(p)
        if whole and end != len(p):
            raise ProtocolError("bytes after the extension handshake")
        return d

    def _bdict_prefix(self, p: bytes) -> tuple[dict, int]:
        try:
            d, end = bdecode_prefix(p[:MAX_EXTENDED])
        except MagnetError as e:
            raise ProtocolError(f"an extended message that is not bencode: {e}") from None
        if not isinstance(d, dict):
            raise ProtocolError("an extended message that is not a dictionary")
        return d, end

    def _size(self, p: bytes, n: int, mid: int) -> None:
        if len(p) != n:
            raise ProtocolError(f"message {mid} has {len(p)} payload bytes, not {n}")

    def _check_index(self, index: int) -> None:
        if self.num_pieces is not None and index >= self.num_pieces:
            raise ProtocolError(f"piece {index} is beyond the torrent's {self.num_pieces}")

    def _check_bits(self, bits: bytes) -> None:
        n = self.num_pieces
        assert n is not None
        if len(bits) != (n + 7) // 8:
            raise ProtocolError(f"a {len(bits)}-byte bitfield for {n} pieces")
        if n % 8 and bits and bits[-1] & (0xFF >> (n % 8)):
            raise ProtocolError("a bitfield with spare bits set")


class MetadataAssembler:
    """The info dict from ut_metadata pieces, checked against the info hash when whole."""

    def __init__(self, info_hash: bytes, size: int):
        if not 0 < size <= MAX_METADATA:
            raise ProtocolError(f"metadata_size {size} is outside 1..{MAX_METADATA}")
        self.info_hash = info_hash
        self.size = size
        self.count = -(-size // METADATA_PIECE)
        self._pieces: dict[int, bytes] = {}

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self._pieces]

    def add(self, piece_no: int, data: bytes) -> bytes | None:
        """Take one piece; return the verified info dict once all are here."""
        if piece_no >= self.count:
            raise ProtocolError(f"metadata piece {piece_no} of {self.count}")
        want = min(METADATA_PIECE, self.size - piece_no * METADATA_PIECE)
        if len(data) != want:
            raise ProtocolError(f"metadata piece {piece_no} is {len(data)} bytes, not {want}")
        self._pieces[piece_no] = data
        if len(self._pieces) < self.count:
            return None
        raw = b"".join(self._pieces[i] for i in range(self.count))
        if hashlib.sha1(raw).digest() != self.info_hash:
            raise ProtocolError("the peer's metadata does not match the info hash")
        return raw
