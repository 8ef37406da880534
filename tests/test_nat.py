"""Across two NATs (issue 15): a seeder and a fetcher in two homes, each behind its own
Linux NAT router, meet through `p2p serve-signal` in a "public" network and transfer over
the NAT mappings (hole punching, a server-reflexive pair found with coturn as STUN server);
behind symmetric NATs (`--random-fully`) the same transfer goes through coturn as TURN
relay, and without a relay the fetcher says so in one line. tests/nat_helpers.py builds
the namespaces; these tests need root, iptables and Debian's coturn, and skip otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nat_helpers
import pytest
from conftest import Proc, Procs, make_file, sha256
from nat_helpers import NatLab
from turn_helpers import coturn_config

from p2pcli.errors import ExitCode

SIZE = 3 * 1024 * 1024 + 77
SECRET = "nat lab secret"


@pytest.fixture(params=["cone", "symmetric"])
def lab(request, procs: Procs) -> Iterator[NatLab]:
    why = nat_helpers.unavailable()
    if why:
        pytest.skip(why)
    lab = NatLab(symmetric=request.param == "symmetric")
    try:
        lab.start()
        yield lab
    finally:
        procs.stop_all()  # processes inside would keep a deleted namespace alive
        lab.close()


def start_coturn(procs: Procs, lab: NatLab, tmp_path: Path) -> Proc:
    """coturn in the public namespace: STUN for everyone, TURN with the REST API secret."""
    assert lab.pub is not None
    conf = tmp_path / "turnserver.conf"
    conf.write_text(coturn_config(lab.pub.addr, SECRET, workdir=tmp_path))
    turn = procs.start(lab.pub.cmd("turnserver", "-c", str(conf)), "turnserver")
    deadline = time.monotonic() + 20
    while not lab.udp_listening(nat_helpers.STUN_PORT):
        assert turn.p.poll() is None, f"turnserver exited:\n{turn.stdout[-3000:]}"
        assert time.monotonic() < deadline, f"turnserver never listened:\n{turn.stdout[-3000:]}"
        time.sleep(0.05)
    return turn


def start_signal(procs: Procs, lab: NatLab, *ice: str) -> Proc:
    assert lab.pub is not None
    sig = procs.start(lab.pub.p2p("serve-signal", "--host", lab.pub.addr, "--port",
                                  str(nat_helpers.SIGNAL_PORT), "--json", "--open-relay", *ice),
                      "signal")
    sig.wait_for(lambda p: any(e["event"] == "listening" for e in p.events()), 30, "listening")
    return sig


def seed_in_a(procs: Procs, lab: NatLab, src: Path) -> tuple[Proc, str]:
    """`p2p seed` in home "a": no ICE option, servers come from the signaling server."""
    assert lab.a is not None
    p = procs.start(lab.a.p2p("seed", str(src), "--signal", lab.signal_url, "--json"), "seed")
    link = p.wait_for(lambda p: p.stdout.strip(), 60, "the link")
    p.wait_for(lambda p: any(e["event"] == "ice-config" for e in p.events()), 30, "ice-config")
    return p, link


def fetch_in_b(procs: Procs, lab: NatLab, link: str, *extra: str) -> Proc:
    assert lab.b is not None
    return procs.start(lab.b.p2p("fetch", link, "-o", "out.bin", "--json", *extra), "fetch")


def event(proc: Proc, name: str) -> dict:
    found = [e for e in proc.events() if e["event"] == name]
    assert found, f"no {name} event:\n{proc.stderr[-3000:]}"
    return found[-1]


def reaches(lab: NatLab, src: str, dst: str) -> bool:
    """Whether namespace `src` ("a", "b") reaches `dst`'s private address (TCP port 9: a
    refusal means the packet arrived)."""
    node, other = getattr(lab, src), getattr(lab, dst)
    code = (f"import socket; s=socket.socket(); s.settimeout(1)\n"
            f"try: s.connect(('{other.addr}', 9))\n"
            f"except ConnectionRefusedError: print('reached')\n"
            f"except OSError: print('no path')\n")
    r = subprocess.run(node.cmd(sys.executable, "-c", code), capture_output=True, text=True,
                       timeout=30)
    assert r.stdout.strip() in ("no path", "reached"), r.stderr
    return r.stdout.strip() == "reached"


@pytest.mark.timeout(240)
def test_through_two_nats_by_the_mappings_or_the_relay(procs: Procs, lab: NatLab,
                                                         tmp_path: Path) -> None:
    assert lab.pub is not None and lab.a is not None and lab.b is not None
    assert not reaches(lab, "a", "b") and not reaches(lab, "b", "a")
    start_coturn(procs, lab, tmp_path)
    ice = ["--ice-server", lab.stun_url]
    if lab.symmetric:
        ice += ["--ice-server", lab.turn_url, "--turn-secret", SECRET]
    start_signal(procs, lab, *ice)
    src = make_file(tmp_path / "src.bin", SIZE)
    seeder, link = seed_in_a(procs, lab, src)
    f = fetch_in_b(procs, lab, link, "--timeout", "30")
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    joined = event(f, "peer-joined")
    first = next(e["t"] for e in f.events() if e["event"] == "piece-verified")
    print(f"first verified piece {first:.2f} s into the fetch command, start-up not counted "
          f"({joined['connection']})")
    print("candidate pair (fetcher):", joined["pair"])
    print("candidate pair (seeder):", event(seeder, "peer-joined")["pair"])
    local, remote = joined["pair"].split(" -> ")
    if lab.symmetric:
        # A new port per destination: no mapping the other side learned works.
        assert joined["connection"] == "relay", joined
        assert lab.pub.addr in joined["pair"], "relayed by the public TURN server"
    else:
        assert joined["connection"] == "srflx", joined
        # What "b" sends to is "a"'s router's public address (its NAT mapping), never a
        # private address: hole punching, not a route.
        assert local.split()[1].startswith(lab.b.addr + ":"), joined
        assert remote.split()[1].startswith(lab.routers["a"].addr + ":"), joined
    assert list(event(f, "done")["connections"].values()) == [joined["connection"]]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lab", ["symmetric"], indirect=True)
def test_symmetric_nats_without_a_relay_fail_in_words(procs: Procs, lab: NatLab,
                                                      tmp_path: Path) -> None:
    start_coturn(procs, lab, tmp_path)
    start_signal(procs, lab, "--ice-server", lab.stun_url)  # STUN only: no relay
    src = make_file(tmp_path / "src.bin", SIZE)
    _, link = seed_in_a(procs, lab, src)
    f = fetch_in_b(procs, lab, link, "--timeout", "20")
    assert f.wait(120) == ExitCode.NO_PEERS, f.stderr[-3000:]
    last = f.stderr.strip().splitlines()[-1]
    assert "no connection opened" in last and "TURN relay" in last, last
    assert not (tmp_path / "out.bin").exists()
