"""The signaling hub's rules, without sockets: admission, rates, answers, departures.

`SignalCore` takes decoded input and `now` and returns frames; these tests read those
frames as a client of each transport would (Socket.IO ``2["event",{...}]``, /ws JSON).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from p2pcli.signaling.core import Announced, Frame, Outcome, SignalCore
from p2pcli.signaling.limits import Limits
from p2pcli.signaling.schema import MAX_MESSAGE_BYTES, Relay, SignalSchemaError


def read(frame: Frame) -> tuple[str, dict[str, Any]]:
    """(event, payload) of a frame, whichever transport it is for."""
    if frame.text.startswith("2["):
        event, payload = json.loads(frame.text[1:])
        return event, payload
    payload = json.loads(frame.text)
    return payload["type"], payload


def sent(outcome: Outcome) -> list[tuple[str, str, dict[str, Any]]]:
    return [(f.peer, *read(f)) for f in outcome.frames]


def connected(core: SignalCore, *peers: tuple[str, str]) -> SignalCore:
    for peer_id, transport in peers:
        assert core.connect(peer_id, transport, None, f"10.0.0.{len(core.rooms.peers)}") is None
    return core


def announce(core: SignalCore, peer: str, room: str, now: float = 0.0) -> Outcome:
    step = core.announce(peer, {"hash": room}, now)
    assert isinstance(step, Announced), step
    return core.announced(peer, step)


# -- admission ---------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "why"), [(None, "none was given"), ("nope", "is wrong")])
def test_a_server_with_a_token_refuses_connections_without_it(token: str | None, why: str):
    core = SignalCore(token="s3cret")
    refusal = core.connect("a", "ws", token, "10.0.0.1")
    assert refusal is not None and refusal.code == "bad-token" and why in refusal.message
    assert core.rooms.stats.refused == 1 and not core.rooms.peers
    assert core.addresses.open == {}  # a refused connection holds no slot
    assert core.connect("a", "ws", "s3cret", "10.0.0.1") is None
    assert list(core.rooms.peers) == ["a"]


def test_an_address_holds_at_most_its_slots_until_one_leaves():
    core = SignalCore(limits=Limits(max_per_ip=2))
    assert core.connect("a", "ws", None, "10.0.0.1") is None
    assert core.connect("b", "ws", None, "10.0.0.1") is None
    refusal = core.connect("c", "ws", None, "10.0.0.1")
    assert refusal is not None and refusal.code == "too-many-connections"
    assert "2 connections are already open from 10.0.0.1" in refusal.message
    assert core.connect("d", "ws", None, "10.0.0.2") is None  # another address
    core.disconnect("a")
    assert core.connect("c", "ws", None, "10.0.0.1") is None
    assert core.addresses.open == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_an_engineio_session_holds_its_slot_from_its_opening():
    core = SignalCore(limits=Limits(max_per_ip=1))
    core.session_opened("e1", "10.0.0.1")
    core.session_opened("e2", "10.0.0.1")  # found no slot free
    assert core.addresses.open == {"10.0.0.1": 1}
    # The first connects on the slot it holds; the second is refused even if one frees.
    assert core.connect("s1", "socket.io", None, "10.0.0.1", session="e1") is None
    core.session_closed("e1")
    refusal = core.connect("s2", "socket.io", None, "10.0.0.1", session="e2")
    assert refusal is not None and refusal.code == "too-many-connections"
    # The peer's departure does not free the session's slot twice.
    core.disconnect("s1")
    core.session_closed("e2")
    assert core.addresses.open == {} and core.sessions == {}


# -- announce ----------------------------------------------------------------------------


def test_an_announce_answers_a_peer_list_and_tells_the_room_in_each_transport():
    core = connected(SignalCore(), ("w", "ws"), ("s", "socket.io"), ("new", "socket.io"))
    announce(core, "w", "room")
    announce(core, "s", "room")
    out = announce(core, "new", "room")
    assert out.ack == {"ok": True, "peers": ["w", "s"]}
    assert sent(out) == [
        ("new", "peer-list", {"peers": ["w", "s"], "hash": "room"}),
        ("w", "new-peer", {"type": "new-peer", "peerId": "new", "hash": "room"}),
        ("s", "new-peer", {"peerId": "new", "hash": "room"}),
    ]
    # Again: a fresh peer-list, nobody told twice.
    assert sent(announce(core, "new", "room")) == [
        ("new", "peer-list", {"peers": ["w", "s"], "hash": "room"})
    ]


def test_a_cluster_peer_list_replaces_this_nodes():
    core = connected(SignalCore(clustered=True), ("a", "ws"))
    step = core.announce("a", {"hash": "room"}, 0.0)
    assert isinstance(step, Announced) and step.new and step.room == "room"
    out = core.announced("a", step, ["elsewhere"])
    assert out.ack == {"ok": True, "peers": ["elsewhere"]}
    assert sent(out) == [("a", "peer-list", {"type": "peer-list", "peers": ["elsewhere"],
                                              "hash": "room"})]


@pytest.mark.parametrize(("data", "code"), [
    ("room", "bad-payload"),
    ({"hash": ""}, "bad-hash"),
    ({"hash": "r", "pad": "x" * MAX_MESSAGE_BYTES}, "too-large"),
])
def test_a_bad_announce_gets_an_error_event_and_a_nack(data: object, code: str):
    core = connected(SignalCore(), ("a", "socket.io"))
    out = core.announce("a", data, 0.0)
    assert isinstance(out, Outcome)
    assert out.ack["ok"] is False and out.ack["code"] == code
    [(peer, event, body)] = sent(out)
    assert (peer, event, body["code"], body["event"]) == ("a", "error", code, "announce")
    assert core.rooms.stats.errors == 1 and core.rooms.rooms == {}


# -- relay -------------------------------------------------------------------------------


def test_a_relay_reaches_its_target_with_the_senders_id():
    core = connected(SignalCore(), ("a", "socket.io"), ("b", "ws"))
    announce(core, "a", "room")
    announce(core, "b", "room")
    out = core.relay("a", "offer", {"targetPeer": "b", "sdp": "v=0", "fromPeer": "forged"}, 0)
    assert isinstance(out, Outcome) and out.ack == {"ok": True}
    assert sent(out) == [("b", "offer", {"targetPeer": "b", "sdp": "v=0", "fromPeer": "a",
                                         "type": "offer"})]
    back = core.relay("b", "answer", {"targetPeer": "a", "sdp": "v=0"}, 0)
    assert isinstance(back, Outcome)
    assert back.frames[0].text == '2["answer",{"targetPeer":"a","sdp":"v=0","fromPeer":"b"}]'
    assert core.rooms.stats.relayed == 2


def test_a_relay_outside_the_senders_rooms_is_refused_alike_for_strangers_and_ghosts():
    core = connected(SignalCore(), ("a", "socket.io"), ("b", "ws"))
    announce(core, "a", "room")
    announce(core, "b", "other")
    for target in ("b", "nobody"):
        out = core.relay("a", "offer", {"targetPeer": target}, 0)
        assert isinstance(out, Outcome)
        [(peer, event, body)] = sent(out)
        assert (peer, event, body["code"], body["event"]) == ("a", "error", "unknown-peer",
                                                              "offer")
        assert out.ack["code"] == "unknown-peer"
    assert core.rooms.stats.relayed == 0


def test_a_relay_too_large_for_its_targets_transport_is_refused():
    core = connected(SignalCore(), ("a", "socket.io"), ("b", "ws"))
    announce(core, "a", "room")
    announce(core, "b", "room")
    pad = "x" * (MAX_MESSAGE_BYTES - 60)
    out = core.relay("a", "ice-candidate", {"targetPeer": "b", "pad": pad}, 0)
    assert isinstance(out, Outcome) and out.ack["code"] == "too-large"
    assert [(p, e) for p, e, _ in sent(out)] == [("a", "error")]


def test_with_a_cluster_a_relay_to_a_peer_of_another_node_goes_to_the_cluster():
    core = connected(SignalCore(clustered=True), ("a", "socket.io"))
    step = core.relay("a", "offer", {"targetPeer": "remote1", "sdp": "v=0"}, 0)
    assert isinstance(step, Relay) and step.target == "remote1"
    assert core.relayed_remotely().ack == {"ok": True}
    assert core.rooms.stats.relayed == 1
    # Without one, the same is refused here.
    alone = connected(SignalCore(), ("a", "socket.io"))
    out = alone.relay("a", "offer", {"targetPeer": "remote1"}, 0)
    assert isinstance(out, Outcome) and out.ack["code"] == "unknown-peer"


# -- rates -------------------------------------------------------------------------------


def test_over_its_rate_a_connection_is_refused_and_paused_until_a_token_is_back():
    core = connected(SignalCore(limits=Limits(message_rate=2, burst_seconds=1)),
                     ("a", "ws"))
    assert core.unknown_type("a", "x", 0.0).pause == 0
    assert core.unknown_type("a", "x", 0.0).pause == 0
    out = core.unknown_type("a", "x", 0.0)
    assert out.ack["code"] == "rate-limited" and 0.5 < out.pause <= 1.0
    [(_, event, body)] = sent(out)
    assert (event, body["code"], body["event"]) == ("error", "rate-limited", "x")
    assert "2 events and 10 announces per second" in body["message"]
    assert core.rooms.stats.rate_limited == 1
    # Half a second later a token is back.
    assert core.unknown_type("a", "x", 0.5).ack["code"] == "unknown-event"


def test_announces_have_their_own_rate_and_a_refused_one_costs_no_message_token():
    core = connected(SignalCore(limits=Limits(announce_rate=1, burst_seconds=2)),
                     ("a", "ws"))
    assert isinstance(core.announce("a", {"hash": "r1"}, 0.0), Announced)
    assert isinstance(core.announce("a", {"hash": "r2"}, 0.0), Announced)
    refused = core.announce("a", {"hash": "r3"}, 0.0)
    assert isinstance(refused, Outcome) and refused.ack["code"] == "rate-limited"
    assert core.meters["a"].messages.tokens == 200 - 2  # 100/s, 2 s of burst
    assert isinstance(core.announce("a", {"hash": "r3"}, 1.0), Announced)


# -- what is not understood --------------------------------------------------------------


def test_an_unknown_socketio_event_is_only_nacked_but_a_ws_type_gets_an_error():
    core = connected(SignalCore(), ("s", "socket.io"), ("w", "ws"))
    sio = core.unknown_event("s", ["not", "a", "name"], 0)
    assert sio.frames == [] and sio.ack == {
        "ok": False, "code": "unknown-event", "error": "unknown event \"['not', 'a', 'name']\""
    }
    ws = core.unknown_type("w", "nonsense", 0)
    assert sent(ws) == [("w", "error", {"type": "error", "message": "unknown type 'nonsense'",
                                        "code": "unknown-event", "event": "nonsense"})]
    assert core.rooms.stats.errors == 1


def test_a_ws_frame_that_is_no_event_gets_an_error_without_an_event_name():
    core = connected(SignalCore(), ("w", "ws"))
    out = core.bad_frame("w", SignalSchemaError("bad-payload", "frame is not valid JSON"), 0)
    assert sent(out) == [("w", "error", {"type": "error", "message": "frame is not valid JSON",
                                         "code": "bad-payload"})]


# -- departures --------------------------------------------------------------------------


def test_a_departure_tells_each_neighbour_once_unless_the_server_is_stopping():
    core = connected(SignalCore(), ("a", "ws"), ("b", "socket.io"), ("c", "ws"))
    for room in ("r1", "r2"):
        for peer in ("a", "b"):
            announce(core, peer, room)
    announce(core, "c", "r2")
    gone = core.disconnect("a")
    assert gone.rooms == {"r1", "r2"}
    assert sorted(sent(Outcome({}, gone.frames))) == [
        ("b", "peer-left", {"peerId": "a"}),
        ("c", "peer-left", {"type": "peer-left", "peerId": "a"}),
    ]
    assert "a" not in core.meters and core.addresses.open.get("10.0.0.0") is None
    core.closing = True
    assert core.disconnect("b").frames == []
    assert core.disconnect("nobody").frames == []  # unknown ids are ignored
    assert core.event("b", "ice-config", {}) is None  # nothing goes to who is gone
