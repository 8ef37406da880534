"""`p2p serve-signal` as a process, driven by python-socketio clients over both transports.

Each test reads as one rule of docs/SIGNALING.md. One server serves the whole module;
every test uses rooms of its own.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.register_assert_rewrite("signal_helpers")
from signal_helpers import Peers, SignalProcess, get_json, unique  # noqa: E402

# Fixtures: signal_server (one `p2p serve-signal` for the module), signal_peers.
pytest_plugins = ["signal_helpers"]

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


# -- announce ---------------------------------------------------------------------------


async def test_announce_answers_peer_list_and_tells_the_room(signal_peers: Peers, transport: str):
    room = unique()
    a, b, c = [await signal_peers.sio(transport) for _ in range(3)]
    assert await a.announce(room) == []
    assert await b.announce(room) == [a.id]
    assert (await a.next("new-peer"))["peerId"] == b.id
    # Everyone else, in join order; the announcer is not in its own list.
    assert await c.announce(room) == [a.id, b.id]
    assert (await a.next("new-peer"))["peerId"] == c.id
    assert (await b.next("new-peer"))["peerId"] == c.id
    await c.inbox.nothing("new-peer")


async def test_peer_list_and_new_peer_name_the_room(signal_peers: Peers, transport: str):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(room)
    await b.sio.emit("announce", {"hash": room, "peerId": "whatever"})
    assert await b.next("peer-list") == {"peers": [a.id], "hash": room}
    assert await a.next("new-peer") == {"peerId": b.id, "hash": room}


async def test_rooms_are_separate(signal_peers: Peers, transport: str):
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(unique())
    assert await b.announce(unique()) == []
    await a.inbox.nothing("new-peer")


async def test_announcing_again_refreshes_the_list_without_telling_others_twice(
    signal_peers: Peers, transport: str
):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    await a.next("new-peer")
    assert await b.announce(room) == [a.id]
    await a.inbox.nothing("new-peer")


async def test_one_connection_can_be_in_several_rooms(signal_peers: Peers, transport: str):
    r1, r2 = unique(), unique()
    a, b, c = [await signal_peers.sio(transport) for _ in range(3)]
    await a.announce(r1)
    await a.announce(r2)
    assert await b.announce(r1) == [a.id]
    assert await c.announce(r2) == [a.id]


async def test_announce_acknowledges_when_asked(signal_peers: Peers, transport: str):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    assert await a.call("announce", {"hash": room}) == {"ok": True, "peers": []}
    assert await b.call("announce", {"hash": room}) == {"ok": True, "peers": [a.id]}


# -- relay ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["offer", "answer", "ice-candidate"])
async def test_relay_reaches_the_target_only_with_every_field_and_fromPeer(
    signal_peers: Peers, transport: str, event: str
):
    room = unique()
    a, b, c = [await signal_peers.sio(transport) for _ in range(3)]
    for p in (a, b, c):
        await p.announce(room)
    payload = {
        "targetPeer": a.id,
        "fromPeer": "forged",  # the server overwrites it
        "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n",
        "type": "offer",
        "nested": {"list": [1, 2.5, None, True, "é"]},
    }
    await b.emit(event, payload)
    got = await a.next(event)
    assert got == {**payload, "fromPeer": b.id}
    await c.inbox.nothing(event)
    await b.inbox.nothing(event)


async def test_relay_acknowledges_when_asked(signal_peers: Peers, transport: str):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    assert await b.call("offer", {"targetPeer": a.id, "sdp": "x"}) == {"ok": True}
    assert (await a.next("offer"))["fromPeer"] == b.id


async def test_websocket_and_polling_peers_signal_each_other(signal_peers: Peers):
    room = unique()
    ws = await signal_peers.sio("websocket")
    poll = await signal_peers.sio("polling")
    await ws.announce(room)
    assert await poll.announce(room) == [ws.id]
    await poll.emit("offer", {"targetPeer": ws.id, "sdp": "o"})
    assert (await ws.next("offer"))["fromPeer"] == poll.id
    await ws.emit("answer", {"targetPeer": poll.id, "sdp": "a"})
    assert (await poll.next("answer"))["fromPeer"] == ws.id


async def test_a_stream_of_relays_arrives_in_order(signal_peers: Peers, transport: str):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    for i in range(50):
        await b.emit("ice-candidate", {"targetPeer": a.id, "i": i})
    assert [(await a.next("ice-candidate"))["i"] for _ in range(50)] == list(range(50))


# -- leaving ----------------------------------------------------------------------------


async def test_a_peer_that_leaves_is_announced_and_removed(signal_peers: Peers, transport: str):
    room = unique()
    a, b, c = [await signal_peers.sio(transport) for _ in range(3)]
    for p in (a, b, c):
        await p.announce(room)
    b_id = b.id
    await b.close()
    assert await a.next("peer-left") == {"peerId": b_id}
    assert await c.next("peer-left") == {"peerId": b_id}
    d = await signal_peers.sio(transport)
    assert await d.announce(room) == [a.id, c.id]


async def test_peer_left_is_sent_once_to_a_peer_sharing_several_rooms(signal_peers: Peers):
    r1, r2 = unique(), unique()
    a, b = [await signal_peers.sio() for _ in range(2)]
    for p in (a, b):
        await p.announce(r1)
        await p.announce(r2)
    b_id = b.id
    await b.close()
    assert await a.next("peer-left") == {"peerId": b_id}
    await a.inbox.nothing("peer-left")


async def test_empty_rooms_are_freed(signal_peers: Peers, signal_server: SignalProcess):
    before = await get_json(signal_server.url + "/stats")
    a = await signal_peers.sio()
    rooms = [unique() for _ in range(3)]
    for room in rooms:
        await a.announce(room)
    during = await get_json(signal_server.url + "/stats")
    assert during["rooms"] == before["rooms"] + 3
    await a.close()
    for _ in range(50):  # the disconnect is processed asynchronously
        after = await get_json(signal_server.url + "/stats")
        if after["rooms"] == before["rooms"]:
            break
        await asyncio.sleep(0.1)
    assert after["rooms"] == before["rooms"]
    assert after["peers"] == before["peers"]


async def test_a_left_peer_cannot_be_reached(signal_peers: Peers):
    room = unique()
    a, b = [await signal_peers.sio() for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    a_id = a.id
    await a.close()
    await b.next("peer-left")
    await b.emit("offer", {"targetPeer": a_id})
    assert (await b.next("error"))["code"] == "unknown-peer"


# -- bad input --------------------------------------------------------------------------

BAD_ANNOUNCES = [
    ({}, "bad-hash"),
    ({"peerId": "x"}, "bad-hash"),
    ({"hash": 42}, "bad-hash"),
    ({"hash": None}, "bad-hash"),
    ({"hash": ""}, "bad-hash"),
    ({"hash": ["a"]}, "bad-hash"),
    ({"hash": "h" * 257}, "bad-hash"),
    ("a string", "bad-payload"),
    (17, "bad-payload"),
    ([{"hash": "x"}], "bad-payload"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_ANNOUNCES)
async def test_bad_announce_gets_an_error_event(
    signal_peers: Peers, transport: str, payload: object, code: str
):
    a = await signal_peers.sio(transport)
    await a.emit("announce", payload)
    err = await a.next("error")
    assert err["code"] == code
    assert err["event"] == "announce"
    assert isinstance(err["message"], str) and err["message"]
    await a.inbox.nothing("peer-list", 0.1)


async def test_announce_without_payload_gets_an_error(signal_peers: Peers):
    a = await signal_peers.sio()
    await a.sio.emit("announce")
    assert (await a.next("error"))["code"] == "bad-payload"


async def test_bad_input_is_refused_in_the_acknowledgement_too(signal_peers: Peers, transport: str):
    a = await signal_peers.sio(transport)
    ack = await a.call("announce", {"hash": 5})
    assert ack["ok"] is False
    assert ack["code"] == "bad-hash"
    assert ack["error"]
    assert (await a.next("error"))["code"] == "bad-hash"


BAD_RELAYS = [
    ({"sdp": "x"}, "bad-target"),
    ({"targetPeer": 7}, "bad-target"),
    ({"targetPeer": ""}, "bad-target"),
    ({"targetPeer": None}, "bad-target"),
    ({"targetPeer": "x" * 65}, "bad-target"),
    ({"targetPeer": "no-such-peer"}, "unknown-peer"),
    ("just text", "bad-payload"),
    (3.5, "bad-payload"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_RELAYS)
async def test_bad_relay_gets_an_error_event(
    signal_peers: Peers, transport: str, payload: object, code: str
):
    a = await signal_peers.sio(transport)
    await a.announce(unique())
    await a.emit("offer", payload)
    err = await a.next("error")
    assert (err["code"], err["event"]) == (code, "offer")


async def test_a_stranger_cannot_message_a_peer_it_never_met(signal_peers: Peers, transport: str):
    a, b, stranger = [await signal_peers.sio(transport) for _ in range(3)]
    room = unique()
    await a.announce(room)
    await b.announce(room)
    await stranger.announce(unique())  # another room
    for event in ("offer", "answer", "ice-candidate"):
        await stranger.emit(event, {"targetPeer": a.id, "sdp": "evil"})
        assert (await stranger.next("error"))["code"] == "unknown-peer"
    # Not having announced anything at all is no better.
    lurker = await signal_peers.sio(transport)
    await lurker.emit("offer", {"targetPeer": a.id})
    assert (await lurker.next("error"))["code"] == "unknown-peer"
    await a.inbox.nothing("offer")


async def test_an_oversized_message_is_refused_and_not_relayed(signal_peers: Peers, transport: str):
    room = unique()
    a, b = [await signal_peers.sio(transport) for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    await b.emit("offer", {"targetPeer": a.id, "blob": "x" * 70_000})
    assert (await b.next("error"))["code"] == "too-large"
    await a.inbox.nothing("offer")
    # The connection is still usable.
    await b.emit("offer", {"targetPeer": a.id, "blob": "x" * 60_000})
    assert len((await a.next("offer"))["blob"]) == 60_000


async def test_unknown_events_are_ignored_but_nacked(signal_peers: Peers, transport: str):
    a = await signal_peers.sio(transport)
    await a.emit("no-such-event", {"x": 1})
    await a.inbox.nothing("error", 0.2)
    ack = await a.call("no-such-event", {})
    assert ack["ok"] is False and ack["code"] == "unknown-event"


async def test_bad_input_disturbs_nobody_else(signal_peers: Peers, signal_server: SignalProcess):
    room = unique()
    a, b = [await signal_peers.sio() for _ in range(2)]
    await a.announce(room)
    await b.announce(room)
    vandal = await signal_peers.sio()
    for payload in ("x", 1, None, [], {"hash": {}}, {"targetPeer": a.id}):
        for event in ("announce", "offer", "answer", "ice-candidate", "peer-list"):
            await vandal.emit(event, payload)
    await vandal.emit("offer", {"targetPeer": a.id, "sdp": "y" * 200_000})
    await b.emit("offer", {"targetPeer": a.id, "sdp": "fine"})
    assert (await a.next("offer"))["sdp"] == "fine"
    await a.inbox.nothing("error", 0.1)
    assert (await get_json(signal_server.url + "/healthz")) == {"ok": True}
    assert signal_server.proc.poll() is None


# -- HTTP -------------------------------------------------------------------------------


async def test_stats_counts_peers_rooms_and_relays(
    signal_peers: Peers, signal_server: SignalProcess
):
    before = await get_json(signal_server.url + "/stats")
    assert set(before) >= {"peers", "rooms", "relayed", "uptime", "peersByTransport"}
    room = unique()
    a, b = [await signal_peers.sio() for _ in range(2)]
    w = await signal_peers.ws()
    for p in (a, b, w):
        await p.announce(room)
    for _ in range(3):
        await b.emit("offer", {"targetPeer": a.id})
        await a.next("offer")
    after = await get_json(signal_server.url + "/stats")
    assert after["peers"] == before["peers"] + 3
    assert after["peersByTransport"]["ws"] == before["peersByTransport"].get("ws", 0) + 1
    assert after["rooms"] == before["rooms"] + 1
    assert after["relayed"] == before["relayed"] + 3
    assert after["uptime"] >= before["uptime"]


async def test_healthz(signal_server: SignalProcess):
    assert await get_json(signal_server.url + "/healthz") == {"ok": True}
