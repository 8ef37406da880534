"""p2pcli.btwire: BitTorrent messages, the extension handshake and ut_metadata."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pcli import btwire as bt
from p2pcli.magnet import bencode, make_info

IH = hashlib.sha1(b"content").digest()
ME, THEM = b"A" * 20, b"B" * 20


def pair(num_pieces: int | None = 10) -> tuple[bt.BtProtocol, bt.BtProtocol]:
    a = bt.BtProtocol(IH, ME, num_pieces)
    b = bt.BtProtocol(IH, THEM, num_pieces)
    assert b.receive_data(a.handshake()) == [bt.Handshake(IH, ME, True)]
    assert a.receive_data(b.handshake()) == [bt.Handshake(IH, THEM, True)]
    return a, b


def test_every_message_round_trips():
    a, b = pair()
    wire = (
        bt.keep_alive()
        + bt.choke()
        + bt.unchoke()
        + bt.interested()
        + bt.not_interested()
        + bt.have(3)
        + bt.bitfield(bt.bits_of([True] * 10))
        + bt.request(1, 0, 16384)
        + bt.cancel(1, 0, 16384)
    )
    assert b.receive_data(wire) == [
        bt.KeepAlive(),
        bt.Choke(),
        bt.Unchoke(),
        bt.Interested(),
        bt.NotInterested(),
        bt.Have(3),
        bt.Bitfield(b"\xff\xc0"),
        bt.Request(1, 0, 16384),
        bt.Cancel(1, 0, 16384),
    ]
    req = a.request(2, 16384, 5)
    assert b.receive_data(req) == [bt.Request(2, 16384, 5)]
    assert a.receive_data(bt.piece(2, 16384, b"hello")) == [bt.Piece(2, 16384, b"hello")]
    with pytest.raises(bt.ProtocolError, match="did not request"):  # answered once only
        a.receive_data(bt.piece(2, 16384, b"hello"))


def test_cancelled_requests_are_remembered_within_a_bound():
    """A stream's every seek cancels its read-ahead: a peer that honours CANCEL never
    answers those, so what is kept of them is bounded; a late answer to a recent one is
    still accepted, and a block asked again after its cancel is answered as usual."""
    a, _ = pair(10_000)
    n = bt.CANCELLED_KEPT + 100
    for i in range(n):
        a.request(i, 0, bt.BLOCK)
        a.cancel(i, 0, bt.BLOCK)
    assert len(a._pending) == bt.CANCELLED_KEPT  # not n
    with pytest.raises(bt.ProtocolError, match="did not request"):  # the oldest, forgotten
        a.receive_data(bt.piece(0, 0, bytes(bt.BLOCK)))
    a, _ = pair(10_000)
    a.request(0, 0, bt.BLOCK)
    a.cancel(0, 0, bt.BLOCK)
    assert a.receive_data(bt.piece(0, 0, bytes(bt.BLOCK)))  # late, but recent: accepted
    a.request(0, 0, bt.BLOCK)  # asked again; then many more cancels push 0's old one out
    for i in range(1, bt.CANCELLED_KEPT + 2):
        a.request(i, 0, bt.BLOCK)
        a.cancel(i, 0, bt.BLOCK)
    assert a.receive_data(bt.piece(0, 0, bytes(bt.BLOCK)))  # the new request's answer


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40))
def test_stream_cut_anywhere_gives_the_same_events(cuts):
    a = bt.BtProtocol(IH, ME, 10)
    wire = bt.handshake(IH, THEM) + bt.have(1) + bt.bitfield(b"\x00\x00") + bt.unchoke()
    events, pos, i = [], 0, 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        events += a.receive_data(wire[pos : pos + n])
        pos, i = pos + n, i + 1
    assert events == [bt.Handshake(IH, THEM, True), bt.Have(1), bt.Bitfield(b"\0\0"), bt.Unchoke()]


def test_handshake_for_other_content_is_refused():
    a = bt.BtProtocol(IH, ME)
    with pytest.raises(bt.ProtocolError, match="other content"):
        a.receive_data(bt.handshake(bytes(20), THEM))


def test_p2p_handshake_is_not_bittorrent():
    with pytest.raises(bt.ProtocolError, match="not a BitTorrent"):
        bt.BtProtocol(IH, ME).receive_data(b"P2PW\x01")


@pytest.mark.parametrize(
    "bad, reason",
    [
        (struct.pack(">I", bt.MAX_MESSAGE + 1), "message"),
        (bt.piece(0, 0, b"x" * 10), "did not request"),
        (bt.request(0, 0, bt.MAX_REQUEST + 1), "REQUEST for"),
        (bt.have(10), "beyond"),
        (bt.bitfield(b"\xff"), "bitfield"),
        (bt.bitfield(b"\xff\xff"), "spare bits"),
        (bt._msg(bt.Msg.HAVE, b"\0\0"), "payload"),
        (bt.extended(0, b"notbencode"), "bencode"),
        (bt.extended(0, bencode({"metadata_size": bt.MAX_METADATA + 1})), "metadata_size"),
        (
            bt.extended(bt.OUR_UT_METADATA_ID, bencode({"msg_type": 1, "piece": 0}) + b"x"),
            "did not ask",
        ),
    ],
)
def test_violations_drop_the_peer(bad, reason):
    a, _ = pair()
    with pytest.raises(bt.ProtocolError, match=reason):
        a.receive_data(bad)


def test_request_flood_is_refused():
    a, _ = pair()
    with pytest.raises(bt.ProtocolError, match="unanswered"):
        a.receive_data(bt.request(0, 0, 16384) * (bt.MAX_QUEUED_REQUESTS + 1))


def test_unknown_messages_are_ignored():
    a, _ = pair()
    assert a.receive_data(bt._msg(bt.Msg.PORT, b"\x1a\xe1") + bt._msg(0x0E)) == []
    assert a.receive_data(bt.extended(7, b"d1:ai1ee")) == []


def test_early_bitfield_is_checked_when_metadata_arrives():
    a, _ = pair(None)
    assert a.receive_data(bt.bitfield(b"\xff\x80")) == []
    assert a.set_num_pieces(9) == [bt.Bitfield(b"\xff\x80")]
    a, _ = pair(None)
    a.receive_data(bt.bitfield(b"\xff\x80"))
    with pytest.raises(bt.ProtocolError):
        a.set_num_pieces(20)


def test_ut_metadata_exchange_and_verification():
    raw = make_info("f", b"z" * 40_000_000, 16384)  # ~48 KiB of info dict: 3 pieces
    ih = hashlib.sha1(raw).digest()
    leech, seed = bt.BtProtocol(ih, ME), bt.BtProtocol(ih, THEM, 1)
    seed.receive_data(leech.handshake())
    leech.receive_data(seed.handshake())
    assert seed.receive_data(bt.extended_handshake(None)) == [
        bt.ExtendedHandshake(bt.OUR_UT_METADATA_ID, None, "p2p")
    ]
    [hs] = leech.receive_data(bt.extended_handshake(len(raw), "WebTorrent"))
    assert hs.metadata_size == len(raw) and hs.client == "WebTorrent"
    asm = bt.MetadataAssembler(ih, hs.metadata_size)
    result = None
    for i in asm.missing():
        [ev] = seed.receive_data(leech.metadata_request(i))
        assert ev == bt.MetadataRequest(i)
        chunk = raw[i * bt.METADATA_PIECE : (i + 1) * bt.METADATA_PIECE]
        [data] = leech.receive_data(seed.metadata_data(i, len(raw), chunk))
        result = asm.add(data.piece, data.data)
    assert result == raw
    [rej] = leech.receive_data(seed.metadata_reject(0)) if leech.metadata_request(0) else []
    assert rej == bt.MetadataReject(0)


def test_wrong_metadata_is_caught():
    raw = make_info("f", b"abc", 16384)
    asm = bt.MetadataAssembler(hashlib.sha1(raw).digest(), len(raw))
    with pytest.raises(bt.ProtocolError, match="info hash"):
        asm.add(0, raw[:-1] + b"X")
    with pytest.raises(bt.ProtocolError, match="bytes, not"):
        asm.add(0, raw + b"X")
    with pytest.raises(bt.ProtocolError):
        bt.MetadataAssembler(IH, bt.MAX_METADATA + 1)
