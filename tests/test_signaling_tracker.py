"""`serve-signal` as a WebTorrent tracker (p2pcli/signaling/tracker.py): the rules without
sockets, then `p2p seed` and `p2p fetch` meeting through its /announce alone. That it
answers like bittorrent-tracker's own server is tests/test_wstracker.py's
`test_two_peers_meet_through_the_real_tracker`, run against both."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from conftest import Procs, make_file, sha256

from p2pcli.rendezvous import wstracker as wt
from p2pcli.signaling import tracker as tr
from p2pcli.signaling.tracker import TrackerHub

H = bytes(range(20))
H2 = bytes(range(1, 21))
SDP = "v=0\r\n"


def pid(n: int) -> bytes:
    return b"-P2P010-" + n.to_bytes(12, "big")


def announce(peer: bytes, *, info: bytes = H, offers: int = 0, numwant: int | None = None,
             left: int = 5, event: str | None = None) -> str:
    msg: dict = {"action": "announce", "info_hash": info.decode("latin-1"),
                 "peer_id": peer.decode("latin-1"), "left": left,
                 "offers": [{"offer_id": (bytes([i]) * 20).decode("latin-1"),
                             "offer": {"type": "offer", "sdp": f"{SDP}{i}"}}
                            for i in range(offers)]}
    msg["numwant"] = offers if numwant is None else numwant
    if event:
        msg["event"] = event
    return json.dumps(msg)


def answer(peer: bytes, to: bytes, offer_id: bytes, info: bytes = H) -> str:
    return json.dumps({"action": "announce", "info_hash": info.decode("latin-1"),
                       "peer_id": peer.decode("latin-1"), "to_peer_id": to.decode("latin-1"),
                       "offer_id": offer_id.decode("latin-1"),
                       "answer": {"type": "answer", "sdp": "ans"}})


def frames(out, conn) -> list[dict]:
    return [json.loads(t) for c, t in out if c == conn]


def test_offers_go_to_distinct_other_peers_bounded_by_numwant_and_the_cap():
    hub = TrackerHub()
    for n in range(1, 16):
        hub.message(f"c{n}", announce(pid(n)), 0.0)
    out = hub.message("c0", announce(pid(0), offers=12, numwant=12), 0.0)
    targets = [c for c, t in out if c != "c0"]
    assert len(targets) == wt.MAX_OFFERS == len(set(targets))  # 10, each to another peer
    assert frames(out, "c0") == [{"action": "announce", "info_hash": H.decode("latin-1"),
                                  "interval": tr.INTERVAL, "complete": 0, "incomplete": 16}]
    out = hub.message("c0", announce(pid(0), offers=5, numwant=2), 1.0)
    assert len([c for c, _ in out if c != "c0"]) == 2


def test_an_answer_reaches_only_its_offerer_stamped_with_the_answerer():
    hub = TrackerHub()
    hub.message("a", announce(pid(1), left=0), 0.0)
    out = hub.message("b", announce(pid(2), offers=1), 0.0)
    (offer,) = frames(out, "a")
    assert offer["peer_id"] == pid(2).decode("latin-1") and offer["offer"]["sdp"] == f"{SDP}0"
    out = hub.message("a", answer(pid(1), pid(2), bytes(20)), 0.0)
    assert [c for c, _ in out] == ["b"]
    assert frames(out, "b")[0]["peer_id"] == pid(1).decode("latin-1")
    # Not announced, or in another swarm: not relayed.
    assert frames(hub.message("x", answer(pid(9), pid(2), bytes(20)), 0.0), "x")[0][
        "failure reason"] == "announce before answering"
    assert hub.message("a", answer(pid(1), pid(2), bytes(20), info=H2), 0.0) == [
        ("a", json.dumps({"failure reason": "announce before answering"}))]


def test_stopped_and_a_closed_connection_leave_the_swarm():
    hub = TrackerHub()
    hub.message("a", announce(pid(1)), 0.0)
    hub.message("a", announce(pid(1), info=H2), 0.0)
    hub.message("b", announce(pid(2)), 0.0)
    hub.message("b", announce(pid(2), event="stopped"), 0.0)
    assert hub.stats() == {"swarms": 2, "peers": 2}
    hub.closed("a")
    assert hub.stats() == {"swarms": 0, "peers": 0}


def test_a_peer_id_cannot_be_taken_over_from_another_connection():
    hub = TrackerHub()
    hub.message("a", announce(pid(1)), 0.0)
    (reply,) = frames(hub.message("b", announce(pid(1)), 0.0), "b")
    assert "in use" in reply["failure reason"]
    hub.closed("b")  # b's leaving does not remove a's peer
    assert hub.stats()["peers"] == 1


def test_a_flooding_connection_is_told_to_slow_down():
    hub = TrackerHub()
    replies = [frames(hub.message("a", announce(pid(1)), 0.0), "a")[0]
               for _ in range(int(tr.MESSAGE_BURST) + 5)]
    assert replies[0].get("failure reason") is None
    assert replies[-1]["failure reason"] == "too many messages: slow down"
    # Time refills the bucket.
    assert "failure reason" not in frames(hub.message("a", announce(pid(1)), 10.0), "a")[0]


def test_one_connection_announces_a_bounded_number_of_peers():
    hub = TrackerHub()
    for n in range(tr.MAX_PEERS_PER_CONNECTION):
        hub.message("a", announce(pid(n), info=n.to_bytes(20, "big")), float(n))
    (reply,) = frames(hub.message("a", announce(pid(999), info=b"\xff" * 20), 99.0), "a")
    assert reply["failure reason"] == "too many peers"
    assert hub.stats()["swarms"] == tr.MAX_PEERS_PER_CONNECTION


@pytest.mark.parametrize("text, reason", [
    ("nope", "not JSON"), ("[1]", "not a JSON object"),
    ('{"action": "scrape"}', "scrape is not supported"),
    ('{"action": "hello"}', "unknown action"),
    ('{"action": "announce", "info_hash": "x", "peer_id": "y"}', "20-byte strings"),
])
def test_what_is_not_a_tracker_message_gets_a_failure_reason(text: str, reason: str):
    (reply,) = frames(TrackerHub().message("a", text, 0.0), "a")
    assert reason in reply["failure reason"]


@pytest.mark.timeout(120)
def test_seed_and_fetch_meet_through_serve_signal_as_a_tracker(procs: Procs):
    url = procs.serve_signal().replace("http://", "ws://") + "/announce"
    src = make_file(procs.workdir / "src.bin", 1_500_000)
    _, link = procs.seed(src, None, "--tracker", url)
    content = link.split("://", 1)[1].split("?", 1)[0]
    f = procs.fetch(f"p2p://{content}?tr={quote(url, safe='')}", "-o", "out.bin")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    assert [e["peer"][:4] for e in f.events() if e["event"] == "peer-joined"] == ["wt0:"]
