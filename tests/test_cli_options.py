"""Every command that joins a swarm takes the same swarm options (a user tuning one command
expects the others to take the same flag: `fetch` once lacked --max-peers-per-address, so
fetchers on one host refused each other and nothing could raise the limit)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import P2P, ROOT

SWARM_COMMANDS = ("seed", "fetch", "stream")
SWARM_OPTIONS = ("--signal", "--ice-server", "--ice-host", "--token", "--max-peers",
                 "--max-peers-per-address", "--quiet", "--json", "--verbose")
DOWNLOAD_OPTIONS = ("--timeout", "--retries", "--force", "--output")  # fetch and stream


@pytest.mark.parametrize("command", SWARM_COMMANDS)
def test_every_swarm_command_takes_every_swarm_option(command: str) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([P2P, command, "--help"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    wanted = SWARM_OPTIONS + (DOWNLOAD_OPTIONS if command != "seed" else ())
    missing = [o for o in wanted if o not in out.stdout]
    assert not missing, f"p2p {command} lacks {missing}"


PORT_COMMANDS = {  # every command with a --port, with what else it needs to parse
    "seed": ["seed", "README.md"],
    "stream": ["stream", "0" * 64],
    "serve-signal": ["serve-signal"],
}


@pytest.mark.parametrize("value", ["99999", "-1", "65536"])
@pytest.mark.parametrize("command", list(PORT_COMMANDS))
def test_every_port_option_refuses_a_port_that_cannot_exist(command: str, value: str) -> None:
    # `stream --port 99999` once ended in an OverflowError traceback from bind(), and
    # `seed --port 99999` quietly took another port.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([P2P, *PORT_COMMANDS[command], "--port", value], capture_output=True,
                         text=True, env=env, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert "Invalid value for '--port'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["a b", "-x.org", "x..org", "http://x", "a" * 64, "1.2.3.4:80"])
def test_public_host_refuses_what_cannot_go_in_a_link(value: str) -> None:
    out = subprocess.run([P2P, "seed", "README.md", "--public-host", value], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("p2p: --public-host") and out.stderr.count("\n") == 1


@pytest.mark.parametrize(("value", "kept"), [("192.168.1.5", "192.168.1.5"),
                                             ("[::1]", "::1"), ("my-host.example.org", None),
                                             ("localhost.", None)])
def test_public_host_takes_addresses_and_names(value: str, kept: str | None) -> None:
    from p2p_cli.common import parse_public_host

    assert parse_public_host(value) == (kept or value)
