"""A downloader's --timeout counts only peers that can give it something.

The receiving side of issue 12's idle peers: a peer that has nothing we lack (another
downloader waiting for the same manifest, one with the same pieces as ours, one that never
answers the manifest request) must not keep `fetch` or `stream` waiting forever: after
`--timeout` with no such peer they exit 3, the partial download kept.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from conftest import LOOPBACK, ROOT, Procs, make_file

HOSTILE = str(ROOT / "tests" / "helpers" / "hostile_peer.py")
HASH = "cd" * 32  # content nobody seeds


def downloader(procs: Procs, target: str, signal_url: str, kind: str, n: int, *extra: str):
    """`kind`: fetch-json, fetch-human or stream (--json, no player)."""
    cmd, _, mode = kind.partition("-")
    out = ["-o", f"out{n}.bin"]
    args = [cmd, target, "--signal", signal_url, *LOOPBACK, *out, *extra]
    if cmd == "stream":
        args += ["--player", "none"]
    if mode != "human":
        args.append("--json")
    return procs.p2p(*args, name=f"{kind}{n}")


def joined(p) -> bool:
    if "--json" in p.args:
        return any(e["event"] == "peer-joined" for e in p.events())
    return " connected (" in p.stderr


def one_error_line(p) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("p2p:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return lines[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["fetch-json", "fetch-human", "stream"])
def test_downloaders_waiting_for_the_same_manifest_give_up_after_timeout(
    procs: Procs, signal_url: str, kind: str
):
    a = downloader(procs, HASH, signal_url, kind, 1, "--timeout", "4")
    b = downloader(procs, HASH, signal_url, kind, 2, "--timeout", "4")
    for p in (a, b):
        p.wait_for(joined, 30, "the two downloaders to connect")  # the case under test
    for p in (a, b):
        assert p.wait(60) == 3, p.stderr[-3000:]
        assert "no peer has" in one_error_line(p)


@pytest.mark.timeout(180)
def test_downloaders_left_with_the_same_pieces_give_up_and_keep_them(
    procs: Procs, signal_url: str, tmp_path: Path
):
    (tmp_path / "src").mkdir()
    src = make_file(tmp_path / "src" / "src.bin", 4 * 1024 * 1024)
    seeder, link = procs.seed(src, signal_url, "--max-upload-rate", "400k")
    # The killed seeder goes when its requests time out: 2 s here (P2P_REQUEST_TIMEOUT), not 8.
    env = {**procs.env, "P2P_REQUEST_TIMEOUT": "2"}
    fetchers = [procs.fetch(link, "-o", f"out{n}.bin", "--timeout", "4", name=f"fetch{n}",
                            env=env) for n in (1, 2)]
    for f in fetchers:
        f.wait_for(lambda p: sum(e["event"] == "piece-verified" for e in p.events()) >= 3,
                   60, "a few pieces")
        f.wait_for(lambda p: sum(e["event"] == "peer-joined" for e in p.events()) >= 2,
                   60, "both peers")
    seeder.signal(signal.SIGKILL)
    for f in fetchers:
        assert f.wait(90) == 3, f.stderr[-3000:]
        assert "partial download is kept" in one_error_line(f)
    parts = [p for p in procs.workdir.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["mute", "idle"])
def test_a_peer_that_never_answers_the_manifest_request_is_dropped(
    procs: Procs, signal_url: str, tmp_path: Path, mode: str
):
    (tmp_path / "src").mkdir()
    src = make_file(tmp_path / "src" / "src.bin", 200_000)
    from p2pcli.hashing import hash_file

    bad = procs.start([sys.executable, HOSTILE, signal_url, str(src), mode], f"hostile-{mode}")
    bad_id = bad.wait_for(lambda p: p.stdout.strip(), 30, "hostile announce")
    content = hash_file(src, use_cache=False).content_id
    # The manifest timeout (20 s) shortened: what is tested is that the peer goes, not when.
    env = {**procs.env, "P2P_MANIFEST_TIMEOUT": "3"}
    f = procs.fetch(content, "--signal", signal_url, "--timeout", "4", "-o", "out.bin",
                    env=env)
    assert f.wait(80) == 3, f.stderr[-3000:]
    left = [e for e in f.events() if e["event"] == "peer-left" and e["peer"] == bad_id]
    assert left and "did not answer the manifest request" in left[0].get("reason", ""), left
    # It had the content (its handshake said so) and gave none of it: not "no peer has".
    assert "found 1 peer" in (line := one_error_line(f)), line
    assert "it connected, then hung up or gave nothing" in line, line
