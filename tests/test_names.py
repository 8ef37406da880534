"""File names a manifest may carry: one rule in Python and in the browser, from one table.

A share must be safe for every receiver, whatever its system, so the rule refuses on every
platform what any of them would misread: path separators and `..`, controls and bidi marks,
and what Windows refuses or rewrites (`C:evil.exe`, `a:stream`, `<>"|?*`, `CON`, `nul.txt`,
`COM¹`, trailing dots and spaces). tests/data/names.json lists names and verdicts; this file
holds p2pcli/manifest.py to it, tests/js/names.test.mjs holds p2pcli/web/js/manifest.js to
it, and generated names check that the two implementations never disagree.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import P2P, ROOT
from test_manifest import raw_manifest

from p2pcli.errors import ExitCode, ManifestError
from p2pcli.manifest import Manifest, check_name, decode

TABLE = json.loads((ROOT / "tests" / "data" / "names.json").read_text(encoding="utf-8"))
REFUSED = [(e["name"], e["why"]) for e in TABLE["refused"]]
ACCEPTED = [e["name"] for e in TABLE["accepted"]]
WHYS = sorted({why for _, why in REFUSED})
JS = ROOT / "tests" / "js"


def encodable(name: str) -> bytes | None:
    """The name's UTF-8 bytes when a manifest can carry them at all (1..255, no lone surrogate)."""
    try:
        b = name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return b if 1 <= len(b) <= 255 else None


@pytest.mark.parametrize(("name", "why"), REFUSED, ids=[ascii(n)[:40] for n, _ in REFUSED])
def test_refused_names_are_refused_when_built_and_when_decoded(name: str, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        check_name(name)
    with pytest.raises(ManifestError):
        Manifest.create(name, 0, 16384, [])
    data = encodable(name)
    if data is not None:
        with pytest.raises(ManifestError):
            decode(raw_manifest(name=data))


@pytest.mark.parametrize("name", ACCEPTED, ids=[ascii(n)[:40] for n in ACCEPTED])
def test_accepted_names_round_trip(name: str) -> None:
    check_name(name)
    assert decode(Manifest.create(name, 0, 16384, []).encode()).name == name


def node(*args: str, stdin: str | None = None) -> str:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/test-all installs nodejs)")
    r = subprocess.run(["node", *args], input=stdin, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_the_browser_check_follows_the_same_table() -> None:
    out = node("--test", str(JS / "names.test.mjs"))
    assert "# fail 0" in out and "# pass 2" in out, out


def why_of(message: str | None) -> str | None:
    """The table's reason phrase in an error message (None: the name was accepted)."""
    if message is None:
        return None
    found = [w for w in WHYS if w in message]
    assert len(found) == 1, message
    return found[0]


def generated_names(rng: random.Random, count: int) -> list[str]:
    """Names built from the pieces the rule is about, so that near misses are common."""
    bases = ["CON", "con", "PRN", "AUX", "nul", "COM", "lpt", "CONIN$", "conout$", "CONSOLE",
             "NULL", "co", "x", "", "\u0131", "\uff23\uff2f\uff2e"]
    digits = ["", "0", "1", "9", "10", "\u00b9", "\u00b2", "\u00b3", "\u2074", "\u00b9\u00b9"]
    tails = ["", ".", " ", "  ", ". ", " .", ".txt", ".tar.gz", " .txt", ":", ":s", "..", "x"]
    chars = list("ab.. :<>\"|?*/\\$[]@=(")
    chars += ["\x00", "\x1f", "\x7f", "\x85", "\u200b", "\u200e", "\u202e", "\u2069", "\u2028",
              "\u2029", "\u00a0", "\u3002", "\uff1a", "\u00e9", "\U0001f3ac", "\ud800"]
    names = []
    for _ in range(count):
        if rng.random() < 0.5:
            name = rng.choice(bases) + rng.choice(digits) + rng.choice(tails)
        else:
            name = "".join(rng.choice(chars) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.05:  # around the 255-byte limit
            name = name + "\u00e9" * rng.randint(120, 130)
        names.append(name)
    return names


def test_browser_and_python_agree_on_generated_names() -> None:
    names = generated_names(random.Random(12), 6000) + [n for n, _ in REFUSED] + ACCEPTED
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as in names.json.
    verdicts = json.loads(node(str(JS / "name_verdicts.mjs"), stdin=json.dumps(names)))
    assert len(verdicts) == len(names)
    disagree = []
    for name, js in zip(names, verdicts, strict=True):
        try:
            check_name(name)
            py = None
        except ManifestError as e:
            py = e.message
        if why_of(py) != why_of(js):
            disagree.append((name, py, js))
    assert not disagree, disagree[:10]
    # The generator reaches every reason, and acceptance too, or it tests little.
    reached = {why_of(v) for v in verdicts}
    assert reached == {None, *WHYS}, reached


# -- `p2p seed`, where a manifest is made ---------------------------------------------------

# One name per reason that a Linux file system can hold (it holds neither `/` nor NUL).
SEEDABLE = ["C:evil.exe", "clip.mkv:hidden", "a<b>.txt", "what?.mp4", "evil.exe.", "trailing ",
            "CON", "nul.txt", "COM\u00b9.log", "lpt9", "conout$.txt", "movie\u202egpj.exe",
            "line\u2028break", "bell\x07"]


def test_seed_refuses_every_unsafe_name_in_one_line_before_hashing(tmp_path: Path) -> None:
    started = []
    for name in SEEDABLE:  # all at once: 14 process start-ups one after another took 7.7 s
        path = tmp_path / name
        path.write_bytes(b"x" * 100_000)
        # No signaling server at all: the name is refused before anything is reached.
        started.append((name, subprocess.Popen(
            [P2P, "seed", str(path), "--signal", "http://127.0.0.1:9"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            cwd=tmp_path, env={"P2P_CACHE_DIR": str(tmp_path / "cache"),
                               "PATH": "/usr/bin:/bin"})))
    for name, p in started:
        try:
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        assert r.returncode == ExitCode.USAGE, (name, r.stderr)
        assert r.stdout == "", name  # no link
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("p2p: "), (name, r.stderr)
        assert "cannot be shared" in lines[0] and "rename it" in lines[0], lines[0]
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "cache").exists(), "the file was hashed before the refusal"
