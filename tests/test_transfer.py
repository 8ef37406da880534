"""seed + fetch end to end: real p2p processes, real WebRTC over loopback, real signaling."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import P2P, ROOT, Procs, make_file, need, one_line_error, sha256

PIECE = 16 * 1024  # the smallest piece size: files up to 16 MiB use it


def done_event(proc) -> dict:
    return proc.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "done"), None), 120, "done"
    )


@pytest.mark.parametrize(
    "size",
    [0, 1, PIECE, PIECE + 1, 64 * 1024 * 1024],
    ids=["empty", "1B", "one-piece", "piece+1", "64MiB"],
)
def test_fetch_to_file_and_stdout_byte_identical(procs: Procs, signal_url: str, size: int):
    src = make_file(procs.workdir / "src.bin", size)
    _, link = procs.seed(src, signal_url)

    f = procs.fetch(link, "-o", "out.bin", name="to-file")
    assert f.wait(120) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    assert not (procs.workdir / "out.bin.part").exists()

    with open(procs.workdir / "piped.bin", "wb") as sink:
        p = procs.fetch(link, "-o", "-", name="to-stdout", stdout=sink)
        assert p.wait(120) == 0, p.stderr
    assert sha256(procs.workdir / "piped.bin") == sha256(src)


def test_default_output_is_stdout_when_piped(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "movie.bin", 100_000)
    _, link = procs.seed(src, signal_url)
    with open(procs.workdir / "piped.bin", "wb") as sink:
        p = procs.fetch(link, name="fetch", stdout=sink)
        assert p.wait(60) == 0, p.stderr
    assert sha256(procs.workdir / "piped.bin") == sha256(src)
    assert not (procs.workdir / "movie.bin.part").exists()


def test_two_seeders_both_send(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 8 * 1024 * 1024)
    s1, link = procs.seed(src, signal_url, name="seed1")
    s2, _ = procs.seed(src, signal_url, name="seed2")
    ids = set()
    for s in (s1, s2):
        ev = s.wait_for(
            lambda p: next((e for e in p.events() if e["event"] == "signaling-connected"), None),
            30,
            "signaling",
        )
        ids.add(ev["peer"])
    f = procs.fetch(link, "-o", "out.bin")
    assert f.wait(120) == 0, f.stderr
    summary = done_event(f)
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    assert set(summary["peers"]) == ids
    assert all(n > 0 for n in summary["peers"].values()), summary["peers"]
    assert sum(summary["peers"].values()) >= src.stat().st_size


def test_hostile_peer_is_dropped_and_fetch_completes(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 4 * 1024 * 1024)
    # The seeder is slow so the hostile peer gets asked for pieces too.
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "1M")
    hostile = procs.start(
        [sys.executable, str(ROOT / "tests/helpers/hostile_peer.py"), signal_url, str(src),
         "corrupt"],
        "hostile",
    )
    hostile_id = hostile.wait_for(lambda p: p.stdout.strip(), 30, "hostile announce")
    f = procs.fetch(link, "-o", "out.bin", "--timeout", "20")
    assert f.wait(120) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    events = f.events()
    rejected = [e for e in events if e["event"] == "piece-rejected"]
    assert rejected and all(e["peers"] == [hostile_id] for e in rejected)
    left = [e for e in events if e["event"] == "peer-left" and e["peer"] == hostile_id]
    assert left and "corrupt" in left[0]["reason"]
    assert any(e["event"] == "warning" and hostile_id in e["message"] for e in events)


def test_swarm_fetchers_feed_each_other(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 6 * 1024 * 1024)
    seeder, link = procs.seed(src, signal_url, "--max-upload-rate", "1M")
    seed_id = seeder.wait_for(
        lambda p: next((e["peer"] for e in p.events() if e["event"] == "signaling-connected"),
                       None), 30, "signaling")
    fetchers = [
        procs.fetch(link, "-o", f"out{i}.bin", "--seed-after", "--timeout", "30", name=f"f{i}")
        for i in range(3)
    ]
    summaries = [done_event(f) for f in fetchers]
    for i in range(3):
        assert sha256(procs.workdir / f"out{i}.bin") == sha256(src)
    from_fetchers = sum(n for s in summaries for peer, n in s["peers"].items() if peer != seed_id)
    assert from_fetchers > 0, summaries


def test_seed_alone_starts_its_own_signaling_server(procs: Procs):
    src = make_file(procs.workdir / "src.bin", 1_000_000)
    _, link = procs.seed(src, None, "--port", "0")
    assert "signal=http%3A%2F%2F127.0.0.1%3A" in link
    f = procs.fetch(link, "-o", "out.bin")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)


def test_seed_stops_cleanly_on_sigterm_and_sigint(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 1000)
    for sig in (signal.SIGTERM, signal.SIGINT):
        seeder, _ = procs.seed(src, signal_url, name=f"seed-{sig.name}")
        seeder.signal(sig)
        assert seeder.wait(30) == 0, seeder.stderr
        assert "Traceback" not in seeder.stderr


def test_seed_token_guards_its_embedded_server(procs: Procs):
    src = make_file(procs.workdir / "src.bin", 50_000)
    _, link = procs.seed(src, None, "--port", "0", "--token", "s3cret")
    assert "token=s3cret" in link
    ok = procs.fetch(link, "-o", "out.bin", name="with-token")
    assert ok.wait(60) == 0, ok.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    from p2pcli.link import parse_target

    t = parse_target(link)
    bare = procs.fetch(t.content_id, "--signal", t.signals[0], "-o", "x.bin", name="no-token")
    assert "token" in one_line_error(bare, 2)


def test_works_through_a_reference_only_signaling_server(procs: Procs):
    url = procs.reference_signal()
    src = make_file(procs.workdir / "src.bin", 2_000_000)
    _, link = procs.seed(src, url)
    f = procs.fetch(link, "-o", "out.bin")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    ffmpeg = need("ffmpeg")
    out = tmp_path_factory.mktemp("media") / "test.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=6:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=6", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)],
        check=True, timeout=120,
    )
    return out


def test_pipe_to_ffprobe_and_mpv(procs: Procs, signal_url: str, video: Path):
    ffprobe, mpv = need("ffprobe"), need("mpv")
    _, link = procs.seed(video, signal_url)
    fetch = procs.fetch(link, "-o", "-", "--quiet", name="fetch-ffprobe", stdout=subprocess.PIPE)
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", "-"],
        stdin=fetch.p.stdout, capture_output=True, text=True, timeout=60,
    )
    fetch.p.stdout.close()
    assert probe.returncode == 0, probe.stderr
    assert set(probe.stdout.split()) == {"video", "audio"}
    fetch.wait(30)

    fetch = procs.fetch(link, "-o", "-", "--quiet", name="fetch-mpv", stdout=subprocess.PIPE)
    play = subprocess.run(
        [mpv, "--no-config", "--vo=null", "--ao=null", "--frames=50", "-"],
        stdin=fetch.p.stdout, capture_output=True, text=True, timeout=60,
    )
    fetch.p.stdout.close()
    assert play.returncode == 0, play.stdout + play.stderr
    assert "Video --vid=1" in play.stdout + play.stderr
    fetch.wait(30)


def test_interrupted_fetch_resumes(procs: Procs, signal_url: str):
    size = 8 * 1024 * 1024
    src = make_file(procs.workdir / "src.bin", size)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "2M")
    first = procs.fetch(link, "-o", "out.bin", name="first")
    first.wait_for(
        lambda p: sum(e["event"] == "piece-verified" for e in p.events()) >= 100, 60, "100 pieces"
    )
    first.signal(signal.SIGINT)
    assert first.wait(30) == 130, first.stderr
    assert "resume" in first.stderr
    assert (procs.workdir / "out.bin.part").exists()
    assert not (procs.workdir / "out.bin").exists()

    second = procs.fetch(link, "-o", "out.bin", name="second")
    assert second.wait(120) == 0, second.stderr
    summary = done_event(second)
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    resumed = next(e for e in second.events() if e["event"] == "resume")
    assert resumed["pieces"] >= 100
    assert summary["received"] < size


def test_an_interrupted_fetch_to_stdout_says_nothing_is_kept(procs: Procs, signal_url: str):
    # A pipe download keeps no .part (its spool is a temporary ring): the Ctrl-C line must
    # not promise a resume, as the one of a download to a file does.
    src = make_file(procs.workdir / "src.bin", 4 * 1024 * 1024)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "1M")
    f = procs.fetch(link, "-o", "-", name="piped", stdout=subprocess.DEVNULL)
    f.wait_for(lambda p: any(e["event"] == "piece-verified" for e in p.events()), 60,
               "a first piece")
    f.signal(signal.SIGINT)
    assert f.wait(30) == 130, f.stderr
    line = f.stderr.strip().splitlines()[-1]
    assert "nothing is kept" in line and "resume" not in line, line
    assert not list(procs.workdir.glob("*.part"))


# -- bad input: one line on stderr, a documented exit code, no traceback ----------------


def test_unknown_hash_exits_no_peers(procs: Procs, signal_url: str):
    f = procs.fetch("ab" * 32, "--signal", signal_url, "--timeout", "2", "-o", "x")
    assert "no peer has" in one_line_error(f, 3)


def test_unreachable_signaling_server(procs: Procs):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    f = procs.fetch("ab" * 32, "--signal", url, "--retries", "1", "--timeout", "2", "-o", "x")
    assert "cannot reach the signaling server" in one_line_error(f, 4)


@pytest.mark.parametrize(
    "bad", ["p2p://1234", "not a link", "ftp://x/y", "p2p://" + "ab" * 32 + "?signal=ftp://h"]
)
def test_malformed_link(procs: Procs, bad: str):
    f = procs.fetch(bad, "-o", "x")
    assert one_line_error(f, 2)


def test_seed_bad_files(procs: Procs, tmp_path: Path):
    import os

    missing = procs.p2p("seed", str(tmp_path / "nope.mp4"), "--port", "0", name="missing")
    assert "no such file" in one_line_error(missing, 2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    special = procs.p2p("seed", str(fifo), "--port", "0", name="fifo")
    assert "not a regular file" in one_line_error(special, 2)
    fifo.unlink()
    secret = make_file(tmp_path / "secret.bin", 1000)
    secret.chmod(0)
    # Root reads anything; setpriv drops the capabilities that let it, as a user would be.
    drop = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"] if _root() else []
    unreadable = procs.start([*prefix, P2P, "seed", str(secret), "--port", "0"], "unreadable")
    assert "permission denied" in one_line_error(unreadable, 2)


def _root() -> bool:
    import os

    return os.geteuid() == 0


def test_existing_output_needs_force(procs: Procs, signal_url: str):
    src = make_file(procs.workdir / "src.bin", 50_000)
    _, link = procs.seed(src, signal_url)
    (procs.workdir / "out.bin").write_bytes(b"keep me")
    f = procs.fetch(link, "-o", "out.bin", name="noforce")
    assert "already exists" in one_line_error(f, 2)
    assert (procs.workdir / "out.bin").read_bytes() == b"keep me"
    f = procs.fetch(link, "-o", "out.bin", "--force", name="force")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
