"""`--public` (issue 15): the share is announced to well-known public trackers and uses a
public STUN server; without it nothing but the LAN and the servers the user names is
contacted. The tests never reach the real public servers (no internet here): a config file
(P2P_CONFIG) points `--public` at a local bittorrent-tracker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Procs, make_file, one_line_error, sha256

from p2pcli import publicnet
from p2pcli.errors import UsageError
from p2pcli.iceurls import parse_ice_servers
from p2pcli.link import check_tracker_url, parse_target

pytestmark = pytest.mark.timeout(120)


def config(procs: Procs, text: str) -> Path:
    path = procs.workdir / "config.toml"
    path.write_text(text)
    procs.env["P2P_CONFIG"] = str(path)
    return path


def test_the_default_public_servers_are_well_formed():
    assert publicnet.DEFAULT_TRACKERS and publicnet.DEFAULT_STUN
    for url in publicnet.DEFAULT_TRACKERS:
        assert check_tracker_url(url) == url and url.startswith("wss://")  # TLS on the internet
    assert len(parse_ice_servers(list(publicnet.DEFAULT_STUN))) == len(publicnet.DEFAULT_STUN)


def test_a_missing_config_file_means_the_defaults(tmp_path: Path):
    assert publicnet.load(tmp_path / "none.toml") == publicnet.PublicServers()


@pytest.mark.parametrize("text, message", [
    ("public = [", "not valid TOML"),
    ("public = 3", "[public] must be a table"),
    ("[public]\ntrackers = 'wss://t'", "public.trackers must be a list of strings"),
    ("[public]\nstun = [1]", "public.stun must be a list of strings"),
    ("[public]\ntracker = []", "unknown key public.tracker"),
])
def test_a_bad_config_file_is_one_clear_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)) as e:
        publicnet.load(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("command", ["seed", "fetch", "stream"])
def test_every_command_reports_a_bad_config_file_in_one_line(procs: Procs, command: str):
    config(procs, "[public]\ntrackers = ['http://not-a-websocket']\n")
    make_file(procs.workdir / "f.bin", 10)
    target = "f.bin" if command == "seed" else "ab" * 32
    line = one_line_error(procs.p2p(command, target, "--public", name=command), 2)
    assert "ws:// or wss://" in line, line


def test_public_announces_to_the_configured_trackers_and_a_bare_hash_finds_the_seeder(
        procs: Procs, tracker):
    url, _ = tracker
    config(procs, f"[public]\ntrackers = ['{url}']\nstun = []\n")
    src = make_file(procs.workdir / "src.bin", 1_000_000)
    seed, link = procs.seed(src, None, "--public")
    assert parse_target(link).trackers == (url,)
    seed.wait_for(lambda p: any(e["event"] == "announced" for e in p.events()), 30, "announce")
    content = parse_target(link).content_id
    f = procs.fetch(content, "-o", "out.bin", "--public")  # a bare hash: no link at all
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    assert [e["via"] for e in f.events() if e["event"] == "announced"] == ["tracker"]


def test_without_public_the_configured_trackers_are_not_used(procs: Procs, tracker):
    url, _ = tracker
    config(procs, f"[public]\ntrackers = ['{url}']\nstun = []\n")
    src = make_file(procs.workdir / "src.bin", 1000)
    seed, link = procs.seed(src, None)
    assert parse_target(link).trackers == ()
    seed.wait_for(lambda p: any(e["event"] == "signaling-connected" for e in p.events()), 30,
                  "signaling")
    assert not [e for e in seed.events() if e["event"] == "announced"]
