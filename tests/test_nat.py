"""Across two NATs (issue 15): a seeder and a fetcher in two homes, each behind its own
Linux NAT router, meet through `p2p serve-signal` in a "public" network and transfer over
the NAT mappings (hole punching, a server-reflexive pair found with coturn as STUN server);
behind symmetric NATs (`--random-fully`) the same transfer goes through coturn as TURN
relay, and without a relay the fetcher says so in one line. tests/nat_helpers.py builds
the namespaces; these tests need root, iptables and Debian's coturn, and skip otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import nat_helpers
import pytest
from conftest import Procs, make_file, running_lab, sha256, start_peerjs_server, start_ws_tracker
from nat_helpers import NatLab
from turn_helpers import (
    SECRET,
    event,
    fetch_in,
    reaches,
    seed_in,
    start_coturn,
    start_signal,
)

from p2pcli.errors import ExitCode

SIZE = 3 * 1024 * 1024 + 77


@pytest.fixture(params=["cone", "symmetric"])
def lab(request, procs: Procs) -> Iterator[NatLab]:
    lab = NatLab(symmetric=request.param == "symmetric")
    with running_lab(procs, lab, nat_helpers.unavailable()) as lab:
        yield lab


@pytest.mark.timeout(240)
def test_through_two_nats_by_the_mappings_or_the_relay(procs: Procs, lab: NatLab,
                                                         tmp_path: Path) -> None:
    assert lab.pub is not None and lab.a is not None and lab.b is not None
    assert not reaches(lab.a, lab.b.addr) and not reaches(lab.b, lab.a.addr)
    start_coturn(procs, lab, tmp_path)
    ice = ["--ice-server", lab.stun_url]
    if lab.symmetric:
        ice += ["--ice-server", lab.turn_url, "--turn-secret", SECRET]
    start_signal(procs, lab, *ice)
    src = make_file(tmp_path / "src.bin", SIZE)
    seeder, link = seed_in(procs, lab, src)
    f = fetch_in(procs, lab, link, "--timeout", "30")
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
    _, link = seed_in(procs, lab, src)
    # 8 s, as test_turn's no-path case: the attempt still trying then counts as not opened
    # (the connect timeout is 15 s; waiting 20 s for it to fail told nothing more).
    f = fetch_in(procs, lab, link, "--timeout", "8")
    assert f.wait(120) == ExitCode.NO_PEERS, f.stderr[-3000:]
    last = f.stderr.strip().splitlines()[-1]
    assert "no connection opened" in last and "TURN relay" in last, last
    assert not (tmp_path / "out.bin").exists()


def rendezvous_only(link: str, param: str, url: str) -> str:
    """`link` reduced to its hash and one rendezvous: nothing else can introduce the peers."""
    content = link.split("://", 1)[1].split("?", 1)[0]
    return f"p2p://{content}?{param}={quote(url, safe='')}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lab", ["cone"], indirect=True)
@pytest.mark.parametrize("kind", ["tracker", "peerjs"])
def test_through_two_nats_meeting_by_each_rendezvous(procs: Procs, lab: NatLab, kind: str,
                                                      tmp_path: Path) -> None:
    """The seeder in "a" and the fetcher in "b" meet through one public rendezvous (the
    signaling server's case is the test above) and hole-punch a server-reflexive pair."""
    assert lab.pub is not None and lab.a is not None
    start_coturn(procs, lab, tmp_path)  # as STUN server only
    ice = ["--ice-server", lab.stun_url]
    start = {"tracker": start_ws_tracker, "peerjs": start_peerjs_server}[kind]
    url, _ = start(procs, host=lab.pub.addr, prefix=lab.pub.cmd())
    flag, param = {"tracker": ("--tracker", "tr"), "peerjs": ("--peerjs", "peerjs")}[kind]
    src = make_file(tmp_path / "src.bin", SIZE)
    seeder = procs.start(lab.a.p2p("seed", str(src), flag, url, *ice, "--json"), "seed")
    link = seeder.wait_for(lambda p: p.stdout.strip(), 60, "the link")
    seeder.wait_for(lambda p: any(e["event"] == "announced" for e in p.events()), 30,
                    "the announce")
    f = fetch_in(procs, lab, rendezvous_only(link, param, url), *ice, "--timeout", "30")
    assert f.wait(180) == 0, f.stderr[-3000:]
    assert sha256(tmp_path / "out.bin") == sha256(src)
    joined = event(f, "peer-joined")
    first = next(e["t"] for e in f.events() if e["event"] == "piece-verified")
    print(f"{kind}: first verified piece {first:.2f} s into the fetch command; "
          f"pair {joined['pair']}")
    assert joined["peer"].startswith({"tracker": "wt0:", "peerjs": "pj0:"}[kind]), joined
    assert joined["connection"] == "srflx", joined
    local, remote = joined["pair"].split(" -> ")
    assert local.split()[1].startswith(lab.b.addr + ":"), joined
    assert remote.split()[1].startswith(lab.routers["a"].addr + ":"), joined
