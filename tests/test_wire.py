"""The peer wire protocol: message codec, bitfields and the per-peer state machine.

docs/PROTOCOL.md section 3 is the specification. Expected bytes are assembled by hand with
struct, never with the encoders under test, and the message table is read from the doc
itself, so the code, the doc and these tests cannot drift apart silently.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pcli import wire
from p2pcli.wire import (
    DEFAULT_MAX_BLOCK,
    MANIFEST_CHUNK,
    MAX_BLOCK_LIMIT,
    MAX_REASON,
    MIN_MAX_BLOCK,
    BitfieldReceived,
    BlockCancelled,
    BlockReceived,
    BlockRejected,
    BlockRequested,
    Closed,
    Geometry,
    Handshake,
    HaveAllReceived,
    HaveReceived,
    ManifestData,
    ManifestRequested,
    MsgType,
    PeerProtocol,
    ProtocolError,
    bitfield_from,
    bitfield_pieces,
    decode,
)

KiB = 1 << 10
PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"

HASH = hashlib.sha256(b"the content").digest()
OTHER_HASH = hashlib.sha256(b"other content").digest()
OUR_ID = bytes(range(16))
THEIR_ID = bytes(range(16, 32))

# Three pieces of 32 KiB; the last is short (1000 bytes).
PIECE = 32 * KiB
GEOMETRY = Geometry(piece_count=3, piece_size=PIECE, size=2 * PIECE + 1000)
LAST = 2


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def raw_handshake(
    *,
    magic: bytes = b"P2PW",
    version: int = 1,
    content_hash: bytes = HASH,
    peer_id: bytes = THEIR_ID,
    max_block: int = DEFAULT_MAX_BLOCK,
) -> bytes:
    """HANDSHAKE assembled field by field from the table in docs/PROTOCOL.md."""
    return b"\x01" + magic + struct.pack(">B", version) + content_hash + peer_id + u32(max_block)


def connected(*, geometry: bool = True, their_max_block: int = DEFAULT_MAX_BLOCK) -> PeerProtocol:
    """Our side of a conversation after both handshakes."""
    p = PeerProtocol(HASH, OUR_ID)
    p.handshake()
    assert isinstance(p.receive(raw_handshake(max_block=their_max_block)), Handshake)
    if geometry:
        p.set_geometry(GEOMETRY)
    return p


# -- the message table in docs/PROTOCOL.md ----------------------------------------------------

# Example encodings of every message type, with the event each must decode to.
EXAMPLES: list[tuple[bytes, wire.Event]] = [
    (
        wire.encode_handshake(HASH, THEIR_ID, 64 * KiB),
        Handshake(version=1, content_hash=HASH, peer_id=THEIR_ID, max_block=64 * KiB),
    ),
    (wire.encode_close("done, thanks"), Closed("done, thanks")),
    (wire.encode_manifest_request(0, MANIFEST_CHUNK), ManifestRequested(0, MANIFEST_CHUNK)),
    (wire.encode_manifest_data(300, 256, b"tail"), ManifestData(300, 256, b"tail")),
    (wire.encode_bitfield(b"\xa0"), BitfieldReceived(b"\xa0")),
    (wire.encode_have_all(), HaveAllReceived()),
    (wire.encode_have(2), HaveReceived(2)),
    (wire.encode_request(1, 16 * KiB, 16 * KiB), BlockRequested(1, 16 * KiB, 16 * KiB)),
    (wire.encode_piece_header(1, 16 * KiB) + b"data", BlockReceived(1, 16 * KiB, b"data")),
    (wire.encode_cancel(1, 0, 16 * KiB), BlockCancelled(1, 0, 16 * KiB)),
    (wire.encode_reject(2, 0, 1000), BlockRejected(2, 0, 1000)),
    (wire.encode_extensions({"pex"}), wire.ExtensionsAccepted(frozenset({"pex"}))),
    (wire.encode_pex([OUR_ID, THEIR_ID]), wire.PexReceived((OUR_ID, THEIR_ID))),
    (wire.encode_relay(THEIR_ID, 1, "v=0"), wire.RelayRequested(THEIR_ID, 1, "v=0")),
    (wire.encode_relayed(OUR_ID, 3, "full"), wire.RelayedSignal(OUR_ID, 3, "full")),
]


def doc_message_table() -> dict[str, tuple[int, str]]:
    """{name: (type byte, fields text)} from the table in section 3.2 of docs/PROTOCOL.md."""
    rows = re.findall(
        r"^\| (0x[0-9A-Fa-f]{2}) \| ([A-Z_]+) \| (.*) \|$", PROTOCOL_MD.read_text(), re.M
    )
    return {name: (int(code, 16), fields) for code, name, fields in rows}


def doc_fixed_size(fields: str) -> int:
    """Bytes of fixed fields after the type byte, from the doc's notation: u8, u32, (n)."""
    size = 0
    for f in fields.split(","):
        if "u32" in f:
            size += 4
        elif "u8" in f:
            size += 1
        elif m := re.search(r"\((\d+)\)", f):
            size += int(m.group(1))
    return size


def test_the_doc_lists_every_message_type_with_the_codes_the_code_uses() -> None:
    table = doc_message_table()
    code_types = {k: v for k, v in vars(MsgType).items() if k.isupper()}
    assert {name: code for name, (code, _) in table.items()} == code_types


def test_the_examples_cover_every_message_type() -> None:
    assert sorted(data[0] for data, _ in EXAMPLES) == sorted(
        v for k, v in vars(MsgType).items() if k.isupper()
    )


@pytest.mark.parametrize(
    "name", ["HANDSHAKE", "MANIFEST_REQUEST", "HAVE_ALL", "HAVE", "REQUEST", "CANCEL", "REJECT"]
)
def test_fixed_size_messages_have_the_size_the_doc_gives(name: str) -> None:
    code, fields = doc_message_table()[name]
    (data,) = [d for d, _ in EXAMPLES if d[0] == code]
    assert len(data) == 1 + doc_fixed_size(fields)


@pytest.mark.parametrize("name", ["MANIFEST_DATA", "PIECE"])
def test_data_messages_have_the_header_the_doc_gives(name: str) -> None:
    code, fields = doc_message_table()[name]
    (data,) = [d for d, _ in EXAMPLES if d[0] == code]
    ev = decode(data)
    payload = ev.data  # type: ignore[union-attr]
    assert len(data) == 1 + doc_fixed_size(fields) + len(payload)


# -- codec: round trips and exact bytes --------------------------------------------------------


@pytest.mark.parametrize(("data", "event"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_type_round_trips(data: bytes, event: wire.Event) -> None:
    assert decode(data) == event


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = wire.encode_have(7)
    assert decode(bytearray(data)) == decode(memoryview(data)) == HaveReceived(7)


@given(
    piece=st.integers(0, 2**32 - 1),
    offset=st.integers(0, 2**32 - 1),
    length=st.integers(0, 2**32 - 1),
    data=st.binary(max_size=64),
)
def test_u32_fields_round_trip_over_their_whole_range(
    piece: int, offset: int, length: int, data: bytes
) -> None:
    fields = (piece, offset, length)
    assert decode(wire.encode_request(*fields)) == BlockRequested(*fields)
    assert decode(wire.encode_cancel(*fields)) == BlockCancelled(*fields)
    assert decode(wire.encode_reject(*fields)) == BlockRejected(*fields)
    assert decode(wire.encode_have(piece)) == HaveReceived(piece)
    assert decode(wire.encode_piece_header(piece, offset) + data) == BlockReceived(
        piece, offset, data
    )
    assert decode(wire.encode_manifest_data(piece, offset, data)) == ManifestData(
        piece, offset, data
    )
    assert decode(wire.encode_manifest_request(offset, length)) == ManifestRequested(offset, length)


def test_handshake_bytes_match_the_doc() -> None:
    # type 0x01, magic "P2PW", version u8 = 1, content hash (32), peer id (16), max_block u32
    expected = b"\x01" + b"P2PW" + b"\x01" + HASH + OUR_ID + struct.pack(">I", 128 * KiB)
    assert len(expected) == 58
    assert wire.encode_handshake(HASH, OUR_ID, 128 * KiB) == expected
    ours = PeerProtocol(HASH, OUR_ID).handshake()  # ours advertises 64 KiB
    assert ours == expected[:-4] + struct.pack(">I", 64 * KiB)


def test_request_cancel_reject_bytes_match_the_doc() -> None:
    fields = struct.pack(">III", 5, 49152, 16384)
    assert wire.encode_request(5, 49152, 16384) == b"\x08" + fields
    assert wire.encode_cancel(5, 49152, 16384) == b"\x0a" + fields
    assert wire.encode_reject(5, 49152, 16384) == b"\x0b" + fields


def test_piece_and_manifest_data_bytes_match_the_doc() -> None:
    assert wire.encode_piece_header(5, 49152) + b"xyz" == b"\x09" + u32(5) + u32(49152) + b"xyz"
    assert wire.encode_manifest_data(300, 256, b"ab") == b"\x04" + u32(300) + u32(256) + b"ab"
    assert wire.encode_manifest_request(64, 100) == b"\x03" + u32(64) + u32(100)


def test_have_have_all_close_and_bitfield_bytes_match_the_doc() -> None:
    assert wire.encode_have(0x01020304) == b"\x07\x01\x02\x03\x04"
    assert wire.encode_have_all() == b"\x06"
    assert wire.encode_close("bye") == b"\x02bye"
    # Piece 0 is the high bit of byte 0: pieces 0, 2 and 9 of 10.
    assert wire.encode_bitfield(bitfield_from({0, 2, 9}, 10)) == b"\x05" + bytes([0xA0, 0x40])


def test_close_reason_is_cut_to_512_bytes_of_valid_utf8() -> None:
    assert len(wire.encode_close("x" * 2000)) == 1 + MAX_REASON
    # A cut in the middle of a two-byte character must not leave half of it on the wire.
    reason = "a" + "é" * 400
    data = wire.encode_close(reason)
    assert len(data) <= 1 + MAX_REASON
    text = data[1:].decode("utf-8")  # strict: raises if the cut split a character
    assert reason.startswith(text) and len(text) == 256


def test_close_reason_may_hold_unencodable_text() -> None:
    # Reasons are built from error messages, which can carry undecodable file names.
    data = wire.encode_close("bad name \udcff")
    assert isinstance(decode(data), Closed)


def test_overlong_close_reason_is_read_up_to_512_bytes() -> None:
    assert decode(b"\x02" + b"r" * 600) == Closed("r" * MAX_REASON)


# -- codec: rejections -------------------------------------------------------------------------


def test_empty_message_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="empty"):
        decode(b"")


@pytest.mark.parametrize("t", [0x00, 0x10, 0x7F, 0xFF])
def test_unknown_message_type_is_rejected(t: int) -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(bytes([t]) + b"\x00" * 12)


FIXED = [
    d
    for d, _ in EXAMPLES
    if d[0] not in (MsgType.CLOSE, MsgType.MANIFEST_DATA, MsgType.BITFIELD, MsgType.PIECE)
    and d[0] < MsgType.EXTENSIONS  # the extensions' messages have variable parts
]


@pytest.mark.parametrize("data", FIXED, ids=lambda d: f"type{d[0]:#04x}")
def test_fixed_size_message_with_a_byte_missing_or_extra_is_rejected(data: bytes) -> None:
    if len(data) > 1:
        with pytest.raises(ProtocolError):
            decode(data[:-1])
    with pytest.raises(ProtocolError):
        decode(data + b"\x00")


@pytest.mark.parametrize("t", [MsgType.MANIFEST_DATA, MsgType.PIECE])
def test_data_message_shorter_than_its_header_is_rejected(t: int) -> None:
    for n in range(8):  # the fixed fields after the type byte are 8 bytes
        with pytest.raises(ProtocolError, match="truncated"):
            decode(bytes([t]) + b"\x00" * n)


def test_handshake_with_bad_magic_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="magic"):
        decode(raw_handshake(magic=b"P2PM"))


@pytest.mark.parametrize("text", ["hello", "", "\x01P2PW"])
def test_text_message_is_rejected(text: str) -> None:
    with pytest.raises(ProtocolError, match="text message"):
        decode(text)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="text message"):
        connected().receive(text)  # type: ignore[arg-type]


# Bytes that look like messages often: a known type byte, then anything.
typed_bytes = st.builds(
    lambda t, rest: bytes([t]) + rest, st.integers(0, 0x0C), st.binary(max_size=80)
)
any_message = st.one_of(st.binary(max_size=80), typed_bytes)


@given(any_message)
def test_decode_of_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        ev = decode(data)
    except ProtocolError:
        return
    assert type(ev) in {type(e) for _, e in EXAMPLES}


# -- bitfields ---------------------------------------------------------------------------------


@given(
    st.integers(0, 200).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)) if n else st.just(set()))
    )
)
def test_bitfield_round_trips(case: tuple[int, set[int]]) -> None:
    count, pieces = case
    bits = bitfield_from(pieces, count)
    assert len(bits) == (count + 7) // 8
    assert bitfield_pieces(bits, count) == pieces
    flags = [i in pieces for i in range(count)]
    assert bitfield_from(flags, count) == bits


def test_bitfield_puts_piece_0_in_the_high_bit() -> None:
    assert bitfield_from({0}, 1) == b"\x80"
    assert bitfield_from({7, 8}, 9) == b"\x01\x80"
    assert bitfield_pieces(b"\x01\x80", 9) == {7, 8}
    assert bitfield_from(set(), 0) == b""
    assert bitfield_pieces(b"", 0) == set()


@pytest.mark.parametrize(
    ("bits", "count"), [(b"", 1), (b"\x00", 0), (b"\x00", 9), (b"\x00\x00", 8)]
)
def test_bitfield_of_the_wrong_length_is_rejected(bits: bytes, count: int) -> None:
    with pytest.raises(ProtocolError, match="bitfield of"):
        bitfield_pieces(bits, count)


@given(count=st.integers(1, 100).filter(lambda n: n % 8), data=st.data())
def test_bitfield_with_any_spare_bit_set_is_rejected(count: int, data: st.DataObject) -> None:
    spare = data.draw(st.integers(count % 8, 7))
    bits = bytearray(bitfield_from(set(), count))
    bits[-1] |= 0x80 >> spare
    with pytest.raises(ProtocolError, match="spare bits"):
        bitfield_pieces(bytes(bits), count)


# -- PeerProtocol: the handshake ---------------------------------------------------------------


def test_valid_handshake_is_accepted_and_remembered() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    ev = p.receive(raw_handshake(max_block=64 * KiB))
    assert ev == Handshake(1, HASH, THEIR_ID, 64 * KiB)
    assert p.remote == ev
    assert p.piece_message_limit() == 64 * KiB


@pytest.mark.parametrize(
    "data",
    [
        wire.encode_have_all(),
        wire.encode_bitfield(b"\x00"),
        wire.encode_request(0, 0, 16 * KiB),
        wire.encode_manifest_request(0, 100),
        wire.encode_piece_header(0, 0) + b"x",
    ],
    ids=lambda d: f"type{d[0]:#04x}",
)
def test_first_message_must_be_a_handshake(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="first message"):
        PeerProtocol(HASH, OUR_ID).receive(data)


def test_close_may_come_before_the_handshake() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    assert p.receive(wire.encode_close("busy")) == Closed("busy")
    assert p.closed
    with pytest.raises(ProtocolError, match="after close"):
        p.receive(raw_handshake())


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_protocol_version_is_rejected(version: int) -> None:
    with pytest.raises(ProtocolError, match="version"):
        PeerProtocol(HASH, OUR_ID).receive(raw_handshake(version=version))


def test_handshake_about_other_content_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="content hash mismatch"):
        PeerProtocol(HASH, OUR_ID).receive(raw_handshake(content_hash=OTHER_HASH))


@pytest.mark.parametrize("max_block", [0, MIN_MAX_BLOCK - 1, MAX_BLOCK_LIMIT + 1, 2**32 - 1])
def test_max_block_out_of_range_is_rejected(max_block: int) -> None:
    with pytest.raises(ProtocolError, match="block size"):
        PeerProtocol(HASH, OUR_ID).receive(raw_handshake(max_block=max_block))


@pytest.mark.parametrize("max_block", [16 * KiB, 128 * KiB, 256 * KiB - 64])
def test_max_block_range_is_inclusive(max_block: int) -> None:
    # The doc's 16 KiB .. 256 KiB - 64, both ends included.
    PeerProtocol(HASH, OUR_ID).receive(raw_handshake(max_block=max_block))


def test_second_handshake_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="second handshake"):
        connected().receive(raw_handshake())


def test_message_after_close_is_rejected() -> None:
    p = connected()
    assert p.receive(wire.encode_close("bye")) == Closed("bye")
    with pytest.raises(ProtocolError, match="after close"):
        p.receive(wire.encode_have(0))


# -- PeerProtocol: requests from the remote ----------------------------------------------------


@pytest.mark.parametrize("make", [wire.encode_request, wire.encode_cancel])
def test_block_messages_before_the_content_is_known_are_rejected(make) -> None:
    with pytest.raises(ProtocolError, match="before the content is known"):
        connected(geometry=False).receive(make(0, 0, 16 * KiB))


@pytest.mark.parametrize("make", [wire.encode_request, wire.encode_cancel])
def test_valid_requests_and_cancels_are_accepted(make) -> None:
    p = connected()
    ev = p.receive(make(1, 16 * KiB, 16 * KiB))
    assert (ev.piece, ev.offset, ev.length) == (1, 16 * KiB, 16 * KiB)
    # The whole of the short last piece, and its last byte alone.
    assert p.receive(make(LAST, 0, 1000)).length == 1000
    assert p.receive(make(LAST, 999, 1)).offset == 999


@pytest.mark.parametrize("make", [wire.encode_request, wire.encode_cancel])
@pytest.mark.parametrize(
    ("piece", "offset", "length", "why"),
    [
        (3, 0, 16 * KiB, "beyond the last piece"),
        (2**32 - 1, 0, 1, "beyond the last piece"),
        (0, 16 * KiB + 1, 16 * KiB, "runs past the end"),
        (LAST, 0, 1001, "runs past the end"),
        (LAST, 1000, 1, "runs past the end"),
        (0, 2**32 - 1, 1, "runs past the end"),
        (0, 0, 0, "0 bytes"),
    ],
)
def test_invalid_block_requests_are_rejected(make, piece, offset, length, why) -> None:
    with pytest.raises(ProtocolError, match=why):
        connected().receive(make(piece, offset, length))


def test_request_longer_than_the_requesters_own_max_block_is_rejected() -> None:
    # The requester advertised 16 KiB: it may not ask for more than it agreed to receive.
    p = connected(their_max_block=16 * KiB)
    assert p.receive(wire.encode_request(0, 0, 16 * KiB)) == BlockRequested(0, 0, 16 * KiB)
    with pytest.raises(ProtocolError, match="limit 16384"):
        p.receive(wire.encode_request(0, 0, 16 * KiB + 1))


@pytest.mark.parametrize("length", [0, MANIFEST_CHUNK + 1])
def test_manifest_request_length_out_of_range_is_rejected(length: int) -> None:
    with pytest.raises(ProtocolError, match="manifest request"):
        connected().receive(wire.encode_manifest_request(0, length))


def test_manifest_request_in_range_is_accepted_even_without_geometry() -> None:
    assert MANIFEST_CHUNK == 65472  # the doc's 1..65472
    p = connected(geometry=False)
    assert p.receive(wire.encode_manifest_request(0, 1)) == ManifestRequested(0, 1)
    p.manifest_answered()
    assert p.receive(wire.encode_manifest_request(9, MANIFEST_CHUNK)) == ManifestRequested(
        9, MANIFEST_CHUNK
    )


# -- PeerProtocol: serving the manifest (issue 12 item 8) --------------------------------------

# Manifest sizes around the chunk boundaries, and None: we have no manifest yet.
MANIFEST_SIZES = [None, 1, 100, MANIFEST_CHUNK - 1, MANIFEST_CHUNK, MANIFEST_CHUNK + 1,
                  5 * MANIFEST_CHUNK + 7, 16 << 20]


def serving(size: int | None) -> PeerProtocol:
    p = connected(geometry=False)
    if size is not None:
        p.set_local_manifest_size(size)
    return p


def read_through(p: PeerProtocol, manifest: bytes | None, *, chunk: int = MANIFEST_CHUNK) -> int:
    """Read the manifest chunk by chunk, as a requester should; returns requests sent."""
    offset, n = 0, 0
    while True:
        p.receive(wire.encode_manifest_request(offset, chunk))
        answer = decode(p.manifest_answer(manifest))
        p.manifest_answered()
        n += 1
        assert isinstance(answer, ManifestData)
        offset += len(answer.data)
        if not answer.total or offset >= answer.total:
            return n


@pytest.mark.parametrize("size", MANIFEST_SIZES)
def test_a_requester_may_read_the_manifest_twice_but_not_again_and_again(size) -> None:
    manifest = None if size is None else bytes(size)
    p = serving(size)
    sent = read_through(p, manifest) + read_through(p, manifest)
    limit = wire.manifest_request_limit(size)
    assert sent <= limit
    # Whatever else it asks for, it is cut off at the limit: the answers it can draw are
    # bounded by a few reads of the manifest, not by how many 9-byte requests it sends.
    with pytest.raises(ProtocolError, match="manifest again and again"):
        for _ in range(limit - sent + 1):
            p.receive(wire.encode_manifest_request(0, MANIFEST_CHUNK))
            p.manifest_answered()


@pytest.mark.parametrize("size", MANIFEST_SIZES)
def test_a_second_manifest_request_before_the_answer_is_a_flood(size) -> None:
    p = serving(size)
    p.receive(wire.encode_manifest_request(0, 100))
    with pytest.raises(ProtocolError, match="before the previous one was answered"):
        p.receive(wire.encode_manifest_request(0, 100))


def test_the_answer_is_sent_only_once_built_and_clipped_to_the_manifest() -> None:
    p = serving(150)
    with pytest.raises(ValueError):
        p.manifest_answer(bytes(150))  # nothing was asked
    p.receive(wire.encode_manifest_request(100, 100))
    assert decode(p.manifest_answer(bytes(range(150)))) == ManifestData(
        150, 100, bytes(range(100, 150))
    )
    assert decode(p.manifest_answer(None)) == ManifestData(0, 100, b"")
    # Building it twice (a retry) does not count as a second request.
    p.manifest_answered()
    p.receive(wire.encode_manifest_request(0, 100))


def test_the_budget_grows_when_our_manifest_arrives() -> None:
    # Before we have one, a requester hears "not yet" and asks again later; once we have
    # a big one, reading it takes many more requests than the "not yet" budget.
    p = serving(None)
    read_through(p, None)
    p.set_local_manifest_size(5 * MANIFEST_CHUNK)
    read_through(p, bytes(5 * MANIFEST_CHUNK))
    read_through(p, bytes(5 * MANIFEST_CHUNK))


@given(st.lists(st.integers(1, MANIFEST_CHUNK), min_size=1, max_size=3000))
def test_no_request_pattern_draws_more_than_the_budget(lengths: list[int]) -> None:
    size = 3 * MANIFEST_CHUNK + 11
    manifest = bytes(size)
    p = serving(size)
    drawn = 0
    try:
        for i, length in enumerate(lengths):
            p.receive(wire.encode_manifest_request((i * 7919) % size, length))
            drawn += len(decode(p.manifest_answer(manifest)).data)
            p.manifest_answered()
    except ProtocolError:
        pass
    # Two reads of the manifest and a few chunks: never a multiple of the requests sent.
    assert drawn <= 2 * (size + MANIFEST_CHUNK) + wire.MANIFEST_REQUEST_SLACK * MANIFEST_CHUNK


# -- PeerProtocol: data we asked for -----------------------------------------------------------


def test_requested_piece_data_is_accepted_once() -> None:
    p = connected()
    p.send_request(0, 16 * KiB, 16 * KiB)
    data = wire.encode_piece_header(0, 16 * KiB) + b"\x00" * (16 * KiB)
    assert p.receive(data) == BlockReceived(0, 16 * KiB, b"\x00" * (16 * KiB))
    with pytest.raises(ProtocolError, match="unrequested data"):
        p.receive(data)


def test_unrequested_piece_data_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="unrequested data"):
        connected().receive(wire.encode_piece_header(0, 0) + b"x" * 100)


def test_piece_data_of_another_length_than_requested_is_rejected() -> None:
    p = connected()
    p.send_request(0, 0, 16 * KiB)
    with pytest.raises(ProtocolError, match="unrequested data"):
        p.receive(wire.encode_piece_header(0, 0) + b"x" * (16 * KiB - 1))


def test_piece_data_after_our_cancel_is_accepted_once() -> None:
    p = connected()
    p.send_request(1, 0, 16 * KiB)
    assert p.send_cancel(1, 0, 16 * KiB) == b"\x0a" + struct.pack(">III", 1, 0, 16 * KiB)
    data = wire.encode_piece_header(1, 0) + b"y" * (16 * KiB)
    assert isinstance(p.receive(data), BlockReceived)  # it was already on its way
    with pytest.raises(ProtocolError, match="unrequested data"):
        p.receive(data)


def test_cancel_of_a_block_not_outstanding_sends_nothing() -> None:
    p = connected()
    assert p.send_cancel(0, 0, 16 * KiB) is None
    p.send_request(0, 0, 16 * KiB)
    p.receive(wire.encode_piece_header(0, 0) + b"z" * (16 * KiB))
    assert p.send_cancel(0, 0, 16 * KiB) is None  # already answered


def test_reject_answers_a_request_or_a_cancelled_one() -> None:
    p = connected()
    p.send_request(0, 0, 16 * KiB)
    p.send_request(1, 0, 16 * KiB)
    p.send_cancel(1, 0, 16 * KiB)
    assert p.receive(wire.encode_reject(0, 0, 16 * KiB)) == BlockRejected(0, 0, 16 * KiB)
    assert p.receive(wire.encode_reject(1, 0, 16 * KiB)) == BlockRejected(1, 0, 16 * KiB)
    # Once rejected, neither block may be answered again.
    with pytest.raises(ProtocolError, match="unrequested data"):
        p.receive(wire.encode_piece_header(0, 0) + b"x" * (16 * KiB))


def test_reject_for_a_block_we_did_not_request_is_rejected() -> None:
    p = connected()
    p.send_request(0, 0, 16 * KiB)
    with pytest.raises(ProtocolError, match="did not request"):
        p.receive(wire.encode_reject(0, 16 * KiB, 16 * KiB))


def test_we_may_not_ask_for_blocks_larger_than_we_advertised() -> None:
    p = connected()
    p.send_request(0, 0, DEFAULT_MAX_BLOCK)
    with pytest.raises(ValueError):
        p.send_request(0, 0, DEFAULT_MAX_BLOCK + 1)


# -- PeerProtocol: availability ----------------------------------------------------------------


@pytest.mark.parametrize(
    "first", [wire.encode_bitfield(b"\xe0"), wire.encode_have_all()], ids=["bitfield", "have_all"]
)
@pytest.mark.parametrize(
    "second", [wire.encode_bitfield(b"\x00"), wire.encode_have_all()], ids=["bitfield", "have_all"]
)
def test_availability_is_announced_once(first: bytes, second: bytes) -> None:
    p = connected()
    p.receive(first)
    with pytest.raises(ProtocolError, match="second bitfield"):
        p.receive(second)


@pytest.mark.parametrize(
    ("bits", "why"),
    [(b"", "bitfield of 0 bytes"), (b"\x00\x00", "bitfield of 2 bytes"), (b"\x10", "spare")],
)
def test_bitfield_length_and_spare_bits_are_checked_against_the_content(
    bits: bytes, why: str
) -> None:
    with pytest.raises(ProtocolError, match=why):
        connected().receive(wire.encode_bitfield(bits))


def test_bitfield_before_the_content_is_known_is_kept_for_later() -> None:
    # Without the manifest the piece count is unknown; the swarm checks it once it knows.
    assert connected(geometry=False).receive(wire.encode_bitfield(b"\xff\xff")) == (
        BitfieldReceived(b"\xff\xff")
    )


def test_have_beyond_the_last_piece_is_rejected() -> None:
    p = connected()
    assert p.receive(wire.encode_have(LAST)) == HaveReceived(LAST)
    with pytest.raises(ProtocolError, match="beyond the last piece"):
        p.receive(wire.encode_have(LAST + 1))


# -- PeerProtocol: fetching the manifest -------------------------------------------------------


def test_manifest_data_nobody_asked_for_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="nobody asked"):
        connected(geometry=False).receive(wire.encode_manifest_data(10, 0, b"x" * 10))


def test_manifest_chunks_must_match_the_outstanding_request() -> None:
    p = connected(geometry=False)
    p.send_manifest_request(0, 100)
    assert p.receive(wire.encode_manifest_data(150, 0, b"a" * 100)) == ManifestData(
        150, 0, b"a" * 100
    )
    # The second chunk is clipped to the end of the manifest.
    p.send_manifest_request(100, 100)
    assert p.receive(wire.encode_manifest_data(150, 100, b"b" * 50)).data == b"b" * 50
    # One answer per request.
    with pytest.raises(ProtocolError, match="nobody asked"):
        p.receive(wire.encode_manifest_data(150, 100, b"b" * 50))


@pytest.mark.parametrize(
    ("total", "offset", "data"),
    [
        (1000, 100, b"x" * 100),  # wrong offset
        (1000, 0, b"x" * 99),  # short although more is left
        (1000, 0, b"x" * 101),  # more than asked for
        (50, 0, b"x" * 51),  # more than the manifest holds
    ],
)
def test_manifest_data_not_matching_the_request_is_rejected(
    total: int, offset: int, data: bytes
) -> None:
    p = connected(geometry=False)
    p.send_manifest_request(0, 100)
    with pytest.raises(ProtocolError, match="does not match the request"):
        p.receive(wire.encode_manifest_data(total, offset, data))


def test_manifest_size_may_not_change_between_chunks() -> None:
    p = connected(geometry=False)
    p.send_manifest_request(0, 100)
    p.receive(wire.encode_manifest_data(150, 0, b"a" * 100))
    p.send_manifest_request(100, 100)
    with pytest.raises(ProtocolError, match="size changed"):
        p.receive(wire.encode_manifest_data(160, 100, b"b" * 60))


def test_peer_without_the_manifest_yet_may_answer_later() -> None:
    # PROTOCOL.md 3.3.3: total = 0 means "I don't have it yet"; ask again after its
    # BITFIELD/HAVE_ALL, and then the real answer is accepted.
    p = connected(geometry=False)
    p.send_manifest_request(0, MANIFEST_CHUNK)
    assert p.receive(wire.encode_manifest_data(0, 0, b"")) == ManifestData(0, 0, b"")
    p.receive(wire.encode_have_all())
    p.send_manifest_request(0, MANIFEST_CHUNK)
    assert p.receive(wire.encode_manifest_data(150, 0, b"m" * 150)).total == 150


def test_not_having_the_manifest_yet_comes_without_data() -> None:
    p = connected(geometry=False)
    p.send_manifest_request(0, MANIFEST_CHUNK)
    with pytest.raises(ProtocolError, match="does not match the request"):
        p.receive(wire.encode_manifest_data(0, 0, b"x"))


# -- PeerProtocol: hostile input ---------------------------------------------------------------

# Messages near the valid ones (small pieces, offsets and lengths around the geometry's
# edges), so the checks past decoding get exercised, mixed with arbitrary bytes.
_idx = st.integers(0, 4)
_off = st.sampled_from([0, 1, 999, 1000, 16 * KiB, PIECE - 1, PIECE, 2**32 - 1])
_len = st.sampled_from([0, 1, 1000, 16 * KiB, 16 * KiB + 1, DEFAULT_MAX_BLOCK + 1, 2**32 - 1])
near_valid = st.one_of(
    st.builds(wire.encode_request, _idx, _off, _len),
    st.builds(wire.encode_cancel, _idx, _off, _len),
    st.builds(wire.encode_reject, _idx, _off, _len),
    st.builds(wire.encode_have, _idx),
    st.builds(wire.encode_bitfield, st.binary(max_size=2)),
    st.just(wire.encode_have_all()),
    st.builds(wire.encode_manifest_request, _off, _len),
    st.builds(
        wire.encode_manifest_data, st.integers(0, 200), st.integers(0, 200), st.binary(max_size=120)
    ),
    st.builds(
        lambda p, o, n: wire.encode_piece_header(p, o) + b"\x00" * n,
        _idx,
        st.sampled_from([0, 16 * KiB]),
        st.sampled_from([0, 1, 1000, 16 * KiB]),
    ),
    st.builds(wire.encode_close, st.text(max_size=20)),
    st.just(raw_handshake()),
    any_message,
)


@given(st.lists(near_valid, max_size=30))
def test_receive_on_any_message_sequence_raises_only_protocol_error(msgs: list[bytes]) -> None:
    p = connected()
    # Something outstanding, so that answers can be legitimate too.
    p.send_request(0, 0, 16 * KiB)
    p.send_request(LAST, 0, 1000)
    p.send_request(1, 16 * KiB, 16 * KiB)
    p.send_cancel(1, 16 * KiB, 16 * KiB)
    p.send_manifest_request(0, 100)
    for data in msgs:
        try:
            ev = p.receive(data)
        except ProtocolError:
            return  # the swarm drops the peer here
        assert ev == decode(data)


def test_every_request_may_be_answered_once_even_when_cancelled_repeatedly() -> None:
    # A slow peer's block can time out, be asked again, and time out again: each of those
    # requests may already be on its way back, so each answer is accepted once.
    p = connected()
    block = (0, 0, 16 * KiB)
    data = wire.encode_piece_header(0, 0) + b"d" * (16 * KiB)
    p.send_request(*block)
    p.send_cancel(*block)
    p.send_request(*block)
    p.send_cancel(*block)
    p.send_request(*block)
    for _ in range(3):
        assert isinstance(p.receive(data), BlockReceived)
    with pytest.raises(ProtocolError, match="unrequested data"):
        p.receive(data)


def test_a_reject_answers_one_request_only() -> None:
    p = connected()
    block = (0, 0, 16 * KiB)
    p.send_request(*block)
    p.send_cancel(*block)
    p.send_request(*block)
    assert p.receive(wire.encode_reject(*block)) == BlockRejected(*block)
    assert isinstance(p.receive(wire.encode_piece_header(0, 0) + b"d" * (16 * KiB)), BlockReceived)
    with pytest.raises(ProtocolError, match="did not request"):
        p.receive(wire.encode_reject(*block))


# -- what we send is checked too (issue 13: every message goes through PeerProtocol) ---------


def test_nothing_but_close_goes_before_both_handshakes() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    assert p.send_close("busy: full") == wire.encode_close("busy: full")
    with pytest.raises(ValueError, match="before both handshakes"):
        p.send_request(0, 0, 16 * KiB)
    p.handshake()
    with pytest.raises(ValueError, match="before both handshakes"):
        p.send_manifest_request(0, MANIFEST_CHUNK)
    with pytest.raises(ValueError, match="twice"):
        p.handshake()


def test_availability_goes_once_after_the_geometry_and_before_any_have() -> None:
    p = connected(geometry=False)
    with pytest.raises(ValueError, match="HAVE before availability"):
        p.send_have(0)
    with pytest.raises(ValueError, match="content is known"):
        p.send_availability(None)
    p.set_geometry(GEOMETRY)
    assert p.send_availability({0}) == wire.encode_bitfield(
        wire.bitfield_from({0}, GEOMETRY.piece_count))
    with pytest.raises(ValueError, match="sent twice"):
        p.send_availability(None)
    assert p.send_have(1) == wire.encode_have(1)
    with pytest.raises(ValueError, match="beyond the last piece"):
        p.send_have(GEOMETRY.piece_count)


def test_a_piece_or_reject_answers_only_a_request_the_remote_made() -> None:
    p = connected()
    block = (0, 0, 16 * KiB)
    with pytest.raises(ValueError, match="nobody asked for"):
        p.send_piece(0, 0, b"x" * (16 * KiB))
    p.receive(wire.encode_request(*block))
    p.receive(wire.encode_request(1, 0, 16 * KiB))
    assert p.next_request() == block  # oldest first
    assert p.send_piece(0, 0, b"x" * (16 * KiB)).startswith(wire.encode_piece_header(0, 0))
    with pytest.raises(ValueError, match="nobody asked for"):
        p.send_piece(0, 0, b"x" * (16 * KiB))  # answered already
    assert p.send_reject(1, 0, 16 * KiB) == wire.encode_reject(1, 0, 16 * KiB)  # still queued
    assert p.next_request() is None


def test_a_cancel_unqueues_a_request_but_not_one_being_read() -> None:
    p = connected()
    a, b = (0, 0, 16 * KiB), (1, 0, 16 * KiB)
    p.receive(wire.encode_request(*a))
    p.receive(wire.encode_request(*b))
    assert p.next_request() == a
    p.receive(wire.encode_cancel(*a))  # already being read: it still goes (PROTOCOL.md)
    p.receive(wire.encode_cancel(*b))
    assert p.next_request() is None
    p.send_piece(0, 0, b"x" * (16 * KiB))


def test_a_request_flood_is_a_protocol_error() -> None:
    p = connected()
    for i in range(wire.MAX_QUEUED_REQUESTS):
        p.receive(wire.encode_request(i % 2, 0, 1024))
    with pytest.raises(ProtocolError, match="request flood"):
        p.receive(wire.encode_request(0, 0, 1024))


@pytest.mark.parametrize("data", ["text", b"\x07" + bytes(wire.MAX_MESSAGE)])
def test_text_and_oversized_messages_are_protocol_errors(data: bytes | str) -> None:
    with pytest.raises(ProtocolError):
        connected().receive(data)


# -- extensions and peer exchange (PROTOCOL.md 3.5) --------------------------------------------


def test_extension_messages_have_the_layout_the_doc_gives() -> None:
    assert wire.encode_extensions({"pex"}) == b"\x0cpex"
    assert wire.encode_pex([OUR_ID]) == b"\x0d" + OUR_ID
    assert wire.encode_relay(THEIR_ID, 2, "sdp") == b"\x0e" + THEIR_ID + b"\x02sdp"
    assert wire.encode_relayed(OUR_ID, 1, "é") == b"\x0f" + OUR_ID + b"\x01" + "é".encode()


def test_the_channel_protocol_string_lists_extensions_after_p2p_1() -> None:
    assert wire.channel_protocol(frozenset()) == "p2p/1"
    assert wire.channel_protocol({"pex"}) == "p2p/1 pex"
    assert wire.offered_extensions("p2p/1 pex zzz") == {"pex", "zzz"}
    for plain in ("p2p/1", "", None, "p2p/2 pex", "p2p/1pex"):
        assert wire.offered_extensions(plain) is None


@pytest.mark.parametrize("data", [
    b"\x0d" + OUR_ID + b"x",  # not a whole number of ids
    b"\x0d" + b"".join(bytes([i]) * 16 for i in range(51)),  # 51 ids
    b"\x0d" + OUR_ID + OUR_ID,  # the same id twice
    b"\x0e" + THEIR_ID,  # no kind
    b"\x0e" + THEIR_ID + b"\x04sdp",  # unknown kind
    b"\x0f" + THEIR_ID + b"\x01" + b"a" * (16 * KiB + 1),  # SDP over 16 KiB
    b"\x0f" + THEIR_ID + b"\x03" + b"a" * 513,  # busy reason over 512 bytes
    b"\x0e" + THEIR_ID + b"\x01\xff",  # not UTF-8
    b"\x0c" + b"p" * 257,  # extension names over 256 bytes
    b"\x0c\xe9",  # not ASCII
])
def test_malformed_extension_messages_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


def test_encoders_refuse_what_the_limits_forbid() -> None:
    with pytest.raises(ValueError):
        wire.encode_pex([bytes([i]) * 16 for i in range(51)])
    with pytest.raises(ValueError):
        wire.encode_relay(THEIR_ID, 1, "a" * (16 * KiB + 1))
    with pytest.raises(ValueError):
        wire.encode_relayed(THEIR_ID, 9, "")


def offerer_speaking_pex() -> PeerProtocol:
    p = PeerProtocol(HASH, OUR_ID)
    p.offer_extensions(frozenset({"pex"}))
    p.handshake()
    p.receive(raw_handshake())
    return p


def test_an_answerer_says_which_offered_extensions_it_speaks_right_after_its_handshake() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    p.answer_extensions("p2p/1 pex future")
    p.handshake()
    assert decode(p.extensions_message()) == wire.ExtensionsAccepted(frozenset({"pex"}))
    p.receive(raw_handshake())
    assert p.speaks_pex
    assert isinstance(p.receive(wire.encode_pex([THEIR_ID])), wire.PexReceived)


def test_a_plain_p2p_1_channel_gets_no_extensions_message_and_no_pex() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    p.answer_extensions("p2p/1")  # an old CLI or the page offered
    p.handshake()
    assert p.extensions_message() is None
    p.receive(raw_handshake())
    assert not p.speaks_pex
    with pytest.raises(ValueError):
        p.send_pex([])
    with pytest.raises(ProtocolError, match="without negotiating"):
        p.receive(wire.encode_pex([]))


def test_the_offerer_speaks_pex_once_the_answerer_accepted_it() -> None:
    p = offerer_speaking_pex()
    assert not p.speaks_pex  # an old answerer never says anything: we never send PEX
    p.receive(wire.encode_extensions({"pex"}))
    assert p.speaks_pex
    assert decode(p.send_relay(THEIR_ID, 1, "v=0")) == wire.RelayRequested(THEIR_ID, 1, "v=0")


@pytest.mark.parametrize("case", ["not offered", "late", "twice", "unknown name"])
def test_extensions_out_of_place_are_protocol_errors(case: str) -> None:
    p = offerer_speaking_pex()
    if case == "not offered":
        p = connected()
    elif case == "late":
        p.receive(wire.encode_have_all())
    elif case == "twice":
        p.receive(wire.encode_extensions({"pex"}))
    with pytest.raises(ProtocolError):
        p.receive(wire.encode_extensions({"other"} if case == "unknown name" else {"pex"}))


def test_an_answerer_never_accepts_an_extensions_message() -> None:
    p = PeerProtocol(HASH, OUR_ID)
    p.answer_extensions("p2p/1 pex")
    p.handshake()
    p.receive(raw_handshake())
    with pytest.raises(ProtocolError):
        p.receive(wire.encode_extensions({"pex"}))
