"""Room bookkeeping and the relay rule (p2pcli/signaling/rooms.py), without any I/O."""

from __future__ import annotations

import re

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pcli.signaling.rooms import Joined, Rooms, new_peer_id
from p2pcli.signaling.schema import ErrorCode, Relay, SignalSchemaError


def rooms_with(*peers: str) -> Rooms:
    r = Rooms()
    for p in peers:
        r.connect(p, "socket.io")
    return r


def test_peer_list_is_everyone_else_in_join_order():
    r = rooms_with("a", "b", "c")
    assert r.announce("a", "h") == Joined([], [])
    assert r.announce("b", "h") == Joined(["a"], ["a"])
    assert r.announce("c", "h") == Joined(["a", "b"], ["a", "b"])


def test_announcing_again_tells_nobody_new():
    r = rooms_with("a", "b")
    r.announce("a", "h")
    r.announce("b", "h")
    assert r.announce("b", "h") == Joined(["a"], [])
    assert r.stats.announces == 3


def test_relay_needs_a_shared_room():
    r = rooms_with("a", "b", "c")
    r.announce("a", "h1")
    r.announce("b", "h1")
    r.announce("c", "h2")
    assert r.route("b", Relay("a", {"targetPeer": "a"}))["fromPeer"] == "b"
    for sender, target in [("c", "a"), ("a", "c"), ("a", "nobody")]:
        with pytest.raises(SignalSchemaError) as e:
            r.route(sender, Relay(target, {"targetPeer": target}))
        assert e.value.code == ErrorCode.UNKNOWN_PEER


def test_a_peer_that_announced_nothing_reaches_nobody():
    r = rooms_with("a", "b")
    r.announce("a", "h")
    with pytest.raises(SignalSchemaError):
        r.route("b", Relay("a", {"targetPeer": "a"}))


def test_a_peer_never_reaches_itself():
    """Issue 12 item 4: a peer shares its rooms with itself, yet a message to its own id
    goes to nobody, whether it announced one room, several or none."""
    r = rooms_with("a", "b")
    for rooms in ([], ["h1"], ["h1", "h2"]):
        for room in rooms:
            r.announce("a", room)
            r.announce("b", room)
        with pytest.raises(SignalSchemaError) as e:
            r.route("a", Relay("a", {"targetPeer": "a"}))
        assert e.value.code == ErrorCode.UNKNOWN_PEER
        assert "own id" in e.value.message


def test_route_stamps_fromPeer_on_a_copy():
    r = rooms_with("a", "b")
    r.announce("a", "h")
    r.announce("b", "h")
    payload = {"targetPeer": "a", "fromPeer": "forged", "sdp": "x"}
    out = r.route("b", Relay("a", payload))
    assert out == {"targetPeer": "a", "fromPeer": "b", "sdp": "x"}
    assert payload["fromPeer"] == "forged"


def test_leaving_frees_empty_rooms_and_names_each_neighbour_once():
    r = rooms_with("a", "b", "c")
    for room in ("h1", "h2"):
        r.announce("a", room)
        r.announce("b", room)
    r.announce("c", "h3")
    assert r.disconnect("a") == ["b"]
    assert set(r.rooms) == {"h1", "h2", "h3"}
    assert r.disconnect("b") == []
    assert set(r.rooms) == {"h3"}
    assert r.disconnect("b") == []  # twice is harmless
    assert set(r.peers) == {"c"}


def test_a_left_peer_cannot_be_reached():
    r = rooms_with("a", "b")
    r.announce("a", "h")
    r.announce("b", "h")
    r.disconnect("a")
    with pytest.raises(SignalSchemaError):
        r.route("b", Relay("a", {}))


def test_rooms_per_peer_are_bounded():
    r = Rooms(max_rooms_per_peer=2)
    r.connect("a", "ws")
    r.connect("b", "ws")
    r.announce("a", "h1")
    r.announce("a", "h2")
    r.announce("a", "h2")  # already a member: fine
    r.announce("b", "h3")
    for room in ("h3", "h4"):  # joining an existing room counts too
        with pytest.raises(SignalSchemaError) as e:
            r.announce("a", room)
        assert e.value.code == ErrorCode.TOO_MANY_ROOMS
    assert r.peers["a"].rooms == {"h1", "h2"}


def test_snapshot():
    r = rooms_with("a", "b")
    r.connect("w", "ws")
    r.announce("a", "h")
    r.announce("b", "h")
    r.route("a", Relay("b", {}))
    r.stats.relayed += 1  # counted by the adapter once delivered
    snap = r.snapshot(uptime=12.34567)
    assert snap == {
        "peers": 3,
        "peersByTransport": {"socket.io": 2, "ws": 1},
        "rooms": 1,
        "relayed": 1,
        "announces": 2,
        "connects": 3,
        "errors": 0,
        "rateLimited": 0,
        "refused": 0,
        "uptime": 12.346,
    }


def test_peer_ids_look_like_socketio_sids():
    ids = {new_peer_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{20}", i) for i in ids)


class RoomsMachine(RuleBasedStateMachine):
    """Random connects, announces, relays and leaves; the bookkeeping stays consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.r = Rooms(max_rooms_per_peer=3)
        self.next_id = 0
        # The model: room -> members in join order.
        self.model: dict[str, list[str]] = {}

    def connected(self) -> list[str]:
        return sorted(self.r.peers)

    @rule()
    def connect(self) -> None:
        self.next_id += 1
        self.r.connect(f"p{self.next_id}", "socket.io")

    @precondition(lambda self: self.r.peers)
    @rule(data=st.data(), room=st.sampled_from(["r1", "r2", "r3", "r4", "r5"]))
    def announce(self, data: st.DataObject, room: str) -> None:
        peer = data.draw(st.sampled_from(self.connected()))
        members = self.model.get(room, [])
        try:
            joined = self.r.announce(peer, room)
        except SignalSchemaError as e:
            assert e.code == ErrorCode.TOO_MANY_ROOMS
            assert peer not in members and len(self.r.peers[peer].rooms) == 3
            return
        others = [p for p in members if p != peer]
        assert joined.peers == others
        assert joined.notify == ([] if peer in members else others)
        if peer not in members:
            self.model[room] = [*members, peer]

    @precondition(lambda self: len(self.r.peers) >= 2)
    @rule(data=st.data())
    def relay(self, data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from(self.connected()))
        target = data.draw(st.sampled_from(self.connected()))
        # Two peers sharing a room; a peer never messages itself (issue 12, item 4).
        share = sender != target and any(sender in m and target in m for m in self.model.values())
        try:
            out = self.r.route(sender, Relay(target, {"targetPeer": target, "fromPeer": "x"}))
        except SignalSchemaError:
            assert not share
        else:
            assert share and out["fromPeer"] == sender

    @precondition(lambda self: self.r.peers)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        peer = data.draw(st.sampled_from(self.connected()))
        expected = {p for m in self.model.values() if peer in m for p in m} - {peer}
        notified = self.r.disconnect(peer)
        assert len(notified) == len(set(notified))
        assert set(notified) == expected
        for room in list(self.model):
            self.model[room] = [p for p in self.model[room] if p != peer]
            if not self.model[room]:
                del self.model[room]

    @invariant()
    def matches_the_model(self) -> None:
        assert {k: list(v) for k, v in self.r.rooms.items()} == self.model
        for pid, peer in self.r.peers.items():
            assert peer.rooms == {room for room, m in self.model.items() if pid in m}


TestRoomsMachine = RoomsMachine.TestCase
TestRoomsMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
