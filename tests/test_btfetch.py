"""p2pcli.btfetch: a magnet download's decisions, against scripted BitTorrent seeders."""

from __future__ import annotations

import hashlib
import os

from p2pcli import btwire as bt
from p2pcli.btfetch import BtDownload, Drop, Send
from p2pcli.magnet import MagnetLink, make_info, parse_info


class Seeder:
    """A minimal honest (or, with `corrupt`, lying) BitTorrent seeder on the other end."""

    def __init__(
        self, raw: bytes, content: bytes, *, corrupt: bool = False, bad_metadata: bool = False
    ) -> None:
        self.info = parse_info(raw)
        self.content, self.corrupt, self.bad_metadata = content, corrupt, bad_metadata
        self.proto = bt.BtProtocol(self.info.info_hash, os.urandom(20), len(self.info.pieces))
        self.raw = raw

    def hello(self) -> bytes:
        n = len(self.info.pieces)
        return (
            self.proto.handshake()
            + bt.extended_handshake(len(self.raw), "seeder")
            + bt.bitfield(bt.bits_of([True] * n))
            + bt.unchoke()
        )

    def answer(self, data: bytes) -> bytes:
        out = b""
        for ev in self.proto.receive_data(data):
            if isinstance(ev, bt.MetadataRequest):
                s = ev.piece * bt.METADATA_PIECE
                chunk = self.raw[s : s + bt.METADATA_PIECE]
                if self.bad_metadata:
                    chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
                out += self.proto.metadata_data(ev.piece, len(self.raw), chunk)
            elif isinstance(ev, bt.Request):
                off = ev.index * self.info.piece_length + ev.begin
                block = self.content[off : off + ev.length]
                if self.corrupt:
                    block = bytes(len(block))
                out += bt.piece(ev.index, ev.begin, block)
                self.proto.answered_request()
        return out


def run(dl: BtDownload, seeders: dict[str, Seeder], rounds: int = 200) -> list[Drop]:
    inbox: dict[str, bytes] = {}
    drops: list[Drop] = []
    for name, s in seeders.items():
        for a in dl.connected(name):
            inbox[name] = inbox.get(name, b"") + s.answer(a.data)
        inbox[name] = inbox.get(name, b"") + s.hello()
    for now in range(rounds):
        if dl.complete or not inbox:
            break
        for name in list(inbox):
            data = inbox.pop(name)
            for a in dl.received(name, data, float(now)):
                if isinstance(a, Drop):
                    drops.append(a)
                    seeders.pop(a.peer, None)
                elif a.peer in seeders:
                    reply = seeders[a.peer].answer(a.data)
                    if reply:
                        inbox[a.peer] = inbox.get(a.peer, b"") + reply
    return drops


def setup(size: int = 300_000, plen: int = 32768):
    content = os.urandom(size)
    raw = make_info("f.bin", content, plen)
    return content, raw, MagnetLink(hashlib.sha1(raw).digest())


def assemble(dl: BtDownload) -> bytes:
    pieces = dict(dl.take_verified())
    return b"".join(pieces[i] for i in sorted(pieces))


def test_metadata_then_pieces_from_one_seeder():
    content, raw, link = setup()
    dl = BtDownload(link, b"L" * 20)
    assert run(dl, {"s": Seeder(raw, content)}) == []
    assert dl.complete and dl.info is not None and dl.info.raw == raw
    assert assemble(dl) == content


def test_two_seeders_share_the_work_and_big_metadata_arrives_in_pieces():
    content, raw, link = setup(size=16_000_000, plen=16384)  # ~19 KiB of info dict
    assert len(raw) > bt.METADATA_PIECE
    dl = BtDownload(link, b"L" * 20, sequential=True)
    seeders = {"a": Seeder(raw, content), "b": Seeder(raw, content)}
    assert run(dl, seeders, rounds=2000) == []
    assert dl.complete
    assert assemble(dl) == content


def test_bad_metadata_drops_the_peer():
    content, raw, link = setup()
    dl = BtDownload(link, b"L" * 20)
    drops = run(dl, {"liar": Seeder(raw, content, bad_metadata=True)})
    assert [d.peer for d in drops] == ["liar"] and "info hash" in drops[0].reason
    assert dl.info is None


def test_bad_piece_drops_the_peer_and_the_honest_one_finishes():
    content, raw, link = setup()
    info = parse_info(raw)
    dl = BtDownload(link, b"L" * 20, info=info)
    drops = run(dl, {"liar": Seeder(raw, content, corrupt=True)})
    assert drops and drops[0].peer == "liar" and "SHA-1" in drops[0].reason
    assert dl.bad_pieces >= 1 and not dl.complete
    assert run(dl, {"good": Seeder(raw, content)}) == []
    assert dl.complete and assemble(dl) == content


def test_oversized_message_drops_the_peer():
    content, raw, link = setup()
    dl = BtDownload(link, b"L" * 20)
    s = Seeder(raw, content)
    dl.connected("x")
    actions = dl.received("x", s.hello() + (bt.MAX_MESSAGE + 1).to_bytes(4, "big"), 0.0)
    assert isinstance(actions[-1], Drop) and "message" in actions[-1].reason
    assert "x" not in dl.peers


def test_no_upload_of_pieces():
    content, raw, link = setup()
    dl = BtDownload(link, b"L" * 20, info=parse_info(raw))
    dl.connected("x")
    s = Seeder(raw, content)
    dl.received("x", s.hello(), 0.0)
    acts = dl.received("x", bt.interested() + bt.request(0, 0, 16384), 1.0)
    assert not any(isinstance(a, Send) and a.data[4:5] == bytes([bt.Msg.PIECE]) for a in acts)


def test_stdout_window_holds_back_until_consumed():
    content, raw, link = setup(size=300_000, plen=32768)  # 10 pieces
    dl = BtDownload(link, b"L" * 20, info=parse_info(raw), sequential=True,
                    window_bytes=3 * 32768)
    s = Seeder(raw, content)
    run(dl, {"s": s})
    got = dl.take_verified()
    assert sorted(i for i, _ in got) == [0, 1, 2]  # the window, nothing past it
    dl.consumed(3)
    acts = dl.tick(100.0)
    assert acts  # requests for the next window go out
    for a in acts:
        reply = s.answer(a.data)
        dl.received("s", reply, 100.0)
    assert sorted(i for i, _ in dl.take_verified()) == [3, 4, 5]




def test_nothing_is_asked_before_the_store_opens_and_what_it_holds_never():
    """`await_store`: a resumed `.part` is re-verified off the event loop (btstore); until
    `store_opened` no block is requested, and the pieces it found are never requested."""
    content, raw, link = setup()
    info = parse_info(raw)
    dl = BtDownload(link, b"L" * 20, info=info, await_store=True)
    s = Seeder(raw, content)
    asked: list[int] = []
    seen = s.proto.receive_data

    def receive(data: bytes) -> list:
        events = seen(data)
        asked.extend(e.index for e in events if isinstance(e, bt.Request))
        return events

    s.proto.receive_data = receive  # type: ignore[method-assign]

    def exchange(actions: list, now: float) -> None:
        while actions:
            reply = b"".join(s.answer(a.data) for a in actions if isinstance(a, Send))
            actions = dl.received("s", reply, now) if reply else []

    exchange(dl.connected("s") + dl.received("s", s.hello(), 0.0), 0.0)
    assert asked == [] and not dl.complete  # the store is not open yet
    found = [0, 3, 9]
    exchange(dl.store_opened(found, 1.0), 1.0)
    assert dl.complete and asked and not set(asked) & set(found)
    assert sorted(dict(dl.take_verified())) == [i for i in range(len(info.pieces))
                                                if i not in found]


def test_the_timeout_counts_help_and_peers_that_have_what_we_lack():
    # `--timeout` for a torrent (btsession, btstream) is `idle_for`: a peer with nothing we
    # lack is no help; blocks are, and so is a peer that has what we lack, even while it
    # keeps us choked (a newcomer waits in line for an unchoke, as in any BitTorrent swarm).
    content, raw, link = setup(size=2_000_000, plen=32768)
    info = parse_info(raw)
    dl = BtDownload(link, os.urandom(20), info=info)
    dl.wait_from(0.0)
    every = bt.bitfield(bt.bits_of([True] * len(info.pieces)))
    none = bt.bitfield(bt.bits_of([False] * len(info.pieces)))
    empty = Seeder(raw, content)
    dl.connected("empty")
    dl.received("empty", empty.proto.handshake() + none, 1.0)
    assert dl.idle_for(9.0) == 9.0  # it has nothing we lack
    choker = Seeder(raw, content)
    dl.connected("choker")
    assert dl.received("choker", choker.proto.handshake() + every, 9.5) == [
        Send("choker", bt.interested())]
    assert dl.idle_for(30.0) == 0.0  # choked, but in line for what we lack
    dl.disconnected("choker")
    assert dl.idle_for(36.0) == 6.0
    giver = Seeder(raw, content)
    asked = b"".join(a.data for a in dl.connected("giver"))
    giver.answer(asked)
    requests = dl.received("giver", giver.proto.handshake() + every + bt.unchoke(), 40.0)
    reply = b"".join(giver.answer(a.data) for a in requests if isinstance(a, Send))
    dl.received("giver", reply, 41.0)
    assert dl.peers["giver"].helped and not dl.complete
    assert dl.idle_for(50.0) == 0.0  # it sends no more for now, but may
    dl.disconnected("giver")
    assert dl.idle_for(56.0) == 6.0


def test_metadata_arriving_restarts_the_timeout():
    # btsession.await_metadata (fetch and info; stream's loop likewise): an info dict that
    # trickles in, each piece within --timeout but the whole in more, is not cut off, and
    # a peer that then sends nothing more is given up on.
    import asyncio
    import time

    import pytest

    from p2pcli.btsession import await_metadata
    from p2pcli.errors import NoPeers

    content = bytes(28_000_000)
    raw = make_info("f.bin", content, 16384)  # an info dict of 34 KB: 3 metadata pieces
    link = MagnetLink(hashlib.sha1(raw).digest())
    n = -(-len(raw) // bt.METADATA_PIECE)
    assert n == 3
    dl = BtDownload(link, os.urandom(20))
    s = Seeder(raw, content)
    s.answer(b"".join(a.data for a in dl.connected("s")))
    dl.received("s", s.proto.handshake() + bt.extended_handshake(len(raw), "seeder"), 0.0)
    timeout, gap = 1.5, 0.6  # 3 gaps exceed the timeout; each leaves 0.9 s for a busy machine

    async def trickle() -> None:
        for i in range(n):
            await asyncio.sleep(gap)
            chunk = raw[i * bt.METADATA_PIECE:(i + 1) * bt.METADATA_PIECE]
            dl.received("s", s.proto.metadata_data(i, len(raw), chunk), time.monotonic())

    async def both() -> None:
        await asyncio.gather(await_metadata(dl, timeout), trickle())

    asyncio.run(both())
    assert dl.info is not None and dl.info.raw == raw
    silent = BtDownload(link, os.urandom(20))
    with pytest.raises(NoPeers, match="metadata"):
        asyncio.run(await_metadata(silent, 0.2))


def test_a_torrent_timeouts_error_claims_a_part_only_when_one_holds_something():
    from p2pcli.btview import no_help

    assert "its .part is kept" in no_help(0, 6, "download", have=3).message
    for kw in ({"have": 0}, {"have": 3, "pipe": True}):
        why = no_help(1, 6, "download", **kw).message
        assert ".part" not in why and "is kept:" not in why, why
    assert "nothing is kept of a download to stdout" in no_help(1, 6, "download", have=3,
                                                                 pipe=True).message
