"""p2pcli/iceurls.py: the one parser of STUN/TURN URLs, used by the client, the doctor and
the signaling server, and the server lists built from it."""

from __future__ import annotations

import pytest
from aiortc import RTCIceServer

from p2pcli.errors import UsageError
from p2pcli.iceurls import (
    IceUrl,
    IceUrlError,
    parse_ice_servers,
    parse_ice_url,
    server_urls,
    servers_from_config,
    turn_urls,
)


@pytest.mark.parametrize("url, expected", [
    ("stun:1.2.3.4", "stun:1.2.3.4"),
    (" stun:stun.example.org:19302 ", "stun:stun.example.org:19302"),
    ("turn:host.example:3478?transport=tcp", "turn:host.example:3478?transport=tcp"),
    ("turns:host.example:5349", "turns:host.example:5349"),
    ("turn:[2001:db8::1]:3478", "turn:[2001:db8::1]:3478"),
    ("turn:alice:pw@host.example:3478", "turn:host.example:3478"),
])
def test_the_url_is_kept_without_credentials(url: str, expected: str):
    assert parse_ice_url(url).url == expected


def test_fields():
    assert parse_ice_url("turn:alice:s3cret@[::1]:3478?transport=tcp") == IceUrl(
        "turn", "[::1]", 3478, "tcp", "alice", "s3cret")
    assert parse_ice_url("stun:h") == IceUrl("stun", "h")
    assert parse_ice_url("turns:h").is_turn and not parse_ice_url("stun:h").is_turn


@pytest.mark.parametrize("password", ["p@ss", "a/b+c=", "what?", "", "x:y"])
def test_a_password_may_hold_any_character_up_to_the_last_at(password: str):
    u = parse_ice_url(f"turn:alice:{password}@turn.example.org:3478")
    assert (u.username, u.credential, u.url) == ("alice", password,
                                                 "turn:turn.example.org:3478")


@pytest.mark.parametrize("url, words", [
    ("http://x", "expected stun:"),
    ("stuns:host", "expected stun:"),
    ("turn:", "expected stun:"),
    ("turn:host:99999", "out of range"),
    ("turn:host:0", "out of range"),
    ("turn:host?transport=sctp", "expected stun:"),
    ("stun:u:p@host", "no credentials"),
    ("stun:host?transport=tcp", "no credentials or transport"),
])
def test_unusable_urls_are_usage_errors_that_show_the_forms(url: str, words: str):
    with pytest.raises(IceUrlError, match=words) as e:
        parse_ice_url(url)
    assert isinstance(e.value, UsageError) and url in e.value.message


def test_the_users_ice_servers_become_aiortc_servers():
    servers = parse_ice_servers(["stun:s.example, turn:alice:p@ss@t.example:3478",
                                 "turns:u.example"])
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        ("stun:s.example", None, None),
        ("turn:t.example:3478", "alice", "p@ss"),
        ("turns:u.example", None, None),
    ]
    assert parse_ice_servers([]) == parse_ice_servers([" , "]) == []
    with pytest.raises(UsageError):
        parse_ice_servers(["stun:ok.example,nonsense"])


def test_ice_config_payloads_skip_what_cannot_be_used():
    cfg = {"iceServers": [
        {"urls": "stun:s.example"},
        {"urls": ["turn:t.example:3478", "http://nope", 7, "turn:t.example:443?transport=tcp"],
         "username": "1600:peer", "credential": "c"},
        {"urls": ["ftp://x"]},
        {"urls": 5},
        "not a dict",
        {"urls": ["turns:u.example"], "username": 3},
    ]}
    servers = servers_from_config(cfg)
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        (["stun:s.example"], None, None),
        (["turn:t.example:3478", "turn:t.example:443?transport=tcp"], "1600:peer", "c"),
        (["turns:u.example"], None, None),
    ]
    for bad in ({}, {"iceServers": "x"}, [], None):
        assert servers_from_config(bad) == []  # type: ignore[arg-type]


def test_urls_and_turn_urls_of_servers():
    servers = [RTCIceServer("stun:s"), RTCIceServer(["turn:t", "turns:t"]), RTCIceServer("turn:u")]
    assert server_urls(servers) == ["stun:s", "turn:t", "turns:t", "turn:u"]
    assert turn_urls(servers) == ["turn:t", "turns:t", "turn:u"]
    assert turn_urls([RTCIceServer("stun:s")]) == []
