"""Shell completion (Typer's own, documented in README): commands and options complete, and
the script to install is printed for each shell."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import P2P


def complete(words: str) -> list[str]:
    env = {**os.environ, "_P2P_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    out = subprocess.run([P2P], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_commands_and_options_complete() -> None:
    from p2p_cli.main import app

    commands = [c.name for c in app.registered_commands]
    assert sorted(complete("p2p se")) == sorted(c for c in commands if c.startswith("se"))
    assert {"seed", "serve-signal", "send"} <= set(complete("p2p se"))
    assert complete("p2p fetch --sel") == ["--select"]
    assert "--max-upload-rate" in complete("p2p seed --max")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_printed_for_each_shell(shell: str) -> None:
    out = subprocess.run([P2P, "--show-completion", shell], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "_P2P_COMPLETE" in out.stdout
