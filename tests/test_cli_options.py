"""Every command that joins a swarm takes the same swarm options (a user tuning one command
expects the others to take the same flag: `fetch` once lacked --max-peers-per-address, so
fetchers on one host refused each other and nothing could raise the limit)."""

from __future__ import annotations

import inspect
import os
import subprocess
import typing

import pytest
import typer
from conftest import P2P, ROOT

from p2p_cli.main import app

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


def numeric_options() -> list[tuple[str, str, type, object]]:
    """(command, --flag, int or float, min) of every numeric option of every command."""
    found = []
    for info in app.registered_commands:
        fn = info.callback
        hints = typing.get_type_hints(fn, include_extras=True)
        for name, par in inspect.signature(fn).parameters.items():
            hint, opt = hints.get(name), par.default
            if typing.get_origin(hint) is typing.Annotated:
                hint, *meta = typing.get_args(hint)
                opt = next((m for m in meta if isinstance(m, typer.models.OptionInfo)), opt)
            kinds = {hint, *typing.get_args(hint)} & {int, float}
            if kinds and isinstance(opt, typer.models.OptionInfo):
                found.append((info.name, "--" + name.replace("_", "-"), kinds.pop(), opt.min))
    return found


NUMERIC = numeric_options()
NEEDS = {"seed": ["README.md"], "fetch": ["0" * 64], "stream": ["0" * 64]}


def test_the_option_census_finds_them_all() -> None:
    flags = {(c, f) for c, f, _, _ in NUMERIC}
    assert {("fetch", "--timeout"), ("serve-signal", "--ping-interval"), ("doctor", "--timeout"),
            ("seed", "--max-peers")} <= flags


@pytest.mark.parametrize(("command", "flag"), [(c, f) for c, f, _, _ in NUMERIC])
def test_every_numeric_option_states_its_range(command: str, flag: str) -> None:
    # `fetch --retries -5` and `--timeout -1` were taken as given: a bound is a decision.
    assert next(m for c, f, _, m in NUMERIC if (c, f) == (command, flag)) is not None


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("command", "flag"), [(c, f) for c, f, t, _ in NUMERIC if t is float])
def test_every_float_option_refuses_what_is_no_number(command: str, flag: str,
                                                      value: str) -> None:
    # `fetch --timeout nan` once waited forever; `serve-signal --ping-interval inf` ran.
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([P2P, command, *NEEDS.get(command, []), f"{flag}={value}"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert f"Invalid value for '{flag}'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-5k", "-1", "infk", "1e999"])
def test_upload_rate_refuses_what_is_no_rate(value: str) -> None:
    out = subprocess.run([P2P, "seed", "README.md", f"--max-upload-rate={value}"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("p2p: --max-upload-rate") and out.stderr.count("\n") == 1
