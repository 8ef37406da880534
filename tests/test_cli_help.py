"""`--help` says what each option takes, in words (issue 16, rough edge 10): no Python types
(`<str>`, `<list[str]>`, `--version <bool>`), no `{PATH}` braces, and the commands' docstrings
as paragraphs, not broken at the source's line ends."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import typer
from conftest import P2P

from p2p_cli.helpformat import METAVARS, parameters, unwrap
from p2p_cli.main import app

COMMANDS = [c.name for c in app.registered_commands]
ENV = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
PYTHON_TYPE = re.compile(r"<(str|int|float|bool|list|path)\b")


def census() -> list[tuple[str, str, object, typer.models.ParameterInfo]]:
    return [(c.name, flag, hint, info) for c in app.registered_commands
            for flag, hint, info in parameters(c.callback)]


def test_the_census_sees_every_command_and_the_inline_options() -> None:
    seen = {(c, f) for c, f, _, _ in census()}
    assert {("seed", "--max-upload-rate"), ("stream", "--player"), ("doctor", "--timeout"),
            ("serve-signal", "--turn-ttl"), ("fetch", "--select")} <= seen
    assert set(COMMANDS) == {"seed", "fetch", "info", "stream", "doctor", "serve-signal",
                             "config", "send", "receive"}


@pytest.mark.parametrize(("command", "flag"),
                         [(c, f) for c, f, _, i in census()
                          if isinstance(i, typer.models.OptionInfo)])
def test_every_option_names_what_it_takes_and_flags_take_nothing(command: str,
                                                                 flag: str) -> None:
    hint, info = next((h, i) for c, f, h, i in census() if (c, f) == (command, flag))
    if hint is bool:
        assert info.metavar == ""
    else:
        assert info.metavar == METAVARS[flag]
        assert re.fullmatch(r"[A-Z_\[\],.]+", info.metavar)


@pytest.mark.parametrize("command", [*COMMANDS, None])
def test_help_shows_no_python_types_and_no_braces(command: str | None) -> None:
    out = subprocess.run([P2P, *([command] if command else []), "--help"], capture_output=True,
                         text=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not PYTHON_TYPE.search(out.stdout), out.stdout
    usage = next(line for line in out.stdout.splitlines() if "Usage:" in line)
    assert "{" not in usage and "<" not in usage
    if command == "seed":
        assert "Usage: p2p seed [OPTIONS] PATH..." in usage


def test_command_docstrings_read_as_paragraphs() -> None:
    for c in app.registered_commands:
        assert c.help and all("\n" not in p for p in c.help.split("\n\n")), c.name
    out = subprocess.run([P2P, "seed", "--help"], capture_output=True, text=True, env=ENV,
                         timeout=60)
    text = " ".join(out.stdout.split())  # rich wraps at 80 columns: compare words only
    assert "starts inside this process and the link points at it" in text
    # Broken wraps left a short line ending mid-sentence: "process and" alone, then "the link".
    lines = [line.strip() for line in out.stdout.split("Arguments")[0].splitlines()]
    assert not any(line in ("process and", "The", "bare") for line in lines)


def test_unwrap_joins_lines_and_keeps_paragraphs() -> None:
    assert unwrap("""One
        two.

        Three
          four.
        """) == "One two.\n\nThree four."


def test_timeouts_help_says_what_holds_the_clock_as_the_readme_does() -> None:
    # swarm/patience.py and btfetch.BtDownload.idle_for: help holds it, a handshake does
    # not; a torrent peer with pieces we lack does even while it chokes us.
    info = next(i for c, f, _, i in census() if (c, f) == ("fetch", "--timeout"))
    assert "has nothing we lack does not" in info.help and "choked" in info.help
    assert "does not count" not in info.help
