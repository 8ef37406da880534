"""`-o` into a folder that does not exist is bad input, exit 2 (issue 16, rough edge 6): it
once exited 6, the code of a failing disk. Every command that takes -o, in both modes."""

from __future__ import annotations

import subprocess

import pytest
from conftest import P2P, ROOT


@pytest.mark.parametrize("mode", ["human", "json"])
@pytest.mark.parametrize("command", ["fetch", "stream"])
def test_a_missing_parent_folder_is_a_usage_error(command: str, mode: str, tmp_path) -> None:
    out = subprocess.run(
        [P2P, command, "0" * 64, "-o", str(tmp_path / "missing" / "x.bin"), "--no-lan",
         "--signal", "http://127.0.0.1:1", "--timeout", "1", "--retries", "1",
         *(["--player", "none"] if command == "stream" else []),
         *(["--json"] if mode == "json" else [])],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith("p2p: ") and "is not an existing folder" in last
    assert "Traceback" not in out.stderr and out.stdout == ""
