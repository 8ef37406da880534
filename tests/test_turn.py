"""Across networks: STUN/TURN servers handed out by serve-signal, proven through real coturn.

- The signaling server's `ice-config` (p2pcli/signaling/turncreds.py): TURN REST API
  credentials as coturn's use-auth-secret checks them, the event's shape, and that it
  reaches clients of both transports before anything else.
- Checking servers (p2pcli/iceprobe.py) against a real coturn on loopback: a working
  allocation, refused credentials, nothing listening; choosing the first that works.
- In network namespaces (tests/turn_helpers.py): two peers with no route between them
  share a file through coturn with no ICE option of their own, and report a relayed pair;
  the same peers with a route use a host pair; `p2p doctor` names a TURN server that
  refuses the credentials and one that is down; fetch falls back to a direct connection
  when the TURN server is down, and fails in plain words when there is no way through.

The namespace tests need root, `ip netns` and Debian's coturn (`turnserver`), and skip
with the reason otherwise; the namespaces are deleted whatever happens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import socketio
import turn_helpers
from aiohttp import ClientSession
from aiortc import RTCIceServer
from conftest import Proc, Procs, make_file, running_lab, sha256
from turn_helpers import (
    SECRET,
    TurnLab,
    coturn_config,
    event,
    fetch_in,
    reaches,
    seed_in,
    start_coturn,
    start_signal,
)

from p2pcli.errors import UsageError
from p2pcli.iceprobe import check_server, choose_ice_servers
from p2pcli.iceurls import parse_ice_url, servers_from_config
from p2pcli.signaling.client import SignalHandlers, SignalingClient
from p2pcli.signaling.server import start_signal_server
from p2pcli.signaling.turncreds import IceConfig, turn_credentials

SIZE = 4 * 1024 * 1024

# -- the ice-config the server hands out (sans I/O) -------------------------------------------


def test_turn_credentials_are_coturns_rest_api_scheme():
    username, credential = turn_credentials("s3cret", "peerA", 1_700_000_000)
    assert username == "1700000000:peerA"
    expected = hmac.new(b"s3cret", b"1700000000:peerA", hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_payload_issues_credentials_per_peer_and_never_the_secret():
    ice = IceConfig.from_options(
        ["stun:stun.example.org", "turn:turn.example.org:3478",
         "turn:turn.example.org:443?transport=tcp"], SECRET, ttl=600)
    assert ice is not None
    a, b = ice.payload("peerA", 1000.0), ice.payload("peerB", 1000.0)
    assert a["iceServers"][0] == {"urls": ["stun:stun.example.org"]}
    turn = a["iceServers"][1]
    # One entry for one server reachable two ways, as browsers expect.
    assert turn["urls"] == ["turn:turn.example.org:3478",
                            "turn:turn.example.org:443?transport=tcp"]
    assert turn["username"] == "1600:peerA"
    assert turn["credential"] == turn_credentials(SECRET, "peerA", 1600)[1]
    assert b["iceServers"][1]["username"] == "1600:peerB"
    assert SECRET not in repr(a) + repr(b)
    assert ice.refresh_after == 300


def test_fixed_credentials_in_the_url_are_handed_out_as_given():
    ice = IceConfig.from_options(["turn:alice:pw@turn.example.org"])
    assert ice is not None and ice.refresh_after is None
    assert ice.payload("p", 0)["iceServers"] == [
        {"urls": ["turn:turn.example.org"], "username": "alice", "credential": "pw"}]


@pytest.mark.parametrize("urls, secret, words", [
    (["http://x"], None, "expected stun:"),
    (["turn:host:99999"], SECRET, "out of range"),
    (["stun:u:p@host"], None, "no credentials"),
    (["turn:host"], None, "needs credentials"),
    ([], SECRET, "needs a TURN server"),
    (["turn:u:p@host"], SECRET, "no --ice-server turn:HOST URL would use it"),
])
def test_option_mistakes_are_refused_in_words(urls, secret, words):
    # A malformed URL (iceurls.IceUrlError) or a combination that cannot work
    # (turncreds.IceConfigError): both are usage errors, exit 2 in one line.
    with pytest.raises(UsageError, match=words):
        IceConfig.from_options(urls, secret)


def test_no_ice_servers_means_no_ice_config():
    assert IceConfig.from_options([]) is None


# -- the event on the wire ---------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_both_transports_get_ice_config_first():
    ice = IceConfig.from_options(["stun:192.0.2.1", "turn:192.0.2.1"], SECRET, ttl=600)
    server = await start_signal_server("127.0.0.1", 0, ice_config=ice)
    sio = socketio.AsyncClient()
    seen: list[tuple[str, dict]] = []
    got_list = asyncio.Event()

    @sio.on("*")
    async def anything(event: str, data: dict) -> None:
        seen.append((event, data))
        if event == "peer-list":
            got_list.set()

    try:
        await sio.connect(server.url, transports=["websocket"])
        await sio.emit("announce", {"hash": "ab" * 32})
        await asyncio.wait_for(got_list.wait(), 10)
        assert [e for e, _ in seen] == ["ice-config", "peer-list"]
        cfg = seen[0][1]
        assert cfg["iceServers"][1]["username"].endswith(":" + sio.get_sid())
        assert servers_from_config(cfg)[1].credential == cfg["iceServers"][1]["credential"]
        async with ClientSession() as http, http.ws_connect(server.url + "/ws") as ws:
            welcome = await asyncio.wait_for(ws.receive_json(), 10)
            frame = await asyncio.wait_for(ws.receive_json(), 10)
            assert frame["type"] == "ice-config"
            assert frame["iceServers"][1]["username"].endswith(":" + welcome["peerId"])
    finally:
        await sio.disconnect()
        await server.close()


@pytest.mark.timeout(30)
async def test_client_applies_ice_config_before_it_acts_on_the_peer_list():
    ice = IceConfig.from_options(["stun:192.0.2.1"])
    server = await start_signal_server("127.0.0.1", 0, ice_config=ice)
    order: list[str] = []
    listed = asyncio.Event()

    async def slow_ice_config(cfg: dict) -> None:
        await asyncio.sleep(0.5)  # as long as checking the servers may take
        order.append("ice-config applied")

    def peer_list(peers: list[str]) -> None:
        order.append("peer-list")
        listed.set()

    client = SignalingClient([server.url], SignalHandlers(peer_list=peer_list,
                                                          ice_config=slow_ice_config))
    try:
        await client.connect()
        await client.announce("ab" * 32, "me")
        await asyncio.wait_for(listed.wait(), 10)
        assert order == ["ice-config applied", "peer-list"]
    finally:
        await client.close()
        await server.close()


@dataclass(frozen=True)
class QuickRefresh(IceConfig):
    @property
    def refresh_after(self) -> float:
        return 0.2


@pytest.mark.timeout(30)
async def test_connected_clients_get_fresh_credentials_before_they_expire():
    ice = QuickRefresh((parse_ice_url("turn:192.0.2.1"),), SECRET, ttl=600)
    server = await start_signal_server("127.0.0.1", 0, ice_config=ice)
    sio = socketio.AsyncClient()
    configs: list[dict] = []
    again = asyncio.Event()

    @sio.on("ice-config")
    async def on_config(data: dict) -> None:
        configs.append(data)
        if len(configs) >= 3:
            again.set()

    try:
        await sio.connect(server.url, transports=["websocket"])
        await asyncio.wait_for(again.wait(), 10)
        await sio.disconnect()
        for _ in range(100):  # the refresh timer goes with the client
            if not server.hub._ice_timers:
                break
            await asyncio.sleep(0.05)
        assert not server.hub._ice_timers
    finally:
        await sio.disconnect()
        await server.close()


@pytest.mark.timeout(30)
def test_serve_signal_refuses_a_secret_without_a_turn_server(procs: Procs):
    p = procs.p2p("serve-signal", "--port", "0", "--turn-secret", "x", name="bad")
    assert p.wait(20) == 2
    assert "needs a TURN server" in p.stderr


# -- checking servers against a real coturn on loopback ----------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_coturn(procs: Procs, tmp_path: Path) -> Iterator[int]:
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver is not installed (scripts/test-all installs Debian's coturn)")
    port = _free_udp_port()
    conf = tmp_path / "turnserver.conf"
    conf.write_text(coturn_config("127.0.0.1", SECRET, port=port, workdir=tmp_path))
    turn = procs.start(["turnserver", "-c", str(conf)], "turnserver")
    deadline = time.monotonic() + 20
    while "Total General servers" not in turn.stdout and time.monotonic() < deadline:
        assert turn.p.poll() is None, turn.stdout[-2000:]
        time.sleep(0.05)
    yield port


def _rest(peer: str = "tester", secret: str = SECRET) -> tuple[str, str]:
    return turn_credentials(secret, peer, int(time.time()) + 600)


@pytest.mark.timeout(60)
async def test_check_server_allocates_refuses_and_finds_nobody(loopback_coturn: int):
    url = f"turn:127.0.0.1:{loopback_coturn}"
    good = RTCIceServer(urls=[url], username=_rest()[0], credential=_rest()[1])
    ok = await check_server(good, url)
    assert ok.ok and ok.address is not None and ok.address[0] == "127.0.0.1", ok
    bad = RTCIceServer(urls=[url], username=_rest(secret="wrong")[0],
                       credential=_rest(secret="wrong")[1])
    refused = await check_server(bad, url)
    assert (refused.ok, refused.problem) == (False, "credentials")
    assert "rejected the credentials (401" in refused.message
    expired = turn_credentials(SECRET, "tester", int(time.time()) - 60)
    old = await check_server(RTCIceServer([url], *expired), url)
    assert old.problem == "credentials", old
    down = f"turn:127.0.0.1:{_free_udp_port()}"
    nobody = await check_server(RTCIceServer([down], *_rest()), down, timeout=2)
    assert (nobody.ok, nobody.problem) == (False, "refused")
    assert "nothing is listening" in nobody.message
    stun = await check_server(RTCIceServer([f"stun:127.0.0.1:{loopback_coturn}"]),
                              f"stun:127.0.0.1:{loopback_coturn}")
    assert stun.ok and stun.address is not None and stun.address[0] == "127.0.0.1"


@pytest.mark.timeout(60)
async def test_choose_keeps_the_first_turn_server_that_works(loopback_coturn: int):
    down = f"turn:127.0.0.1:{_free_udp_port()}"
    good = f"turn:127.0.0.1:{loopback_coturn}"
    warnings: list[str] = []
    chosen = await choose_ice_servers(
        [RTCIceServer([down, good], *_rest()),
         RTCIceServer([f"stun:127.0.0.1:{loopback_coturn}"])],
        warn=warnings.append,
    )
    assert [s.urls for s in chosen] == [[f"stun:127.0.0.1:{loopback_coturn}"], [good]]
    assert chosen[1].username == _rest()[0]
    assert len(warnings) == 1 and "nothing is listening" in warnings[0]
    warnings.clear()
    assert await choose_ice_servers([RTCIceServer([good], *_rest(secret="wrong"))],
                                    warn=warnings.append) == []
    assert "rejected the credentials" in warnings[0]
    assert "only direct connections" in warnings[-1]


# -- two networks, one TURN server -----------------------------------------------------------


@pytest.fixture
def lab(procs: Procs) -> Iterator[TurnLab]:
    with running_lab(procs, TurnLab(), turn_helpers.unavailable()) as lab:
        yield lab


def no_path_between(lab: TurnLab) -> bool:
    """Whether "a" truly cannot reach "b"."""
    assert lab.a is not None and lab.b is not None
    return not reaches(lab.a, lab.b.addr)


@pytest.mark.timeout(240)
def test_no_route_between_peers_file_crosses_the_relay(procs: Procs, lab: TurnLab,
                                                         tmp_path: Path):
    assert no_path_between(lab)
    start_coturn(procs, lab, tmp_path)
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    src = make_file(tmp_path / "src.bin", SIZE)
    seeder, link = seed_in(procs, lab, src)
    f = fetch_in(procs, lab, link, "--timeout", "30")
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    assert event(f, "ice-config")["servers"] == [[lab.turn_url]]
    assert event(f, "peer-joined")["connection"] == "relay"
    done = event(f, "done")
    assert list(done["connections"].values()) == ["relay"], done
    assert event(seeder, "peer-joined")["connection"] == "relay"


@pytest.mark.timeout(240)
def test_with_a_route_the_same_peers_connect_directly(procs: Procs, lab: TurnLab,
                                                      tmp_path: Path):
    lab.routed(True)
    assert not no_path_between(lab)
    start_coturn(procs, lab, tmp_path)
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    src = make_file(tmp_path / "src.bin", SIZE)
    _, link = seed_in(procs, lab, src)
    f = fetch_in(procs, lab, link, "--timeout", "30")
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    assert event(f, "ice-config")["servers"] == [[lab.turn_url]]  # TURN was on offer
    assert event(f, "peer-joined")["connection"] == "host"
    assert list(event(f, "done")["connections"].values()) == ["host"]


def doctor_in(procs: Procs, lab: TurnLab, name: str = "doctor") -> Proc:
    assert lab.b is not None
    return procs.start(lab.b.p2p("doctor", "--signal", lab.signal_url, "--json",
                                 "--timeout", "2"), name)


def checks(proc: Proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == "check" and e["check"] == kind]


@pytest.mark.timeout(240)
def test_doctor_passes_through_a_working_relay(procs: Procs, lab: TurnLab, tmp_path: Path):
    relay, b = lab.relay, lab.b
    assert relay is not None and b is not None
    start_coturn(procs, lab, tmp_path)
    start_signal(procs, lab, "--ice-server", f"stun:{relay.addr}",
                 "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    d = doctor_in(procs, lab)
    assert d.wait(90) == 0, d.stderr[-3000:]
    assert checks(d, "signaling")[0]["status"] == "ok"
    stun, turn = checks(d, "stun")[0], checks(d, "turn")[0]
    # STUN: b as the server sees it; TURN: a relay address on the TURN server.
    assert stun["status"] == "ok" and stun["address"].startswith(b.addr + ":")
    assert turn["status"] == "ok" and turn["address"].startswith(relay.addr + ":")
    conn = checks(d, "connection")[0]
    assert (conn["status"], conn["connection"], conn["policy"]) == ("ok", "relay", "relay")
    assert (event(d, "doctor")["ok"], event(d, "doctor")["failed"]) == (True, [])


@pytest.mark.timeout(240)
def test_doctor_says_which_turn_server_refuses_and_which_is_down(
    procs: Procs, lab: TurnLab, tmp_path: Path
):
    assert lab.relay is not None
    start_coturn(procs, lab, tmp_path, secret="the TURN server's own secret")
    down = f"turn:{lab.relay.addr}:{turn_helpers.TURN_PORT + 1}"
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--ice-server", down,
                 "--turn-secret", SECRET)
    d = doctor_in(procs, lab)
    assert d.wait(90) == 7, d.stderr[-3000:]
    refused, nobody = checks(d, "turn")
    assert (refused["url"], refused["status"], refused["problem"]) == (
        lab.turn_url, "fail", "credentials")
    assert "rejected the credentials (401 Unauthorized)" in refused["message"]
    assert "--turn-secret" in refused["message"]
    assert (nobody["url"], nobody["status"], nobody["problem"]) == (down, "fail", "refused")
    assert "nothing is listening" in nobody["message"]
    assert event(d, "doctor")["failed"] == ["turn", "turn"]
    # In words, without --json.
    assert lab.b is not None
    human = procs.start(lab.b.p2p("doctor", "--signal", lab.signal_url, "--timeout", "2"),
                        "doctor-human")
    assert human.wait(90) == 7
    assert "FAIL TURN: TURN server turn:" in human.stderr
    assert "rejected the credentials" in human.stderr


@pytest.mark.timeout(240)
def test_fetch_without_any_path_fails_in_words(procs: Procs, lab: TurnLab, tmp_path: Path):
    start_coturn(procs, lab, tmp_path, secret="the TURN server's own secret")
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    src = make_file(tmp_path / "src.bin", SIZE)
    _, link = seed_in(procs, lab, src)
    f = fetch_in(procs, lab, link, "--timeout", "8")
    assert f.wait(120) == 3, f.stderr[-3000:]
    warnings = [e["message"] for e in f.events() if e["event"] == "warning"]
    assert any("rejected the credentials" in w for w in warnings), warnings
    last = f.stderr.strip().splitlines()[-1]
    assert last.startswith("p2p: found 1 peer with") and "no connection opened" in last, last
    assert "no working TURN relay" in last and "p2p doctor" in last


@pytest.mark.timeout(240)
def test_fetch_falls_back_to_direct_when_the_turn_server_is_down(
    procs: Procs, lab: TurnLab, tmp_path: Path
):
    lab.routed(True)  # no coturn at all: the handed-out TURN server is down
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    src = make_file(tmp_path / "src.bin", SIZE)
    _, link = seed_in(procs, lab, src)
    f = fetch_in(procs, lab, link, "--timeout", "30")
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    assert event(f, "ice-config")["servers"] == []  # dropped: it did not answer
    assert any("nothing is listening" in e["message"]
               for e in f.events() if e["event"] == "warning")
    assert event(f, "peer-joined")["connection"] == "host"


@pytest.mark.timeout(240)
def test_servers_given_with_ice_server_override_and_are_checked_too(
    procs: Procs, lab: TurnLab, tmp_path: Path
):
    assert lab.relay is not None
    lab.routed(True)
    start_coturn(procs, lab, tmp_path)
    start_signal(procs, lab, "--ice-server", lab.turn_url, "--turn-secret", SECRET)
    src = make_file(tmp_path / "src.bin", SIZE)
    _, link = seed_in(procs, lab, src)
    mine = f"turn:nobody:wrong@{lab.relay.addr}:{turn_helpers.TURN_PORT}"
    f = fetch_in(procs, lab, link, "--timeout", "30", "--ice-server", mine)
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    # Checked once at start, dropped; the signaling server's working TURN is not used.
    assert [e["servers"] for e in f.events() if e["event"] == "ice-config"] == [[]]
    assert any("rejected the credentials" in e["message"]
               for e in f.events() if e["event"] == "warning")
    assert event(f, "peer-joined")["connection"] == "host"
