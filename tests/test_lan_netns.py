"""A LAN with no server at all: `p2p seed` in one namespace, a bare-hash `p2p fetch` in
another finds it by mDNS alone (real zeroconf, real multicast on a bridge the test makes).

Only here is LAN discovery on (conftest.py turns it off for every other test): the
namespaces are this test's own, so no multicast reaches the machine's real interfaces.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import netns
import pytest
from conftest import ROOT, Proc, Procs, make_file, one_line_error, running_lab, sha256
from helpers import mdns_hostile

from p2pcli.errors import ExitCode

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def lab(procs: Procs) -> Iterator[netns.Lab]:
    procs.env["P2P_LAN"] = "1"  # inside these namespaces only (conftest turns it off)
    with running_lab(procs, netns.Lab(), netns.unavailable()) as lab:
        yield lab


def seed_in(procs: Procs, node: netns.Node, src: Path, *extra: str,
            name: str = "seed") -> tuple[Proc, str]:
    """`p2p seed` with its embedded server, offering only the namespace's address."""
    p = procs.start(node.p2p("seed", str(src), "--ice-host", node.addr, "--json", *extra), name)
    link = p.wait_for(lambda p: p.stdout.strip(), 60, "the link")
    return p, link


def announced(seed: Proc) -> dict:
    return seed.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "lan-announced"), None),
        30, "lan-announced")


def content_id(link: str) -> str:
    return link.split("://", 1)[1].split("?", 1)[0]


def fetch_in(procs: Procs, node: netns.Node, target: str, *extra: str,
             name: str = "fetch", **kw) -> Proc:
    return procs.start(node.p2p("fetch", target, "--ice-host", node.addr, *extra), name, **kw)


def event(proc: Proc, kind: str) -> dict | None:
    return next((e for e in proc.events() if e["event"] == kind), None)


@pytest.mark.parametrize("to", ["file", "stdout", "file, same host"])
def test_bare_hash_fetch_finds_the_seeder_by_mdns_alone(
    procs: Procs, lab: netns.Lab, tmp_path: Path, to: str
):
    a = lab.add("a")
    b = a if to == "file, same host" else lab.add("b")
    src = make_file(tmp_path / "src.bin", 2_000_000)
    seed, link = seed_in(procs, a, src)
    ad = announced(seed)
    assert ad["addresses"] == [a.addr] and ad["port"] == 8080 and "signal" not in ad
    out = tmp_path / "out.bin"
    if to != "stdout":
        f = fetch_in(procs, b, content_id(link), "--json", "-o", str(out))
    else:
        with open(out, "wb") as sink:
            f = fetch_in(procs, b, content_id(link), "--json", "-o", "-", stdout=sink)
    assert f.wait(90) == 0, f.stderr
    assert sha256(out) == sha256(src)
    found = event(f, "lan-searched")
    assert found is not None and found["url"] == f"http://{a.addr}:8080", f.stderr
    assert found["service"] == ad["service"]
    assert event(f, "signaling-connected")["url"] == f"http://{a.addr}:8080"


def test_a_seeder_on_a_server_of_its_own_announces_that_server(
    procs: Procs, lab: netns.Lab, tmp_path: Path
):
    a, b = lab.add("a"), lab.add("b")
    sig = procs.start(lab.signal_cmd(), "signal")
    sig.wait_for(lambda p: any(e["event"] == "listening" for e in p.events()), 30, "listening")
    src = make_file(tmp_path / "src.bin", 300_000)
    seed, link = seed_in(procs, a, src, "--signal", lab.signal_url)
    ad = announced(seed)
    assert ad["signal"] == lab.signal_url and ad["port"] == netns.SIGNAL_PORT
    f = fetch_in(procs, b, content_id(link), "--json", "-o", str(tmp_path / "out.bin"))
    assert f.wait(90) == 0, f.stderr
    assert event(f, "lan-searched")["url"] == lab.signal_url
    assert sha256(tmp_path / "out.bin") == sha256(src)


def test_bare_hash_stream_finds_the_seeder_by_mdns_alone(
    procs: Procs, lab: netns.Lab, tmp_path: Path
):
    a, b = lab.add("a"), lab.add("b")
    src = make_file(tmp_path / "src.bin", 1_000_000)
    seed, link = seed_in(procs, a, src)
    announced(seed)
    s = procs.start(b.p2p("stream", content_id(link), "--ice-host", b.addr, "--json",
                          "--player", "none", "-o", str(tmp_path / "kept.bin")), "stream")
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    assert event(s, "lan-searched")["url"] == f"http://{a.addr}:8080"
    # The stream's HTTP server listens on B's loopback: read it from inside B.
    got = subprocess.run(
        b.cmd(sys.executable, "-c", "import sys, urllib.request; sys.stdout.buffer.write("
              f"urllib.request.urlopen({url!r}, timeout=60).read())"),
        capture_output=True, timeout=90, check=True).stdout
    assert got == src.read_bytes()


@pytest.mark.parametrize("seeder", [True, False], ids=["beside-a-seeder", "alone"])
def test_hostile_announcements_are_never_dialed(procs: Procs, lab: netns.Lab, tmp_path: Path,
                                                seeder: bool):
    a, b, c = lab.add("a"), lab.add("b"), lab.add("c")
    src = make_file(tmp_path / "src.bin", 200_000)
    from p2pcli.hashing import hash_file

    cid = hash_file(str(src)).content_id
    bad = procs.start(c.cmd(sys.executable, str(ROOT / "tests" / "helpers" / "mdns_hostile.py"),
                            cid, c.addr), "hostile", env={**procs.env, "PYTHONPATH": str(ROOT)})
    bad.wait_for(lambda p: "ready" in p.stdout, 60, "the fake seeders")
    if seeder:
        seed, link = seed_in(procs, a, src)
        assert content_id(link) == cid
        announced(seed)
    f = fetch_in(procs, b, cid, "--json", "--verbose", "-o", str(tmp_path / "out.bin"))
    if seeder:
        assert f.wait(90) == 0, f.stderr
        assert event(f, "lan-searched")["url"] == f"http://{a.addr}:8080"
        assert sha256(tmp_path / "out.bin") == sha256(src)
    else:
        # Had it dialed any of them, it would have failed to reach it (exit 4), or
        # reached something that is no signaling server; it skipped them all instead.
        assert "no seeder" in one_line_error(f, ExitCode.NO_PEERS)
        assert "url" not in event(f, "lan-searched")
        # ... and it did see every one of them (the debug log names each it skipped).
        skipped = {line.split("name='", 1)[1].split("'", 1)[0]
                   for line in f.stderr.splitlines() if "ignored mDNS answer" in line}
        assert len(skipped) == len(mdns_hostile.fakes(cid, c.addr)), f.stderr


def test_seeder_exit_withdraws_its_announcement(procs: Procs, lab: netns.Lab, tmp_path: Path):
    a, b = lab.add("a"), lab.add("b")
    src = make_file(tmp_path / "src.bin", 100_000)
    watch = procs.start(
        b.cmd(sys.executable, str(ROOT / "tests" / "helpers" / "mdns_watch.py")), "watch",
        env={**procs.env, "PYTHONPATH": str(ROOT)},
    )
    watch.wait_for(lambda p: "browsing" in p.stdout, 30, "the browser")
    seed, link = seed_in(procs, a, src)
    service = announced(seed)["service"]

    def states(p: Proc) -> list[tuple[str, str]]:
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        return [(e["state"], e.get("name", "")) for e in lines]

    watch.wait_for(lambda p: ("added", service) in states(p), 30, "the share to appear")
    seed.signal(signal.SIGINT)  # Ctrl-C
    assert seed.wait(30) == 0, seed.stderr
    # The browser's cache holds the PTR record for 75 minutes: only a goodbye removes it now.
    watch.wait_for(lambda p: ("removed", service) in states(p), 20, "the goodbye")
    # And a bare-hash fetch started after the exit finds nothing.
    f = fetch_in(procs, b, content_id(link), "--json", "-o", str(tmp_path / "x"))
    assert "no seeder" in one_line_error(f, ExitCode.NO_PEERS)
    assert "url" not in event(f, "lan-searched")


@pytest.mark.parametrize("mode", ["json", "human"])
def test_nothing_on_the_lan_fails_in_one_line(procs: Procs, lab: netns.Lab, tmp_path: Path,
                                              mode: str):
    b = lab.add("b")
    f = fetch_in(procs, b, "ab" * 32, *(["--json"] if mode == "json" else []),
                 "-o", str(tmp_path / "x"))
    line = one_line_error(f, ExitCode.NO_PEERS)
    assert "no seeder of abababababababab... answered on the LAN within 1.5s" in line
    assert "http://127.0.0.1:8080" in line and "--signal" in line and "link" in line
    if mode == "json":
        searched = event(f, "lan-searched")
        assert searched is not None and "url" not in searched
    else:
        assert "no seeder answered on the LAN" in f.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("off", ["fetch --no-lan", "fetch P2P_LAN=0", "seed --no-lan"])
def test_switched_off_the_lan_finds_nothing(procs: Procs, lab: netns.Lab, tmp_path: Path,
                                            off: str):
    a, b = lab.add("a"), lab.add("b")
    src = make_file(tmp_path / "src.bin", 100_000)
    seed, link = seed_in(procs, a, src, *(["--no-lan"] if off == "seed --no-lan" else []))
    if off == "seed --no-lan":
        seed.wait_for(lambda p: event(p, "status"), 30, "a status line")
        assert event(seed, "lan-announced") is None
    else:
        announced(seed)
    extra = ["--no-lan"] if off == "fetch --no-lan" else []
    env = {**procs.env, "P2P_LAN": "0"} if off == "fetch P2P_LAN=0" else procs.env
    f = fetch_in(procs, b, content_id(link), "--json", *extra, "-o", str(tmp_path / "x"),
                 env=env)
    line = one_line_error(f, ExitCode.NO_PEERS)
    assert "no seeder" in line and "--signal" in line
    if off == "seed --no-lan":
        assert "url" not in event(f, "lan-searched")
    else:
        assert event(f, "lan-searched") is None  # it did not look
        assert "--no-lan" in line


@pytest.mark.parametrize("mistake", ["fetch: output exists", "fetch: --seed-after to stdout",
                                     "stream: output exists", "stream: no such player"])
def test_option_mistakes_are_refused_before_the_lan_search(procs: Procs, lab: netns.Lab,
                                                           tmp_path: Path, mistake: str):
    # They once waited out the 1.5 s search (and the default server's retries) first.
    b = lab.add("b")
    taken = tmp_path / "taken.bin"
    taken.write_bytes(b"mine")
    command, what = mistake.split(": ")
    extra = {"output exists": ["-o", str(taken)], "--seed-after to stdout": ["--seed-after",
                                                                             "-o", "-"],
             "no such player": ["--player", "no-such-player"]}[what]
    if command == "stream" and what == "output exists":
        extra += ["--player", "none"]
    p = procs.start(b.p2p(command, "ab" * 32, "--json", *extra), command)
    one_line_error(p, ExitCode.USAGE)
    assert event(p, "lan-searched") is None
    assert taken.read_bytes() == b"mine"
