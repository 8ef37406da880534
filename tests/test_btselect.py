"""Issue 17's `--select`, `info` and `stream` of torrents, their decisions without a network:
which pieces a selection needs (btview), which file a stream plays (btstream), and the
BitTorrent download's `want`, playhead priorities and peer census (btfetch)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

import pytest
from test_btfetch import Seeder, run

from p2pcli import btwire as bt
from p2pcli.btfetch import BtDownload, Send
from p2pcli.btstream import stream_choice
from p2pcli.btview import TorrentView, bt_target, is_bt_target, selected_pieces
from p2pcli.errors import StorageError, UsageError
from p2pcli.magnet import MagnetLink, make_info, parse_info

PLEN = 16384


def folder(sizes: dict[str, int]) -> tuple[bytes, bytes]:
    files = [(tuple(p.split("/")), os.urandom(n)) for p, n in sizes.items()]
    return make_info("share", files, PLEN), b"".join(b for _, b in files)


def test_view_numbers_files_as_info_does_and_selection_needs_their_pieces():
    raw, _ = folder({"a.txt": 40_000, "sub/movie.mkv": 50_000, "z.bin": 10})
    view = TorrentView(parse_info(raw))
    assert [(f.path, f.offset, f.size) for f in view.files] == [
        ("a.txt", 0, 40_000), ("sub/movie.mkv", 40_000, 50_000), ("z.bin", 90_000, 10)]
    assert view.is_tree and view.version == 2 and view.piece_count == 6
    # bytes 40,000..90,000: pieces 2 (shared with a.txt) to 5 (shared with z.bin)
    assert selected_pieces(view, ("sub/*",)) == ([1], [2, 3, 4, 5])
    assert selected_pieces(view, ("0", "2")) == ([0, 2], [0, 1, 2, 5])
    with pytest.raises(UsageError, match="matches no file"):
        selected_pieces(view, ("*.mp4",))
    with pytest.raises(UsageError, match="numbered 0 to 2"):
        selected_pieces(view, ("3",))


def test_stream_plays_the_selected_file_or_the_first_video():
    raw, _ = folder({"a.txt": 40_000, "sub/movie.mkv": 50_000, "z.mp4": 10})
    view = TorrentView(parse_info(raw))
    assert stream_choice(view, ()) == 1
    assert stream_choice(view, ("z.*",)) == 2
    with pytest.raises(UsageError, match="takes one file"):
        stream_choice(view, ("*",))
    text, _ = folder({"a.txt": 10, "b.txt": 10})
    with pytest.raises(UsageError, match="none looks like a video"):
        stream_choice(TorrentView(parse_info(text)), ())
    single = TorrentView(parse_info(make_info("m.mp4", os.urandom(1000), PLEN)))
    assert not single.is_tree and single.files[0].path == "m.mp4"
    assert stream_choice(single, ()) is None
    with pytest.raises(UsageError):
        stream_choice(single, ("*.mkv",))


def test_only_a_path_is_a_torrent_file():
    # What `p2p seed movie.torrent` prints is a p2p link, not a .torrent to read.
    assert not is_bt_target(f"p2p://{'ab' * 32}?name=movie.torrent")
    assert not is_bt_target(f"https://example.org/watch/{'ab' * 32}?x=a.torrent")
    assert is_bt_target("movie.torrent") and is_bt_target("dir/movie.torrent")
    assert is_bt_target(f"MAGNET:?xt=urn:btih:{'ab' * 20}")
    assert not is_bt_target("ab" * 32)


def test_bad_inputs_are_usage_errors(tmp_path):
    bad = tmp_path / "x.torrent"
    bad.write_bytes(b"not bencode")
    with pytest.raises(UsageError, match="bad torrent file"):
        bt_target(str(bad), [])
    with pytest.raises(UsageError, match="bad magnet link"):
        bt_target("magnet:?xt=urn:btih:zz", [])
    with pytest.raises(UsageError, match="no tracker"):
        bt_target(f"magnet:?xt=urn:btih:{'ab' * 20}", [])
    link, info, trackers = bt_target(f"magnet:?xt=urn:btih:{'ab' * 20}&tr=ws://a", ["ws://b"])
    assert link.info_hash == bytes.fromhex("ab" * 20)
    assert info is None and trackers == ["ws://a", "ws://b"]


def test_download_fetches_only_the_pieces_wanted():
    raw, content = folder({"a.bin": 100_000, "sub/b.bin": 250_000})
    link = MagnetLink(hashlib.sha1(raw).digest())
    wanted = selected_pieces(TorrentView(parse_info(raw)), ("sub/*",))[1]
    dl = BtDownload(link, b"L" * 20, want=lambda info: wanted)  # the metadata from the peer
    assert run(dl, {"s": Seeder(raw, content)}, rounds=500) == []
    assert dl.complete
    got = dict(dl.take_verified())
    assert sorted(got) == wanted == list(range(6, 22))
    assert dl.bytes_received == sum(len(got[i]) for i in wanted)


def test_priority_goes_first_and_cancels_the_rest_when_strict():
    raw, content = folder({"m.mp4": 100 * PLEN})
    info = parse_info(raw)
    dl = BtDownload(MagnetLink(info.info_hash), b"L" * 20, info=info, strict_priority=True)
    s = Seeder(raw, content)
    for a in dl.connected("s"):
        s.answer(a.data)
    dl.received("s", s.hello(), 0.0)
    assert dl.picker is not None and not dl.picker.in_flight("s")  # until a player asks
    dl.set_priority([0, 1], 0.5)
    assert {b[0] for b in dl.picker.in_flight_blocks("s")} >= {0, 1}
    acts = dl.set_priority([99, 98], 1.0)  # a seek to the end
    events = s.proto.receive_data(b"".join(a.data for a in acts if isinstance(a, Send)))
    assert any(isinstance(e, bt.Cancel) for e in events)
    # Only the player's pieces are in flight now, both of them.
    assert {b[0] for b in dl.picker.in_flight_blocks("s")} == {98, 99}


def test_peers_seen_counts_who_answered_and_who_has_everything():
    raw, content = folder({"f.bin": 5 * PLEN})
    info = parse_info(raw)
    dl = BtDownload(MagnetLink(info.info_hash), b"L" * 20, info=info, want=lambda _: [])
    full, empty = Seeder(raw, content), Seeder(raw, content)
    dl.connected("full")
    dl.connected("empty")
    dl.connected("silent")
    acts = dl.received("full", full.hello(), 0.0)
    assert not any(isinstance(a, Send) and a.data[4:5] == bytes([bt.Msg.REQUEST])
                   for a in acts)  # `info` asks for no piece
    dl.received("empty", empty.proto.handshake() + bt.bitfield(bt.bits_of([False] * 5)), 0.0)
    assert dl.peers_seen() == {"full": True, "empty": False}


def test_a_block_asked_twice_may_come_twice_but_not_three_times():
    ih = b"i" * 20
    a, b = bt.BtProtocol(ih, b"a" * 20, 4), bt.BtProtocol(ih, b"b" * 20, 4)
    b.receive_data(a.handshake())
    a.receive_data(b.handshake())
    a.request(1, 0, 16384)
    a.cancel(1, 0, 16384)  # a seek; then asked again: a peer that ignores CANCEL answers both
    a.request(1, 0, 16384)
    block = bt.piece(1, 0, bytes(16384))
    assert len(a.receive_data(block + block)) == 2
    with pytest.raises(bt.ProtocolError, match="did not request"):
        a.receive_data(block)


def test_one_selected_file_to_stdout_is_cut_out_of_its_pieces(tmp_path):
    from p2pcli.btstore import TorrentStore
    from p2pcli.btview import Selector

    raw, content = folder({"a.bin": 20_000, "b.bin": 50_000, "c.bin": 30_000})
    info = parse_info(raw)
    with pytest.raises(UsageError, match="stdout takes one file"):
        Selector(("*.bin",), True)(info)
    with pytest.raises(UsageError, match="holds 3 files: give -o DIR"):  # as p2p's folders
        Selector((), True)(info)
    sel = Selector(("b.*",), True)
    pieces = sel(info)
    assert sel.chosen == [1] and pieces == [1, 2, 3, 4] and sel.size(info) == 50_000
    out = tmp_path / "out"

    async def write_all_of_it(w: TorrentStore) -> None:
        for i in reversed(pieces):  # out of order: spooled until the one before is written
            w.write(i, content[i * PLEN : (i + 1) * PLEN])
            assert await w.write_out() == (1 if i > 1 else 5)
        assert w.written_all

    with open(out, "wb") as f:
        w = TorrentStore(info, "-", force=False, chosen=sel.chosen, stdout_fd=f.fileno(),
                         window_bytes=len(pieces) * PLEN)
        try:
            asyncio.run(write_all_of_it(w))
        finally:
            w.close()
    assert out.read_bytes() == content[20_000:70_000]


def test_stdout_is_written_off_the_event_loop(tmp_path):
    """A reader that pauses (`| mpv -`, paused) blocks a thread, not the loop that keeps
    the data channels alive; what it then reads is the content, whole and in order."""
    from p2pcli.btstore import TorrentStore

    content = os.urandom(8 * PLEN)  # twice a pipe's 64 KiB buffer
    info = parse_info(make_info("m.bin", content, PLEN))
    r, wfd = os.pipe()
    got = bytearray()

    async def main() -> None:
        w = TorrentStore(info, "-", force=False, stdout_fd=wfd, window_bytes=len(content))
        try:
            for i in range(8):
                w.write(i, content[i * PLEN : (i + 1) * PLEN])
            out = asyncio.ensure_future(w.write_out())
            for _ in range(20):  # the loop keeps running meanwhile
                await asyncio.sleep(0.005)
            assert not out.done()  # the pipe is full and nobody reads: still writing
            reader = asyncio.ensure_future(asyncio.to_thread(drain))
            assert await out == 8
            os.close(wfd)
            await reader
        finally:
            w.close()

    def drain() -> None:
        while chunk := os.read(r, 1 << 16):
            got.extend(chunk)

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        os.close(r)
        with contextlib.suppress(OSError):
            os.close(wfd)
    assert bytes(got) == content


def test_a_stream_to_dash_writes_a_file_named_dash(tmp_path, monkeypatch):
    """As `p2p stream -o -`: a stream never writes the media to stdout (its output is the
    URL), and its store is not the 2-piece stdout ring."""
    from p2pcli.btstore import TorrentStore

    monkeypatch.chdir(tmp_path)
    content = os.urandom(5 * PLEN)
    info = parse_info(make_info("m.mp4", content, PLEN))
    w = TorrentStore(info, "-", force=False, stream=True)
    try:
        assert w.span is None and w.path == "-"
        for i in (4, 0, 3, 1, 2):  # a seek's order, outside any ring
            w.write(i, content[i * PLEN : (i + 1) * PLEN])
        w.finish()
    finally:
        w.close()
    assert (tmp_path / "-").read_bytes() == content


def test_a_torrent_folder_resumes_from_its_parts_and_refuses_another_torrents(tmp_path):
    """btstore.TorrentStore is p2p's TreePart with SHA-1: what a `.part` holds is found
    (re-verified) by the next run; a `.part` made for other content is not resumed into."""
    from p2pcli.btstore import TorrentStore

    raw, content = folder({"a.bin": 40_000, "sub/b.bin": 30_000})
    info = parse_info(raw)
    w = TorrentStore(info, str(tmp_path), force=False)
    assert w.found == [] and w.path == str(tmp_path / "share")
    for i in (0, 1, 3):  # pieces 0, 1 lie in a.bin; 3 in sub/b.bin; 2 spans both
        w.write(i, content[i * PLEN : (i + 1) * PLEN])
    w.close()  # interrupted
    w = TorrentStore(info, str(tmp_path), force=False)
    assert w.found == [0, 1, 3]
    for i in (2, 4):
        w.write(i, content[i * PLEN : (i + 1) * PLEN])
    w.finish()
    w.close()
    assert (tmp_path / "share" / "a.bin").read_bytes() == content[:40_000]
    assert (tmp_path / "share" / "sub" / "b.bin").read_bytes() == content[40_000:]
    with pytest.raises(UsageError, match=r"a\.bin already exists; use --force to overwrite it"):
        TorrentStore(info, str(tmp_path), force=False)

    # The same names and sizes, other bytes: another info hash in the trailer.
    other_raw, _ = folder({"a.bin": 40_000, "sub/b.bin": 30_000})
    other = parse_info(other_raw)
    dest = tmp_path / "dl"
    TorrentStore(other, str(dest), force=False).close()  # leaves its (empty) .parts
    with pytest.raises(UsageError, match="was not started by p2p for this content"):
        TorrentStore(info, str(dest), force=False)
    w = TorrentStore(info, str(dest), force=True)  # --force: replaced, nothing found
    assert w.found == []
    w.close()


@pytest.mark.parametrize("error, expected", [
    (OSError(13, "Permission denied"), StorageError),  # unmapped by the store: one line
    (UsageError("x.mp4 already exists"), UsageError),
    (ValueError("a bug"), ValueError),  # ends the command at once, with its traceback
])
def test_any_error_opening_the_store_ends_the_command(error, expected):
    """Not only a P2PError: whatever stops the store from opening reaches `fail`, so the
    command ends with it instead of waiting for a misleading NoPeers."""
    from p2pcli.btstore import BtSink

    failed: list[BaseException] = []

    class Sink(BtSink):
        def fail(self, e: BaseException) -> None:
            failed.append(e)

        def make_store(self, meta):
            raise error

    async def main() -> None:
        sink = Sink(lambda e: None)
        await sink.open_store(parse_info(make_info("m.mp4", b"x", PLEN)))
        assert sink.writer is None

    asyncio.run(main())
    assert len(failed) == 1 and isinstance(failed[0], expected)
