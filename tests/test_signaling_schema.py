"""Validation of signaling payloads (p2pcli/signaling/schema.py), without any I/O.

The property: whatever a client sends, the validators return a value or raise
`SignalSchemaError` with a known code, and nothing else.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.signaling.schema import (
    MAX_CANDIDATE_LEN,
    MAX_HASH_LEN,
    MAX_MESSAGE_BYTES,
    MAX_SDP_LEN,
    ErrorCode,
    Relay,
    SignalSchemaError,
    check_size,
    parse_announce,
    parse_relay,
    parse_ws_frame,
)
from p2pcli.signaling.server import OrjsonCodec

CODES = {v for k, v in vars(ErrorCode).items() if not k.startswith("_")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Dicts that look like real payloads, with the keys the validators read, of any type.
payloads = st.dictionaries(
    st.sampled_from(["hash", "peerId", "targetPeer", "fromPeer", "type", "ack", "sdp"])
    | st.text(max_size=8),
    json_values | st.text(min_size=0, max_size=300),
    max_size=6,
)
anything = json_values | payloads


# -- announce ---------------------------------------------------------------------------


def test_announce_returns_the_hash_and_ignores_peerId():
    assert parse_announce({"hash": "ab" * 32, "peerId": 5}) == "ab" * 32
    assert parse_announce({"hash": "any room name works"}) == "any room name works"
    assert parse_announce({"hash": "h" * MAX_HASH_LEN}) == "h" * MAX_HASH_LEN


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, ErrorCode.BAD_HASH),
        ({"hash": ""}, ErrorCode.BAD_HASH),
        ({"hash": 1}, ErrorCode.BAD_HASH),
        ({"hash": None}, ErrorCode.BAD_HASH),
        ({"hash": ["x"]}, ErrorCode.BAD_HASH),
        ({"hash": "h" * (MAX_HASH_LEN + 1)}, ErrorCode.BAD_HASH),
        ({"hash": "line\nbreak"}, ErrorCode.BAD_HASH),
        ({"hash": "nul\x00"}, ErrorCode.BAD_HASH),
        ({"hash": "c1\x85"}, ErrorCode.BAD_HASH),
        ({"hash": "ok", "peerId": {"an": "object"}}, ErrorCode.BAD_PAYLOAD),
        ({"hash": "ok", "peerId": "p" * 257}, ErrorCode.BAD_PAYLOAD),
        (None, ErrorCode.BAD_PAYLOAD),
        ("hash", ErrorCode.BAD_PAYLOAD),
        ([{"hash": "x"}], ErrorCode.BAD_PAYLOAD),
    ],
)
def test_announce_rejections(data: object, code: str):
    with pytest.raises(SignalSchemaError) as e:
        parse_announce(data)
    assert e.value.code == code
    assert e.value.message


# -- relay ------------------------------------------------------------------------------


def test_relay_keeps_the_payload_as_sent():
    data = {"targetPeer": "abc", "sdp": "v=0", "fromPeer": "x", "extra": [1]}
    relay = parse_relay("offer", data)
    assert relay == Relay("abc", data)
    assert relay.payload is data  # no copy on the hot path


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, ErrorCode.BAD_TARGET),
        ({"targetPeer": ""}, ErrorCode.BAD_TARGET),
        ({"targetPeer": 3}, ErrorCode.BAD_TARGET),
        ({"targetPeer": "p" * 65}, ErrorCode.BAD_TARGET),
        ({"targetPeer": "has space"}, ErrorCode.BAD_TARGET),
        ({"targetPeer": "é" * 5}, ErrorCode.BAD_TARGET),
        ({"targetPeer": "a", "hash": 5}, ErrorCode.BAD_HASH),
        ({"targetPeer": "a", "sdp": 5}, ErrorCode.BAD_SDP),
        ({"targetPeer": "a", "sdp": "v" * (MAX_SDP_LEN + 1)}, ErrorCode.BAD_SDP),
        ({"targetPeer": "a", "offer": {"type": "offer", "sdp": ["v=0"]}}, ErrorCode.BAD_SDP),
        ({"targetPeer": "a", "answer": {"sdp": "v" * (MAX_SDP_LEN + 1)}}, ErrorCode.BAD_SDP),
        ({"targetPeer": "a", "answer": 3}, ErrorCode.BAD_SDP),
        ({"targetPeer": "a", "candidate": 3}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "candidate": "c" * (MAX_CANDIDATE_LEN + 1)}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "candidate": {"candidate": ["x"]}}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "candidate": {"candidate": "c", "sdpMLineIndex": -1}},
         ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "sdpMLineIndex": True}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "sdpMLineIndex": "0"}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "sdpMid": "m" * 257}, ErrorCode.BAD_CANDIDATE),
        ({"targetPeer": "a", "candidate": {"usernameFragment": 1}}, ErrorCode.BAD_CANDIDATE),
        ("x", ErrorCode.BAD_PAYLOAD),
        (None, ErrorCode.BAD_PAYLOAD),
        ([], ErrorCode.BAD_PAYLOAD),
    ],
)
def test_relay_rejections(data: object, code: str):
    with pytest.raises(SignalSchemaError) as e:
        parse_relay("answer", data)
    assert e.value.code == code
    assert "answer" in e.value.message


@pytest.mark.parametrize(
    "extra",
    [
        {"sdp": "v=0\r\n", "type": "offer"},
        {"sdp": {"type": "answer", "sdp": "v=0"}},
        {"offer": {"type": "offer", "sdp": "v" * MAX_SDP_LEN}, "hash": "ab" * 32},
        {"answer": "v=0"},
        {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host",
         "sdpMid": "0", "sdpMLineIndex": 0},
        {"candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
                       "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": "u"}},
        {"candidate": None},
        {"candidate": ""},  # end of candidates
        {"anything": {"else": ["is", "the", "clients'", "business"]}},
    ],
)
def test_relay_accepts_the_shapes_webrtc_clients_send(extra: dict):
    data = {"targetPeer": "Ab-_09", **extra}
    assert parse_relay("offer", data).payload is data


def test_size_limit_is_inclusive():
    check_size("offer", MAX_MESSAGE_BYTES)
    with pytest.raises(SignalSchemaError) as e:
        check_size("offer", MAX_MESSAGE_BYTES + 1)
    assert e.value.code == ErrorCode.TOO_LARGE


# -- /ws frames -------------------------------------------------------------------------


def test_ws_frame_takes_type_and_ack_out_of_band():
    msg = parse_ws_frame('{"type":"offer","targetPeer":"a","ack":7}')
    assert (msg.type, msg.ack) == ("offer", 7)
    assert msg.data == {"type": "offer", "targetPeer": "a"}
    assert parse_ws_frame(b'{"type":"announce","hash":"h","ack":"x"}').ack == "x"


@pytest.mark.parametrize("ack", [True, None, 1.5, [1], {"a": 1}])
def test_ws_frame_ignores_acks_that_are_not_ints_or_strings(ack: object):
    msg = parse_ws_frame(json.dumps({"type": "announce", "ack": ack}))
    assert msg.ack is None
    assert "ack" not in msg.data


@pytest.mark.parametrize(
    "frame",
    ["", "nope", "[]", "1", '"s"', "{}", '{"type":""}', '{"type":1}', b"\xff\xfe", "\ud800"],
)
def test_ws_frame_rejections(frame: str | bytes):
    with pytest.raises(SignalSchemaError) as e:
        parse_ws_frame(frame)
    assert e.value.code == ErrorCode.BAD_PAYLOAD


def test_ws_frame_over_the_limit_is_refused_before_parsing():
    with pytest.raises(SignalSchemaError) as e:
        parse_ws_frame("{" * (MAX_MESSAGE_BYTES + 1))
    assert e.value.code == ErrorCode.TOO_LARGE


# -- properties -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(anything)
def test_announce_raises_only_its_typed_error(data: object):
    try:
        room = parse_announce(data)
    except SignalSchemaError as e:
        assert e.code in CODES
    else:
        assert isinstance(room, str) and 0 < len(room) <= MAX_HASH_LEN
        assert isinstance(data, dict) and data["hash"] == room


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["offer", "answer", "ice-candidate"]), anything)
def test_relay_raises_only_its_typed_error(event: str, data: object):
    try:
        relay = parse_relay(event, data)
    except SignalSchemaError as e:
        assert e.code in CODES
    else:
        assert relay.payload is data
        assert isinstance(relay.target, str) and relay.target


@settings(max_examples=400, deadline=None)
@given(st.text() | st.binary() | anything.map(lambda v: json.dumps(v)))
def test_ws_frame_raises_only_its_typed_error(frame: str | bytes):
    try:
        msg = parse_ws_frame(frame)
    except SignalSchemaError as e:
        assert e.code in CODES
    else:
        assert isinstance(msg.type, str) and msg.type == msg.data["type"]
        assert "ack" not in msg.data


# -- the JSON codec given to python-socketio --------------------------------------------


def test_codec_matches_the_standard_library_where_orjson_would_refuse():
    assert json.loads(OrjsonCodec.dumps({"a": [1, "é", None]})) == {"a": [1, "é", None]}
    assert OrjsonCodec.dumps({1: "int key"}) == '{"1":"int key"}'
    assert OrjsonCodec.dumps([2**70]) == f"[{2**70}]"
    assert OrjsonCodec.loads('{"x":1}') == {"x": 1}
    with pytest.raises(ValueError):  # what engine.io catches to mean "not JSON"
        OrjsonCodec.loads('2["event"]')
    assert isinstance(OrjsonCodec.dumps({}), str)
    assert orjson.loads(OrjsonCodec.dumps({"s": "x" * 10})) == {"s": "x" * 10}
