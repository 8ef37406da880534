"""What `pip install .` gives a user: the console script, every command, the web assets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import P2P, ROOT


def test_p2p_help_lists_the_commands():
    out = subprocess.run([P2P, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("serve-signal", "seed", "fetch", "stream", "doctor"):
        assert command in out.stdout


def test_every_command_documents_every_option():
    for command in ("serve-signal", "seed", "fetch", "stream", "doctor"):
        out = subprocess.run([P2P, command, "--help"], capture_output=True, text=True,
                             timeout=60, env={"COLUMNS": "200", "PATH": ""})
        assert out.returncode == 0, out.stderr
        # An option starts right after the panel's border; help text that wraps onto a line
        # starting with "--" (naming another option) is indented to the help column.
        lines = [line for line in out.stdout.splitlines()
                 if line.lstrip("│ ").startswith("--")
                 and len(line.lstrip("│")) - len(line.lstrip("│ ")) <= 3]
        assert lines, out.stdout
        for line in lines:
            # "--option  <type>  help text": no option without words after its type.
            words = line.strip("│ ").split()
            assert len(words) >= 3, f"{command}: option without help: {line!r}"


def test_wheel_carries_the_cli_the_core_and_the_web_assets(tmp_path: Path):
    # Build from a copy: setuptools reuses a `build/` left in the tree, which can hold
    # packages that no longer exist (it once carried a top-level `cli`).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", ".ruff_cache",
        ".pytest_cache", ".hypothesis"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("p2p-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "p2p_cli/main.py" in names and "p2pcli/swarm/core.py" in names
    # The CLI is installed as `p2p_cli`: a top-level `cli` would collide with other
    # distributions that ship one.
    assert not [n for n in names if n.startswith("cli/")]
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "p2pcli").rglob("__init__.py")
                if "__pycache__" not in p.parts}
    assert all(f"{pkg}/__init__.py" in names for pkg in packages), packages
    web = [n for n in names if n.startswith("p2pcli/web/")]
    if (ROOT / "p2pcli" / "web").is_dir():
        shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "p2pcli" / "web").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert shipped <= set(web), shipped - set(web)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "p2p = p2p_cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()
