"""p2pcli.btseed: a seeder's answers, and a BtDownload fetching from it end to end."""

from __future__ import annotations

import os

import pytest

from p2pcli import btwire as bt
from p2pcli.btfetch import BtDownload, Drop, Send
from p2pcli.btseed import BtUpload, Serve
from p2pcli.magnet import MagnetLink, make_info, parse_info


def test_a_magnet_download_from_our_seeder():
    content = os.urandom(200_000)
    info = parse_info(make_info("f.bin", content, 16384))
    up = BtUpload(info, b"S" * 20)
    dl = BtDownload(MagnetLink(info.info_hash), b"L" * 20)
    to_up = b"".join(a.data for a in dl.connected("seed"))
    to_dl = b"".join(a.data for a in up.connected("leech", 0.0))
    for now in range(100):
        if dl.complete:
            break
        acts = dl.received("seed", to_dl, float(now))
        to_dl = b""
        assert not any(isinstance(a, Drop) for a in acts)
        to_up += b"".join(a.data for a in acts if isinstance(a, Send))
        for a in up.received("leech", to_up, float(now)):
            if isinstance(a, Serve):
                assert up.should_serve(a)
                off = a.index * info.piece_length + a.begin
                to_dl += bt.piece(a.index, a.begin, content[off : off + a.length])
                up.served(a.peer, a.length)
            else:
                assert isinstance(a, Send)
                to_dl += a.data
        to_up = b""
    assert dl.complete
    assert b"".join(d for _, d in sorted(dl.take_verified())) == content


def test_request_beyond_the_piece_drops_the_peer():
    info = parse_info(make_info("f.bin", b"x" * 20000, 16384))
    up = BtUpload(info, b"S" * 20)
    up.connected("p", 0.0)
    hs = bt.handshake(info.info_hash, b"P" * 20)
    [unchoke] = up.received("p", hs + bt.interested(), 0.0)
    assert unchoke == Send("p", bt.unchoke())
    [drop] = up.received("p", bt.request(1, 0, 16384), 0.0)
    assert isinstance(drop, Drop) and "beyond" in drop.reason


def test_cancelled_blocks_are_not_served():
    info = parse_info(make_info("f.bin", b"x" * 20000, 16384))
    up = BtUpload(info, b"S" * 20)
    up.connected("p", 0.0)
    hs = bt.handshake(info.info_hash, b"P" * 20)
    [_, serve] = up.received("p", hs + bt.interested() + bt.request(0, 0, 16384), 0.0)
    assert up.received("p", bt.cancel(0, 0, 16384), 0.0) == []
    assert not up.should_serve(serve)


@pytest.mark.parametrize("piece, expect", [(0, bt.MetadataData), (5, bt.MetadataReject)])
def test_metadata_is_served(piece, expect):
    info = parse_info(make_info("f.bin", b"x" * 20000, 16384))
    up = BtUpload(info, b"S" * 20)
    leech = bt.BtProtocol(info.info_hash, b"P" * 20)
    leech.receive_data(b"".join(a.data for a in up.connected("p", 0.0)))
    out = up.received("p", leech.handshake() + bt.extended_handshake(None), 0.0)
    assert out == []
    [send] = up.received("p", leech.metadata_request(piece), 0.0)
    [ev] = leech.receive_data(send.data)
    assert isinstance(ev, expect)
    if piece == 0:
        assert ev.data == info.raw


def _leecher(up: BtUpload, name: str, now: float) -> list:
    up.connected(name, now)
    hs = bt.handshake(up.info.info_hash, name.encode().ljust(20, b"."))
    return up.received(name, hs + bt.interested(), now)


def test_a_choked_peers_requests_are_dropped_and_a_choke_voids_queued_ones():
    info = parse_info(make_info("f.bin", b"x" * 40000, 16384))
    up = BtUpload(info, b"S" * 20)
    for i in range(5):
        assert _leecher(up, f"p{i}", 0.0) == [Send(f"p{i}", bt.unchoke())]
    assert _leecher(up, "late", 0.0) == []  # 4 regular + 1 optimistic slots are taken
    assert up.received("late", bt.request(0, 0, 16384), 0.0) == []  # choked: dropped
    [queued] = up.received("p4", bt.request(0, 0, 16384), 0.0)
    # 30 s on, the optimistic slot moves from p4 to the peer waiting longest.
    for t in (10.0, 20.0, 30.0):
        for i in range(5):  # everyone keeps taking, the regulars most: they keep their slots
            up.served(f"p{i}", 100 if i < 4 else 10)
        out = up.tick(t)
    assert out == [Send("p4", bt.choke()), Send("late", bt.unchoke())]
    assert not up.should_serve(queued)  # asked before the CHOKE: void
    [again] = up.received("late", bt.request(0, 0, 16384), 30.0)
    assert up.should_serve(again)


def test_a_peer_leaving_gives_its_slot_to_the_one_waiting():
    info = parse_info(make_info("f.bin", b"x" * 40000, 16384))
    up = BtUpload(info, b"S" * 20)
    for i in range(5):
        _leecher(up, f"p{i}", 0.0)
    _leecher(up, "late", 1.0)
    assert up.disconnected("p2", 2.0) == [Send("late", bt.unchoke())]
    assert up.received("p0", bt.not_interested(), 3.0) == [Send("p0", bt.choke())]
