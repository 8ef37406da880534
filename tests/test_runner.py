"""runner.run: a signal stops the command once; signals after its loop closed do no harm."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from p2pcli import runner
    from p2pcli.errors import Interrupted
    if sys.argv[1] == "asyncio":
        runner.new_loop = asyncio.new_event_loop
    mode = sys.argv[2]

    async def main():
        if mode == "plain":
            return "ok"
        os.kill(os.getpid(), signal.SIGINT)  # the user's first Ctrl-C
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if mode == "signalled":
                raise
        # A command that handles the stop and cleans up (a finished stream exits 0); the
        # user presses Ctrl-C again meanwhile, or twice more.
        for _ in range(1 if mode == "cleanup" else 2):
            os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.2)
        return "cleaned up"

    try:
        print(runner.run(main), flush=True)
    except Interrupted as e:
        print("interrupted:", e, flush=True)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, while the command ends
        print("alive", flush=True)
    except KeyboardInterrupt:
        print("keyboardinterrupt", flush=True)
""")


CASES = {
    # A stop on a signal; a later signal, while the command ends, is ignored.
    "signalled": ["interrupted: interrupted", "alive"],
    # No signal: Python's own SIGINT handler is back, so a Ctrl-C after the command is a
    # KeyboardInterrupt (cli/main.py words it), not a silent kill by SIG_DFL (uvloop).
    "plain": ["ok", "keyboardinterrupt"],
    # The command handles the stop and cleans up (a finished stream exits 0): a second
    # Ctrl-C meanwhile does not cut that short into "interrupted".
    "cleanup": ["cleaned up", "alive"],
    # A third forces the stop.
    "forced": ["interrupted: interrupted", "alive"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", list(CASES))
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_signals(loop: str, mode: str) -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT, loop, mode], cwd=ROOT,
                       capture_output=True, text=True, timeout=50)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == CASES[mode]
