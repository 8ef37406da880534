"""The WebTorrent tracker protocol (p2pcli/rendezvous/wstracker.py): the messages, the
rules (interval, offers per announce, nothing trusted), and the real thing: two sessions
meeting through bittorrent-tracker's own server (tests/js/ws_tracker.mjs) over WebSockets.
The commands' use of it (p2pcli/rendezvous/trackerclient.py) is tests/test_tracker_meet.py's."""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import pytest
from conftest import Proc, Procs, start_ws_tracker
from hypothesis import given
from hypothesis import strategies as st

from p2pcli.rendezvous import wstracker as wt
from p2pcli.rendezvous.wstracker import (
    Announced,
    Answer,
    Failed,
    Ignored,
    Offer,
    TrackerSession,
)

HASH = bytes(range(32))
A = b"-P20001-" + bytes(range(200, 212))
B = b"-WW0208-" + b"\x00\xff" * 6
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"


def session(peer: bytes = A) -> TrackerSession:
    return TrackerSession(wt.info_hash_for(HASH), peer)


def relayed(kind: str, peer: bytes, offer_id: bytes, sdp: str = SDP, info: bytes | None = None,
            **extra) -> str:
    return json.dumps({"action": "announce", "info_hash": (info or HASH[:20]).decode("latin-1"),
                       "peer_id": peer.decode("latin-1"), "offer_id": offer_id.decode("latin-1"),
                       kind: {"type": kind, "sdp": sdp}, **extra})


# -- what we send -------------------------------------------------------------------------------


def test_first_announce_says_started_and_carries_the_offers_as_binary_strings():
    s = session()
    msg = json.loads(s.announce(0.0, [(b"\x01" * 20, SDP), (b"\xfe" * 20, SDP)], left=5))
    assert msg["action"] == "announce" and msg["event"] == "started"
    assert msg["info_hash"].encode("latin-1") == HASH[:20]
    assert msg["peer_id"].encode("latin-1") == A and msg["numwant"] == 2 and msg["left"] == 5
    assert [o["offer_id"].encode("latin-1") for o in msg["offers"]] == [b"\x01" * 20,
                                                                         b"\xfe" * 20]
    assert msg["offers"][0]["offer"] == {"type": "offer", "sdp": SDP}


def test_the_interval_is_honoured_except_for_events():
    s = session()
    s.announce(0.0, [], left=None)
    assert not s.due(60.0)
    with pytest.raises(ValueError, match="interval"):
        s.announce(60.0, [], left=None)
    assert "completed" in s.announce(60.0, [], left=0, event="completed")
    stop = json.loads(s.announce(61.0, [(b"\x01" * 20, SDP)], left=0, event="stopped"))
    assert stop["event"] == "stopped" and "offers" not in stop and stop["numwant"] == 0
    s.receive(json.dumps({"action": "announce", "info_hash": HASH[:20].decode("latin-1"),
                          "interval": 30}), 62.0)
    assert s.interval == 30 and s.due(61.0 + 30) and not s.due(61.0 + 29)


@pytest.mark.parametrize(("interval", "kept"), [(1, wt.MIN_INTERVAL), (10**9, wt.MAX_INTERVAL),
                                                ("9", wt.DEFAULT_INTERVAL), (True, 120.0)])
def test_a_trackers_interval_is_kept_within_bounds(interval, kept):
    s = session()
    s.announce(0.0, [], left=None)
    ev = s.receive(json.dumps({"action": "announce", "info_hash": HASH[:20].decode("latin-1"),
                               "interval": interval, "complete": 2, "incomplete": -1}), 0.1)
    assert ev == Announced(kept, 2, None)


def test_offers_per_announce_are_bounded():
    with pytest.raises(ValueError, match="at most 10"):
        session().announce(0.0, [(bytes([i]) * 20, SDP) for i in range(11)], left=None)


@given(st.binary(min_size=20, max_size=20))
def test_every_byte_of_an_id_survives_json(value):
    s = TrackerSession(value, value)
    msg = json.loads(s.announce(0.0, [(value, SDP)], left=None))
    assert msg["info_hash"].encode("latin-1") == value
    assert msg["offers"][0]["offer_id"].encode("latin-1") == value


# -- what we take -------------------------------------------------------------------------------


def test_an_offer_and_the_answer_to_ours():
    s = session()
    s.announce(0.0, [(b"\x07" * 20, SDP)], left=None)
    assert s.receive(relayed("offer", B, b"\x09" * 20), 1.0) == Offer(B, b"\x09" * 20, SDP)
    assert s.receive(relayed("answer", B, b"\x07" * 20), 1.0) == Answer(B, b"\x07" * 20, SDP)
    # An offer is answered once: a second answer to it (or a replay) is not acted on.
    assert isinstance(s.receive(relayed("answer", B, b"\x07" * 20), 1.0), Ignored)


@pytest.mark.parametrize(("text", "why"), [
    ("{", "not JSON"),
    ("[1]", "not a JSON object"),
    ("x" * (wt.MAX_MESSAGE + 1), "characters"),
    (json.dumps({"action": "scrape"}), "action"),
    (relayed("offer", B, b"\x09" * 20, info=b"\x00" * 20), "another info hash"),
    (relayed("offer", A, b"\x09" * 20), "our own"),
    (relayed("offer", B[:19], b"\x09" * 20), "20 bytes"),
    (relayed("offer", B, b"\x09" * 20, sdp=""), "without SDP"),
    (relayed("offer", B, b"\x09" * 20, sdp="x" * (wt.MAX_SDP + 1)), "without SDP"),
    (relayed("answer", B, b"\x05" * 20), "did not make"),
    (json.dumps({"action": "announce", "info_hash": HASH[:20].decode("latin-1"),
                 "peer_id": B.decode("latin-1"), "offer_id": "\u4e00" * 20,
                 "offer": {"type": "offer", "sdp": SDP}}), "20 bytes"),
    (json.dumps({"action": "announce", "info_hash": HASH[:20].decode("latin-1"),
                 "peer_id": B.decode("latin-1"), "offer_id": "a" * 20,
                 "offer": {"type": "answer", "sdp": SDP}}), "without SDP"),
])
def test_what_is_not_ours_or_malformed_is_ignored_with_a_reason(text, why):
    s = session()
    s.announce(0.0, [(b"\x07" * 20, SDP)], left=None)
    ev = s.receive(text, 1.0)
    assert isinstance(ev, Ignored) and why in ev.why, ev


def test_an_answer_after_the_offer_expired_is_ignored():
    s = session()
    s.announce(0.0, [(b"\x07" * 20, SDP), (b"\x08" * 20, SDP)], left=None)
    assert s.expire(wt.OFFER_LIFETIME - 1) == []
    assert sorted(s.expire(wt.OFFER_LIFETIME)) == [b"\x07" * 20, b"\x08" * 20]
    assert isinstance(s.receive(relayed("answer", B, b"\x07" * 20), wt.OFFER_LIFETIME), Ignored)


def test_a_failure_reason_is_reported():
    assert session().receive('{"failure reason": "invalid info_hash"}', 0.0) == \
        Failed("invalid info_hash")


# -- with the real tracker ----------------------------------------------------------------------


async def _next(ws: aiohttp.ClientWebSocketResponse, s: TrackerSession, kind: type):
    """The next message that means a `kind`, skipping others."""
    async with asyncio.timeout(10):
        while True:
            ev = s.receive((await ws.receive_str()), asyncio.get_running_loop().time())
            if isinstance(ev, kind):
                return ev


@pytest.fixture(params=["bittorrent-tracker", "serve-signal"])
def any_tracker(request, procs: Procs) -> tuple[str, Proc | None]:
    """The real WebTorrent tracker, and `p2p serve-signal`'s /announce, which must behave
    the same."""
    if request.param == "bittorrent-tracker":
        return start_ws_tracker(procs)
    return procs.serve_signal().replace("http://", "ws://") + "/announce", None


@pytest.mark.timeout(60)
def test_two_peers_meet_through_the_real_tracker(any_tracker: tuple[str, Proc | None]):
    url, server = any_tracker

    async def main() -> None:
        seeder, leecher = session(A), session(B)
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(url) as wa, http.ws_connect(url) as wb:
            now = asyncio.get_running_loop().time
            await wa.send_str(seeder.announce(now(), [], left=0))
            got = await _next(wa, seeder, Announced)
            assert got.interval == wt.DEFAULT_INTERVAL and got.complete == 1
            offers = [(os.urandom(20), f"{SDP}a=offer:{i}\r\n") for i in range(3)]
            await wb.send_str(leecher.announce(now(), offers, left=1000))
            assert (await _next(wb, leecher, Announced)).incomplete == 1
            # The tracker forwards as many offers as it has other peers: one, to the seeder.
            offer = await _next(wa, seeder, Offer)
            assert offer.peer_id == B and (offer.offer_id, offer.sdp) in offers
            await wa.send_str(seeder.answer(offer.peer_id, offer.offer_id, "answer-sdp"))
            answer = await _next(wb, leecher, Answer)
            assert (answer.peer_id, answer.offer_id, answer.sdp) == (A, offer.offer_id,
                                                                       "answer-sdp")
            # What the tracker itself refuses comes back as a failure, said in its words.
            await wb.send_str(json.dumps({"action": "announce", "info_hash": "short",
                                          "peer_id": B.decode("latin-1")}))
            assert "info_hash" in (await _next(wb, leecher, Failed)).reason
            await wb.send_str(leecher.announce(now(), [], left=1000, event="stopped"))
            assert (await _next(wb, leecher, Announced)).incomplete == 0  # it left the swarm

    asyncio.run(main())
    if server is not None:
        warnings = [line for line in server.stderr.splitlines() if line]
        assert warnings == ["warning: invalid info_hash"], warnings


def test_a_new_connection_announces_at_once_and_says_started_again():
    s = session()
    s.announce(0.0, [], left=1)
    assert not s.due(1.0)
    s.restart()
    assert s.due(1.0)
    assert json.loads(s.announce(1.0, [], left=1))["event"] == "started"
