"""Peer exchange with real p2p processes (issue 15, docs/PROTOCOL.md 3.5), over loopback.

- The swarm survives its rendezvous: seeder A and fetcher B (--seed-after) meet through a
  signaling server, which is then killed. C meets only B (through a tracker A never
  announced to), learns A's id from B, offers to A through B, and connects to A.
- Mixed swarms: today's CLI and the CLI from before extensions (`git archive b9af850`)
  transfer in both directions, whichever side offers.
- A hostile peer that speaks pex: the ids it names are offered only through it (a few, and
  nothing connects), and its floods get it dropped.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import ROOT, Procs, make_file, sha256

from p2pcli import wire
from p2pcli.swarm.pex import MAX_DIALING, PREFIX

pytestmark = pytest.mark.timeout(180)
OLD_COMMIT = "b9af850"  # main before extensions: drops a peer for an unknown message type
HOSTILE = str(ROOT / "tests" / "helpers" / "hostile_peer.py")


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


def tracker_only(link: str, tracker: str) -> str:
    content = link.split("://", 1)[1].split("?", 1)[0]
    return f"p2p://{content}?tr={quote(tracker, safe='')}"


def test_a_newcomer_reaches_the_seeder_through_a_fetcher_once_the_server_is_gone(
        procs: Procs, tracker):
    url, _ = tracker
    server = procs.serve_signal()
    server_proc = procs.all[-1]
    src = make_file(procs.workdir / "src.bin", 3_000_000)
    a, link = procs.seed(src, server, name="A")  # A knows the server only
    b = procs.fetch(link, "-o", "b.bin", "--seed-after", "--tracker", url, name="B")
    b.wait_for(lambda p: events_of(p, "seeding"), 60, "B seeding")
    server_proc.kill()  # the rendezvous A and B met through is gone

    c = procs.fetch(tracker_only(link, url), "-o", "c.bin", name="C")
    assert c.wait(90) == 0, c.stderr
    assert sha256(procs.workdir / "c.bin") == sha256(src)
    joined = [e["peer"] for e in events_of(c, "peer-joined")]
    assert any(p.startswith("wt0:") for p in joined), joined  # B, through the tracker
    via_pex = [p for p in joined if p.startswith(PREFIX)]
    assert via_pex, f"C never reached A through B: {joined}"
    assert [e["peer"] for e in events_of(a, "peer-joined") if e["peer"].startswith(PREFIX)], \
        "A saw C arrive through peer exchange"
    # Whether A's pieces arrive before B has sent them all is a race (B is on loopback
    # too): that C connected to A at all is what only peer exchange could do.
    (done,) = events_of(c, "done")
    assert [p for p in done["connections"] if p.startswith(PREFIX)], done


def old_cli(tmp: Path) -> Path:
    """The CLI from before extensions, unpacked from git (its code, today's venv)."""
    out = tmp / "old"
    if not out.is_dir():
        blob = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "cli", "p2pcli"],
                              check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as t:
            t.extractall(out, filter="data")
        (out / "p2p_cli").symlink_to("cli")
    return out


@pytest.mark.parametrize("old_side", ["seed", "fetch"])
def test_old_and_new_cli_transfer_either_way_round(procs: Procs, signal_url: str,
                                                   old_side: str):
    old_env = {**procs.env, "PYTHONPATH": str(old_cli(procs.workdir.parent))}
    src = make_file(procs.workdir / "src.bin", 2_000_000)
    args = ["seed", str(src), "--ice-host", "127.0.0.1", "--json", "--signal", signal_url]
    seed = procs.p2p(*args, name="seed", **({"env": old_env} if old_side == "seed" else {}))
    link = seed.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip()
                         else None, 60, "the link")
    f = procs.fetch(link, "-o", "out.bin", name="fetch",
                    **({"env": old_env} if old_side == "fetch" else {}))
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    for p in (seed, f):
        assert not [e for e in events_of(p, "warning")], p.stderr
        assert "protocol error" not in p.stderr


def hostile_after(procs: Procs, signal_url: str, src: Path, mode: str):
    h = procs.start([sys.executable, HOSTILE, signal_url, str(src), mode], "hostile")
    hid = h.wait_for(lambda p: p.stdout.strip(), 30, "hostile announce")
    return h, hid


@pytest.mark.parametrize("mode,reason", [("pexflood", "peer exchange flood"),
                                         ("relayflood", "signal flood")])
def test_a_peer_that_floods_peer_exchange_is_dropped(procs: Procs, signal_url: str,
                                                     mode: str, reason: str):
    src = make_file(procs.workdir / "src.bin", 1_000_000)
    seed, _ = procs.seed(src, signal_url)
    _, hid = hostile_after(procs, signal_url, src, mode)
    left = seed.wait_for(lambda p: [e for e in events_of(p, "peer-left")
                                    if e["peer"] == hid], 30, "the hostile peer dropped")
    assert reason in left[0]["reason"]


def test_forged_relays_reach_nobody_and_cost_the_fetch_nothing(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 2_000_000)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "300k")
    f = procs.fetch(link, "-o", "out.bin", name="fetch")
    f.wait_for(lambda p: events_of(p, "peer-joined"), 30, "the fetch connected")
    h, hid = hostile_after(procs, signal_url, src, "forgedrelay")
    h.wait_for(lambda p: p.stderr.count("speaks pex, attacking") >= 2, 30, "the attack")
    assert f.wait(90) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    joined = [e["peer"] for e in events_of(f, "peer-joined")]
    assert hid in joined and not [p for p in joined if p.startswith(PREFIX)], joined
    assert not [e for e in events_of(f, "peer-left") if e["peer"] == hid and "flood" in
                (e.get("reason") or "")], "within the budget: not dropped for it"
    assert "Traceback" not in f.stderr and "internal error" not in f.stderr


def test_ids_a_hostile_peer_names_are_offered_through_it_alone_and_never_reached(
        procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 3_000_000)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "300k")
    f = procs.fetch(link, "-o", "out.bin", name="fetch")
    f.wait_for(lambda p: events_of(p, "peer-joined"), 30, "the fetch connected")
    h, hid = hostile_after(procs, signal_url, src, "pexnames")
    h.wait_for(lambda p: p.stderr.count("speaks pex, attacking") >= 2, 30, "the attack")
    assert f.wait(90) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    joined = [e["peer"] for e in events_of(f, "peer-joined")]
    assert hid in joined and not [p for p in joined if p.startswith(PREFIX)], joined
    asked = [line for line in h.stderr.splitlines() if "asked to relay" in line]
    assert 0 < len(asked) <= 2 * MAX_DIALING, asked  # a few, through it alone
    assert wire.PEX_MAX_PEERS > 2 * MAX_DIALING
