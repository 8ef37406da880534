"""Peers as a person can tell them apart, and waits said as they begin (issue 16, rough edges 3
and 4): a short id that stays distinct, the connection kind and the far address; "waiting for
peers (N s)" once a rendezvous is up; the last peer leaving mid-fetch said at once."""

from __future__ import annotations

import pytest

from p2p_cli.output import Reporter
from p2p_cli.peernames import PeerNames, remote_address, split
from p2pcli import events

SIO = "Jm8a1k2LZQ1xAbCdEfGh"
TRACKER = "wt0:" + "a1b2c3d4e5" * 4
PEERJS = "pj0:3.k9x8w7v6u5"
PEX = "px:" + "0f" * 20


def test_each_kind_of_id_gets_a_short_name_with_its_rendezvous() -> None:
    names = PeerNames()
    assert [names(p) for p in (SIO, TRACKER, PEERJS, PEX)] == [
        "Jm8a1k", "wt0:a1b2c3", "pj0:3.k9x8", "px:0f0f0f"]
    assert names(SIO) == "Jm8a1k"  # the same peer keeps its name
    assert split(TRACKER) == ("wt0:", TRACKER[4:]) and split(SIO) == ("", SIO)


def test_names_stay_distinct_when_ids_share_their_start() -> None:
    names = PeerNames()
    a, b, c = "abcdef111111", "abcdef222222", "wt0:abcdef11"
    assert len({names(a), names(b), names(c)}) == 3
    assert names(a) == "abcdef" and names(b).startswith("abcdef2")
    # The same body through two rendezvous is two peers, and reads so.
    assert names("wt0:" + "ab" * 20) != names("wt1:" + "ab" * 20)


def test_tracker_peers_are_named_past_their_client_tag() -> None:
    """Every p2p tracker peer id starts "-P2P010-" (WebTorrent's "-WW0208-"): named by
    its first characters, all of them read "wt0:2d5032"."""
    names = PeerNames()
    ours = ["wt0:" + (b"-P2P010-" + bytes([n]) * 12).hex() for n in (1, 2)]
    webtorrent = "wt0:" + (b"-WW0208-" + b"\xab" * 12).hex()
    assert [names(p) for p in (*ours, webtorrent)] == [
        "wt0:010101", "wt0:020202", "wt0:ababab"]


def test_the_far_address_comes_from_the_pair() -> None:
    assert remote_address("host 10.0.0.1:5000 -> srflx 203.0.113.7:40000") == "203.0.113.7:40000"
    assert remote_address("relay [2001:db8::1]:3478 -> host [2001:db8::2]:9") == "[2001:db8::2]:9"
    assert remote_address(None) is None and remote_address("garbage") is None


def render(reporter: Reporter, evs: list[events.Event], capsys: pytest.CaptureFixture[str]
           ) -> str:
    for ev in evs:
        reporter(ev)
    reporter.close()
    return capsys.readouterr().err


def test_a_joined_peer_reads_name_kind_and_address(capsys: pytest.CaptureFixture[str]) -> None:
    err = render(Reporter(), [events.PeerJoined(
        peer=TRACKER, connection="srflx", pair="host 10.0.0.1:1 -> srflx 203.0.113.7:40000")],
        capsys)
    assert err == "peer wt0:a1b2c3 connected (direct, through NAT, 203.0.113.7:40000)\n"


@pytest.mark.parametrize("first", [
    events.SignalingConnected(url="http://10.0.0.1:8080", peer="me"),
    events.Announced(via="tracker", url="wss://t.example"),
])
def test_waiting_is_said_once_a_rendezvous_is_up(first: events.Event,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    err = render(Reporter(wait=10.0), [first, events.Announced(via="peerjs", url="wss://p/")],
                 capsys)
    assert err.count("waiting for peers (10 s)") == 1
    # A seeder waits for as long as it runs: nothing to count down.
    assert "waiting" not in render(Reporter(), [first], capsys)


def test_the_last_peer_leaving_mid_fetch_is_said_at_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    joined = [events.PeerJoined(peer=p, connection="host") for p in (SIO, PEX)]
    left = [events.PeerLeft(peer=p, received=1, sent=0) for p in (SIO, PEX)]
    err = render(Reporter(wait=2.5), [*joined, left[0]], capsys)
    assert "left" not in err  # one peer is still there
    err = render(Reporter(wait=2.5), [*joined, *left], capsys)
    assert err.splitlines()[-1] == "peer px:0f0f0f, the last one, left; waiting for peers (2.5 s)"
    # Refused or never-joined peers leaving, and leaving after done, say nothing.
    assert render(Reporter(wait=2.5), [left[0]], capsys) == ""


@pytest.mark.parametrize("kind", ["peer_joined", "peer_left"])
def test_json_mode_carries_the_whole_id(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    ev = (events.PeerJoined(peer=TRACKER, connection="host") if kind == "peer_joined"
          else events.PeerLeft(peer=TRACKER, received=0, sent=0))
    line = json.loads(render(Reporter(json=True), [ev], capsys))
    assert line["peer"] == TRACKER


def test_warnings_call_a_known_peer_by_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    err = render(Reporter(), [events.PeerJoined(peer=TRACKER, connection="host"),
                              events.Warning(message=f"dropped peer {TRACKER}: flooding"),
                              events.Warning(message="dropped peer other-id: x")], capsys)
    assert "warning: dropped peer wt0:a1b2c3: flooding" in err
    assert "warning: dropped peer other-id: x" in err  # never seen: as the core said it
