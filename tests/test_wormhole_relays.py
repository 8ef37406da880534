"""Codes over a WebTorrent tracker and a PeerJS server (issue 18; PROTOCOL.md 4.5): the
SDP envelope (sans-IO), and `p2p send` / `p2p receive` as real processes through
serve-signal's /announce tracker and the real PeerJS server (the `peer` package)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ROOT, Procs, free_port, wait_port
from hypothesis import given
from hypothesis import strategies as st
from test_wormhole_cli import events, last_line, make_content, receive, start_send

from p2pcli.errors import ExitCode
from p2pcli.wormhole.relays import BROADCAST, STUB, open_sdp, seal_sdp, tracker_room

SDP = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP "
       "webrtc-datachannel\r\na=fingerprint:sha-256 AB:CD\r\n")


@pytest.fixture
def content(tmp_path: Path) -> tuple[Path, Path]:
    return make_content(tmp_path)


def test_envelope_round_trips_on_a_real_and_a_stub_sdp():
    w = {"v": 1, "key": "abc", "fp": "d-_"}
    kind, data = open_sdp("offer", seal_sdp("offer", w, SDP))
    assert kind == "offer" and data == {"wormhole": w, "offer": {"type": "offer", "sdp": SDP}}
    stub = seal_sdp("ice-candidate", {"v": 1, "error": "declined"}, None)
    assert stub.startswith(STUB)
    assert open_sdp("offer", stub) == ("ice-candidate", {"wormhole": {"v": 1,
                                                                      "error": "declined"}})


@pytest.mark.parametrize("sdp", [
    SDP,  # no envelope: not a code message
    SDP + "a=x-p2p-wormhole:offer !!!\r\n",
    SDP + "a=x-p2p-wormhole:bogus e30\r\n",
    SDP + "a=x-p2p-wormhole:offer WzFd\r\n",  # [1]: not an object
    seal_sdp("offer", {"v": 1}, None) + "a=x-p2p-wormhole:offer e30\r\n",  # two
    seal_sdp("answer", {"v": 1}, SDP),  # a real answer relayed as an offer
    None,
])
def test_anything_else_is_not_a_code_message(sdp):
    assert open_sdp("offer", sdp) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)


@given(st.sampled_from(["offer", "answer", "ice-candidate", "present"]),
       st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.booleans())
def test_any_wormhole_object_survives_the_envelope(kind, wormhole, real):
    relayed_as = "answer" if kind == "answer" else "offer"
    sdp = SDP if real and kind in ("offer", "answer") else None
    got = open_sdp(relayed_as, seal_sdp(kind, wormhole, sdp))
    assert got is not None and got[0] == kind and got[1]["wormhole"] == wormhole
    assert got[1].get(kind, {}).get("sdp") == sdp  # the real SDP back as it was, or none


@given(st.text(max_size=300))
def test_no_text_breaks_the_envelope_reader(text):
    open_sdp("offer", text)
    open_sdp("offer", SDP + "a=x-p2p-wormhole:offer " + text)


def test_who_is_in_a_tracker_room_from_its_counts():
    assert tracker_room(1, 0, sender=True) == []  # only us
    assert tracker_room(2, 0, sender=True) == ["?"]  # another sender: take another number
    assert tracker_room(1, 1, sender=True) == ["?"]
    assert tracker_room(None, None, sender=True) == []
    assert tracker_room(1, 1, sender=False) == [BROADCAST]
    assert tracker_room(0, 3, sender=False) == []  # receivers only: nobody is sending


def _tracker(procs: Procs) -> list[str]:
    port = free_port()
    procs.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port), name="signal")
    wait_port(port)
    return ["--tracker", f"ws://127.0.0.1:{port}/announce"]


def _peerjs(procs: Procs) -> list[str]:
    from conftest import start_peerjs_server

    url, _ = start_peerjs_server(procs)
    return ["--peerjs", url]


@pytest.mark.parametrize("via", [_tracker, _peerjs], ids=["tracker", "peerjs"])
def test_file_folder_and_stdout_through_a_tracker_or_peerjs(procs: Procs, content,
                                                           tmp_path: Path, via):
    f, d = content
    where = via(procs)
    send, code = start_send(procs, f, "", *where)
    r = receive(procs, code, "", "--yes", "-o", str(tmp_path / "got.bin"), *where)
    assert r.wait(60) == 0, r.stderr
    assert (tmp_path / "got.bin").read_bytes() == f.read_bytes()
    assert events(r, "verified") and send.wait(30) == 0, send.stderr

    send, code = start_send(procs, f, "", *where, name="send2")
    r = receive(procs, code, "", "--yes", "-o", "-", *where, name="receive2")
    assert r.wait(60) == 0, r.stderr
    assert r.out_path.read_bytes() == f.read_bytes()
    assert send.wait(30) == 0

    send, code = start_send(procs, d, "", *where, name="send3")
    out = tmp_path / "out"
    out.mkdir()
    r = receive(procs, code, "", "--yes", "-o", str(out), *where, name="receive3")
    assert r.wait(60) == 0, r.stderr
    for rel in ("one.txt", "disc 2/two.bin"):
        assert (out / "album" / rel).read_bytes() == (d / rel).read_bytes()
    assert send.wait(30) == 0


def test_through_the_real_bittorrent_tracker(procs: Procs, content):
    """The same envelopes through WebTorrent's own tracker server (bittorrent-tracker),
    which rebuilds what it forwards from the SDP too."""
    from conftest import start_ws_tracker

    f, _ = content
    url, _ = start_ws_tracker(procs)
    send, code = start_send(procs, f, "", "--tracker", url)
    r = receive(procs, code, "", "--yes", "-o", "-", "--tracker", url)
    assert r.wait(60) == 0, r.stderr
    assert r.out_path.read_bytes() == f.read_bytes()
    assert send.wait(30) == 0, send.stderr


def test_mitm_tracker_is_caught(procs: Procs, content, tmp_path: Path):
    """A tracker that swaps the fingerprints of the SDPs it forwards (where the code's
    messages ride): both sides exit 9, nothing is written."""
    f, _ = content
    port = free_port()
    procs.start([sys.executable, str(ROOT / "tests" / "helpers" / "mitm_signal.py"),
                 str(port), "both", "tracker"], "mitm", env={**procs.env, "PYTHONPATH": str(ROOT)})
    wait_port(port)
    where = ["--tracker", f"ws://127.0.0.1:{port}/announce"]
    send, code = start_send(procs, f, "", *where)
    r = receive(procs, code, "", "-y", "-o", str(tmp_path / "got.bin"), *where)
    assert r.wait(60) == ExitCode.TAMPERED, r.stderr
    assert send.wait(30) == ExitCode.TAMPERED, send.stderr
    for p in (r, send):
        assert "tampered" in last_line(p) and "man in the middle" in last_line(p)
    assert not list(tmp_path.glob("got.bin*"))


def test_nobody_sending_and_two_rendezvous(procs: Procs):
    where = _tracker(procs)
    r = receive(procs, "7-guitarist-revenge", "", "-y", *where)
    assert r.wait(60) == ExitCode.NO_PEERS
    assert "nobody is sending with code 7" in last_line(r)
    r = receive(procs, "7-guitarist-revenge", "http://127.0.0.1:1", "-y", *where, name="two")
    assert r.wait(60) == ExitCode.USAGE
    assert "one rendezvous" in last_line(r)


def test_seed_after_and_stream_through_a_tracker(procs: Procs, content, tmp_path: Path):
    """Over serve-signal's /announce tracker: a `receive --seed-after` receiver joins the
    code's room as a second sender (a seeder, for the tracker); a second one gets the
    bytes from it (the sender passes it on: "used"); the sender gone, new receivers get
    the bytes from them. Each receiver's hello reaches both seeders and both answer: the
    one not taken must not judge that receiver's message 3 as a wrong code (issue 18: it
    closed the code, exit 8, with its one try) and gets its try back. Then `stream CODE`
    through the tracker serves the sender's exact bytes on its local URL."""
    import urllib.request

    from conftest import LOOPBACK
    from test_wormhole_cli import seed_after

    f, _ = content
    where = _tracker(procs)
    send, code = start_send(procs, f, "", *where)
    seeder, ev = seed_after(procs, code, "", tmp_path / "first.bin", *where)
    assert send.wait(30) == 0, send.stderr
    assert ev["code"] == code and ev["link"] is None
    seeder2, _ = seed_after(procs, code, "", tmp_path / "first2.bin", *where, name="seeder2")
    for name in ("second", "third"):
        r = receive(procs, code, "", "-y", "-o", str(tmp_path / f"{name}.bin"), *where,
                    name=name)
        assert r.wait(60) == 0, r.stderr
        assert (tmp_path / f"{name}.bin").read_bytes() == f.read_bytes()
    for s in (seeder, seeder2):
        assert s.p.poll() is None, s.stderr  # still serving: no try lost to a receiver
        s.signal(2)
        assert s.wait(30) == ExitCode.INTERRUPTED, s.stderr

    send, code = start_send(procs, f, "", *where, name="send2")
    s = procs.p2p("stream", code, *where, *LOOPBACK, "--json", "--yes", "--player", "none",
                  "-o", str(tmp_path / "streamed.bin"), name="stream")
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    with urllib.request.urlopen(url, timeout=60) as got:
        assert got.read() == f.read_bytes()
    s.wait_for(lambda p: events(p, "done"), 60, "the download's end")
    s.signal(2)  # how `--player none` ends; the download is complete: a normal exit
    assert s.wait(30) == 0, s.stderr
    assert send.wait(30) == 0, send.stderr
    assert (tmp_path / "streamed.bin").read_bytes() == f.read_bytes()
