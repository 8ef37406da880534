"""`p2p send` / `p2p receive` (issue 18) as real processes through a real `p2p serve-signal`,
and through a malicious one that swaps the DTLS fingerprints it relays."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LOOPBACK, P2P, ROOT, Procs, free_port, wait_port

from p2pcli.errors import ExitCode
from p2pcli.hashing import hash_file


def start_send(procs: Procs, path: Path, signal: str, *extra: str, name: str = "send"):
    where = ["--signal", signal] if signal else []  # "": the rendezvous is in `extra`
    p = procs.p2p("send", str(path), *where, *LOOPBACK, "--json", *extra, name=name)
    ev = p.wait_for(lambda p: next((e for e in p.events() if e["event"] == "code"), None),
                    60, "the code")
    return p, ev["code"]


def receive(procs: Procs, code: str, signal: str, *extra: str, name: str = "receive", **kw):
    where = ["--signal", signal] if signal else []
    return procs.p2p("receive", code, *where, *LOOPBACK, "--json", *extra,
                     name=name, **kw)


def events(p, kind: str) -> list[dict]:
    return [e for e in p.events() if e["event"] == kind]


def last_line(p) -> str:
    return [ln for ln in p.stderr.splitlines() if ln.startswith("p2p: ")][-1]


@pytest.fixture
def content(tmp_path: Path) -> tuple[Path, Path]:
    return make_content(tmp_path)


def make_content(tmp_path: Path) -> tuple[Path, Path]:
    """A file and a folder (with a subfolder) to send."""
    f = tmp_path / "movie.bin"
    f.write_bytes(bytes(range(256)) * 5000 + b"tail")
    d = tmp_path / "album"
    (d / "disc 2").mkdir(parents=True)
    (d / "one.txt").write_bytes(b"first file\n" * 1000)
    (d / "disc 2" / "two.bin").write_bytes(bytes(range(256)) * 900)
    return f, d


def test_file_to_file_and_to_stdout(procs: Procs, signal_url: str, content, tmp_path: Path):
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    # The content hash is not announced: fetching it from the same server finds nobody.
    h = hash_file(str(f), None).content_id
    fetch = procs.fetch(h, "--signal", signal_url, "--timeout", "3", "--no-lan",
                        name="fetch-by-hash")
    assert fetch.wait(60) == ExitCode.NO_PEERS, fetch.stderr
    r = receive(procs, code, signal_url, "--yes", "-o", str(tmp_path / "got.bin"))
    assert r.wait(60) == 0, r.stderr
    assert (tmp_path / "got.bin").read_bytes() == f.read_bytes()
    offer = events(r, "offer")[0]
    assert offer["name"] == "movie.bin" and offer["size"] == f.stat().st_size
    assert offer["sender"] and offer["hash"] == h
    assert events(r, "verified") and events(r, "done")
    assert send.wait(30) == 0, send.stderr
    assert events(send, "sent")[0]["bytes"] == f.stat().st_size

    send, code = start_send(procs, f, signal_url, name="send2")
    r = receive(procs, code, signal_url, "--yes", "-o", "-", name="receive2")
    assert r.wait(60) == 0, r.stderr
    assert r.out_path.read_bytes() == f.read_bytes()
    assert send.wait(30) == 0


def test_folder(procs: Procs, signal_url: str, content, tmp_path: Path):
    _, d = content
    send, code = start_send(procs, d, signal_url)
    out = tmp_path / "out"
    out.mkdir()
    r = receive(procs, code, signal_url, "-y", "-o", str(out))
    assert r.wait(60) == 0, r.stderr
    for rel in ("one.txt", "disc 2/two.bin"):
        assert (out / "album" / rel).read_bytes() == (d / rel).read_bytes()
    assert send.wait(30) == 0


def test_wrong_code_fails_both_sides(procs: Procs, signal_url: str, content, tmp_path: Path):
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    number, first, second = code.split("-")
    wrong = "aardvark" if second != "aardvark" else "absurd"
    r = receive(procs, f"{number}-{first}-{wrong}", signal_url, "-y", "-o",
                str(tmp_path / "got.bin"))
    assert r.wait(60) == ExitCode.WRONG_CODE, r.stderr
    assert "wrong code" in last_line(r)
    assert send.wait(30) == ExitCode.WRONG_CODE, send.stderr  # one try by default
    assert "wrong code" in last_line(send)
    assert not list(tmp_path.glob("got.bin*"))
    # the code is spent: the right code now finds nobody
    r2 = receive(procs, code, signal_url, "-y", name="receive2")
    assert r2.wait(60) == ExitCode.NO_PEERS
    assert "nobody is sending" in last_line(r2)


def test_tries_let_a_mistyped_code_retry(procs: Procs, signal_url: str, content,
                                          tmp_path: Path):
    f, _ = content
    send, code = start_send(procs, f, signal_url, "--tries", "2")
    number, first, second = code.split("-")
    wrong = "aardvark" if second != "aardvark" else "absurd"
    r = receive(procs, f"{number}-{first}-{wrong}", signal_url, "-y")
    assert r.wait(60) == ExitCode.WRONG_CODE
    r2 = receive(procs, code, signal_url, "-y", "-o", str(tmp_path / "got.bin"), name="r2")
    assert r2.wait(60) == 0, r2.stderr
    assert (tmp_path / "got.bin").read_bytes() == f.read_bytes()
    assert send.wait(30) == 0


def test_sender_gone_and_expired(procs: Procs, signal_url: str, content):
    f, _ = content
    r = receive(procs, "7-guitarist-revenge", signal_url, "-y")
    assert r.wait(60) == ExitCode.NO_PEERS
    assert "nobody is sending with code 7" in last_line(r)
    send, _ = start_send(procs, f, signal_url, "--expire", "0.5")
    assert send.wait(30) == ExitCode.NO_PEERS
    assert "expired" in last_line(send)


def test_racing_receivers(procs: Procs, signal_url: str, content, tmp_path: Path):
    """A second receiver while the first one reads the prompt is told the code is taken;
    the first one then gets the file."""
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    master, slave = pty.openpty()  # the first receiver asks on a terminal
    first = subprocess.Popen([P2P, "receive", code, "--signal", signal_url, *LOOPBACK,
                              "--json", "-o", str(tmp_path / "first.bin")],
                             stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=tmp_path, env=procs.env)
    os.close(slave)
    try:
        seen = b""
        while b'"event":"offer"' not in seen:  # it holds the code's only try
            line = first.stderr.readline()
            assert line, "the first receiver exited before its prompt"
            seen += line
        second = receive(procs, code, signal_url, "-y", name="second")
        assert second.wait(60) == ExitCode.NO_PEERS
        assert "another receiver" in last_line(second)
        os.write(master, b"y\n")
        assert first.wait(60) == 0, first.stderr.read().decode()
        assert (tmp_path / "first.bin").read_bytes() == f.read_bytes()
        assert send.wait(30) == 0
    finally:
        os.close(master)
        if first.poll() is None:
            first.kill()
            first.wait()


def test_no_terminal_no_yes_refuses(procs: Procs, signal_url: str):
    r = receive(procs, "7-guitarist-revenge", signal_url)
    assert r.wait(30) == ExitCode.USAGE
    assert "add --yes" in last_line(r)
    r = receive(procs, "7-guitarst-revenge", signal_url, "-y", name="typo")
    assert r.wait(30) == ExitCode.USAGE
    assert "did you mean 'guitarist'" in last_line(r)


@pytest.mark.parametrize("which", ["offer", "answer", "both"])
def test_mitm_signaling_server_is_caught(procs: Procs, content, tmp_path: Path, which: str):
    """A server that swaps the fingerprints in the receiver's offer, the sender's answer,
    or both: each side stops with exit code 9 and nothing is written."""
    f, _ = content
    port = free_port()
    procs.start([sys.executable, str(ROOT / "tests" / "helpers" / "mitm_signal.py"),
                 str(port), which], "mitm", env={**procs.env, "PYTHONPATH": str(ROOT)})
    wait_port(port)
    url = f"http://127.0.0.1:{port}"
    send, code = start_send(procs, f, url)
    r = receive(procs, code, url, "-y", "-o", str(tmp_path / "got.bin"))
    assert r.wait(60) == ExitCode.TAMPERED, r.stderr
    assert send.wait(30) == ExitCode.TAMPERED, send.stderr
    for p in (r, send):
        assert "tampered" in last_line(p) and "man in the middle" in last_line(p)
    assert not list(tmp_path.glob("got.bin*"))
    assert not events(r, "manifest") and not events(r, "done")
    assert not events(send, "peer-joined") and not events(send, "sent")


def test_declining_writes_nothing_and_tells_the_sender(procs: Procs, signal_url: str, content,
                                                      tmp_path: Path):
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    master, slave = pty.openpty()
    r = subprocess.Popen([P2P, "receive", code, "--signal", signal_url, *LOOPBACK,
                          "-o", str(tmp_path / "got.bin")],
                         stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         cwd=tmp_path, env=procs.env)
    os.close(slave)
    try:
        seen = b""
        while b"[y/N]" not in seen:  # name, size and sender, then the question
            chunk = os.read(r.stderr.fileno(), 4096)
            assert chunk, "receive exited before asking"
            seen += chunk
        assert b"movie.bin" in seen and b"offers" in seen
        os.write(master, b"n\n")
        assert r.wait(60) == 0
        assert b"declined" in r.stderr.read()
        assert send.wait(30) == ExitCode.NO_PEERS
        assert "declined" in last_line(send)
        assert not list(tmp_path.glob("got.bin*"))
    finally:
        os.close(master)
        if r.poll() is None:
            r.kill()
            r.wait()


def test_tab_completion_of_code_words():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_P2P_COMPLETE": "complete_bash",
           "COMP_WORDS": "p2p receive 7-guitarist-rev", "COMP_CWORD": "2"}
    out = subprocess.run([P2P], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["7-guitarist-revenge"]


def test_the_servers_ice_config_reaches_both_swarms(procs: Procs, content, tmp_path: Path):
    """It comes at connect, before the swarm exists: it must not be lost."""
    f, _ = content
    port = free_port()
    procs.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port), "--ice-server",
              f"stun:127.0.0.1:{free_port()}", name="signal")
    wait_port(port)
    url = f"http://127.0.0.1:{port}"
    send, code = start_send(procs, f, url)
    r = receive(procs, code, url, "-y", "-o", str(tmp_path / "got.bin"))
    assert r.wait(60) == 0, r.stderr
    assert send.wait(30) == 0, send.stderr
    assert events(r, "ice-config") and events(send, "ice-config")


def test_stream_code_serves_the_bytes_and_a_wrong_code_exits_8(procs: Procs, signal_url: str,
                                                               content, tmp_path: Path):
    """`p2p stream CODE`: the code exchange, then stream's local HTTP over the private
    swarm; the URL serves exactly the sender's bytes. A wrong code: exit 8, one line."""
    import urllib.request

    f, _ = content
    send, code = start_send(procs, f, signal_url)
    s = procs.p2p("stream", code, "--signal", signal_url, *LOOPBACK, "--json", "--yes",
                  "--player", "none", "-o", str(tmp_path / "streamed.bin"), name="stream")
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.read() == f.read_bytes()
    assert events(s, "offer")[0]["name"] == "movie.bin" and events(s, "verified")
    s.wait_for(lambda p: events(p, "done"), 60, "the download's end")
    s.signal(2)  # how `--player none` ends; the download is complete: a normal exit
    assert s.wait(30) == 0, s.stderr
    assert send.wait(30) == 0, send.stderr

    send, code = start_send(procs, f, signal_url, name="send2")
    number, first, second = code.split("-")
    wrong = "aardvark" if second != "aardvark" else "absurd"
    s = procs.p2p("stream", f"{number}-{first}-{wrong}", "--signal", signal_url, *LOOPBACK,
                  "--yes", "--player", "none", name="stream-wrong")
    assert s.wait(60) == ExitCode.WRONG_CODE, s.stderr
    lines = [ln for ln in s.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("p2p: wrong code"), lines
    assert not s.stdout and send.wait(30) == ExitCode.WRONG_CODE


def seed_after(procs: Procs, code: str, signal: str, out: Path, *extra: str,
               name: str = "seeder"):
    """`receive CODE --seed-after`, once it serves the code on: (process, code-seeding)."""
    r = receive(procs, code, signal, "-y", "-o", str(out), "--seed-after", *extra, name=name)
    ev = r.wait_for(lambda p: next(iter(events(p, "code-seeding")), None), 60,
                    "serving the code on")
    return r, ev


def test_seed_after_serves_the_code_on_privately(procs: Procs, signal_url: str, content,
                                                 tmp_path: Path):
    """receive --seed-after: once complete, the receiver serves the share under the same
    code; the sender gone, a second receiver gets it from there, byte-identical. The
    content hash is announced nowhere: a fetch by hash finds nobody. Ctrl-C stops it."""
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    seeder, ev = seed_after(procs, code, signal_url, tmp_path / "first.bin")
    assert send.wait(30) == 0, send.stderr  # its receiver finished and left: the sender too
    assert ev["code"] == code and ev["tries"] == 1 and ev["link"] is None
    h = hash_file(str(f), None).content_id
    assert ev["hash"] == h
    fetch = procs.fetch(h, "--signal", signal_url, "--timeout", "2", "--no-lan",
                        name="fetch-by-hash")
    assert fetch.wait(60) == ExitCode.NO_PEERS, fetch.stderr
    assert "found" not in last_line(fetch)  # nobody in the hash's room, not "unreachable"
    assert not events(fetch, "peer-joined")
    r = receive(procs, code, signal_url, "-y", "-o", str(tmp_path / "second.bin"),
                name="second")
    assert r.wait(60) == 0, r.stderr
    assert (tmp_path / "second.bin").read_bytes() == f.read_bytes()
    assert events(r, "verified") and events(r, "done")[0]["received"] == f.stat().st_size
    assert (tmp_path / "first.bin").read_bytes() == f.read_bytes()
    seeder.signal(2)
    assert seeder.wait(30) == ExitCode.INTERRUPTED, seeder.stderr
    assert "stopped" in last_line(seeder)


def test_public_seed_also_announces_the_hash(procs: Procs, signal_url: str, content,
                                             tmp_path: Path):
    """--public-seed: the seed-after receiver also announces the content hash (as fetch
    --seed-after), prints the link, and a plain fetch of it succeeds."""
    f, _ = content
    send, code = start_send(procs, f, signal_url)
    _, ev = seed_after(procs, code, signal_url, tmp_path / "first.bin", "--public-seed")
    assert send.wait(30) == 0, send.stderr
    assert ev["link"] and ev["hash"] in ev["link"]
    fetch = procs.fetch(ev["link"], "-o", str(tmp_path / "by-link.bin"), "--timeout", "20",
                        "--no-lan", name="fetch-link")
    assert fetch.wait(60) == 0, fetch.stderr
    assert (tmp_path / "by-link.bin").read_bytes() == f.read_bytes()


def test_seed_after_misuse_is_one_line(procs: Procs, signal_url: str):
    """--tries / --public-seed without --seed-after, and --seed-after to stdout: one line,
    exit 2, before any traffic (human mode and --json alternately)."""
    for i, extra in enumerate((["--tries", "3"], ["--public-seed", "--json"],
                               ["--seed-after", "-o", "-", "--json"], ["--seed-after", "-o", "-"])):
        r = procs.p2p("receive", "7-guitarist-revenge", "--signal", signal_url, "-y", *extra,
                      name=f"misuse{i}")
        assert r.wait(30) == ExitCode.USAGE
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("p2p: "), lines
        assert "--seed-after" in lines[0]


def test_seed_after_says_it_serves_on_in_human_mode(capsys):
    from p2p_cli.wormhole import _reporter
    from p2pcli.wormhole.events import CodeSeeding

    for link in (None, "p2p://" + "ab" * 32):
        r = _reporter(False, False, None)
        r(CodeSeeding(code="7-guitarist-revenge", hash="ab" * 32, tries=1, link=link))
        r.close()
    err = capsys.readouterr().err
    assert "serving it on to whoever proves code 7-guitarist-revenge" in err
    assert "1 wrong try closes it" in err and "Ctrl-C stops" in err
    assert "announced nowhere" in err and "p2p fetch 'p2p://" in err


def test_an_existing_file_is_said_before_connecting(procs: Procs, signal_url: str, content,
                                                    tmp_path: Path):
    """No -o: the offer's name lands in the working directory, where movie.bin is already:
    the receiver says so (exit 2, one line) and the sender hears it was declined."""
    f, _ = content
    before = f.read_bytes()
    send, code = start_send(procs, f, signal_url)
    r = receive(procs, code, signal_url, "-y", "-o", str(tmp_path))
    assert r.wait(60) == ExitCode.USAGE, r.stderr
    assert "already exists" in last_line(r) and "--force" in last_line(r)
    assert not events(r, "peer-joined") and f.read_bytes() == before
    assert send.wait(30) == ExitCode.NO_PEERS
    assert "declined" in last_line(send)
