"""p2p stream: local HTTP with ranges over a live download, real players, real swarm."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import Procs, free_port, make_file, need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pcli.readahead import ReadAhead

SLOW = "300k"  # seeder upload limit: the download takes far longer than each test


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """An MP4 with its index (moov) at the end, and a WebM; ~8 MB each, 20 s."""
    ffmpeg = need("ffmpeg")
    d = tmp_path_factory.mktemp("media")
    src = ["-f", "lavfi", "-i", "testsrc2=duration=20:size=640x360:rate=25,noise=alls=20:allf=t",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=20"]
    mp4, webm = d / "movie.mp4", d / "movie.webm"
    subprocess.run([ffmpeg, "-v", "error", *src, "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-b:v", "3M", "-c:a", "aac", "-shortest", str(mp4)],
                   check=True, timeout=120)
    subprocess.run([ffmpeg, "-v", "error", *src, "-c:v", "libvpx", "-deadline", "realtime",
                    "-cpu-used", "8", "-b:v", "3M", "-c:a", "libopus", "-shortest", str(webm)],
                   check=True, timeout=300)
    return {"mp4": mp4, "webm": webm}


def srcdir(tmp_path: Path) -> Path:
    """Sources live apart from the stream's working directory, where downloads land."""
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    return d


def start_stream(procs: Procs, link: str, *extra: str, name: str = "stream"):
    p = procs.p2p("stream", link, "--ice-host", "127.0.0.1", "--json", *extra, name=name)
    return p


def stream_url(procs: Procs, link: str, *extra: str, name: str = "stream"):
    p = start_stream(procs, link, "--player", "none", *extra, name=name)
    url = p.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    return p, url


def verified(proc) -> list[int]:
    return [e["piece"] for e in proc.events() if e["event"] == "piece-verified"]


def manifest(proc) -> dict:
    return next(e for e in proc.events() if e["event"] == "manifest")


@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_ffprobe_reads_streams_while_most_pieces_are_missing(
    procs: Procs, signal_url: str, media, kind: str
):
    ffprobe = need("ffprobe")
    _, link = procs.seed(media[kind], signal_url, "--max-upload-rate", SLOW)
    s, url = stream_url(procs, link)
    before = set(verified(s))
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=90,
    )
    at_probe = set(verified(s))
    assert probe.returncode == 0, probe.stderr
    assert {"video", "audio"} <= set(probe.stdout.split())
    m = manifest(s)
    assert len(at_probe) < m["pieces"] / 2, (len(at_probe), m["pieces"])
    # What arrived while ffprobe ran lies under the ranges it asked for, within the
    # read-ahead window after each range's start (4 MiB before a bitrate is known).
    starts = [e["range"][0] for e in s.events() if e["event"] == "http" and "range" in e]
    window = 4 * 1024 * 1024 + 512 * 1024
    piece = m["piece_size"]
    # And the file's tail, fetched early while the stream starts (readahead.py).
    tail_from = (m["size"] - ReadAhead(m["size"], piece).tail) // piece
    for p in at_probe - before:
        assert p >= tail_from or any(a // piece <= p <= (a + window) // piece
                                     for a in starts), (p, starts)


def test_range_near_the_end_is_served_before_the_middle(procs: Procs, signal_url: str, media):
    _, link = procs.seed(media["mp4"], signal_url, "--max-upload-rate", SLOW)
    s, url = stream_url(procs, link)
    size = media["mp4"].stat().st_size
    req = urllib.request.Request(url, headers={"Range": "bytes=-20000"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes {size - 20000}-{size - 1}/{size}"
    assert body == media["mp4"].read_bytes()[-20000:]
    m = manifest(s)
    middle = m["pieces"] // 2
    assert middle not in verified(s)


@pytest.mark.parametrize("start", [None, "80%"])
def test_mpv_plays_from_the_url(procs: Procs, signal_url: str, media, start: str | None):
    mpv = need("mpv")
    _, link = procs.seed(media["mp4"], signal_url, "--max-upload-rate", "1M")
    _, url = stream_url(procs, link)
    args = [mpv, "--no-config", "--vo=null", "--ao=null", "--frames=100", url]
    if start:
        args.insert(1, f"--start={start}")
    play = subprocess.run(args, capture_output=True, text=True, timeout=120)
    out = play.stdout + play.stderr
    assert play.returncode == 0, out
    assert "Video --vid=1" in out
    if start:  # mpv's status line shows it playing from 16 s of the 20 s clip
        assert re.search(r"A?V: 00:00:1[6-9] / 00:00:20", out), out[-2000:]


def test_player_mpv_is_launched_followed_over_ipc_and_stream_exits_with_it(
    procs: Procs, signal_url: str, media
):
    need("mpv")
    _, link = procs.seed(media["mp4"], signal_url, "--max-upload-rate", "1M")
    s = start_stream(
        procs, link, "--player", "mpv", "--player-arg=--no-config", "--player-arg=--vo=null",
        "--player-arg=--ao=null", "--player-arg=--frames=60",
    )
    assert s.wait(120) == 0, s.stderr
    events = s.events()
    assert any(e["event"] == "player-started" and e["player"] == "mpv" for e in events)
    assert any(e["event"] == "player-exited" for e in events)
    # The play position came from mpv's IPC socket, not from HTTP reads.
    assert any("play_pos" in e for e in events if e["event"] == "progress"), events[-5:]


def test_served_ranges_equal_the_source(procs: Procs, signal_url: str, tmp_path: Path):
    src = make_file(srcdir(tmp_path) / "data.bin", 3_000_000, seed=7)
    data = src.read_bytes()
    _, link = procs.seed(src, signal_url)
    _, url = stream_url(procs, link)

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(data) - 1), st.integers(1, 400_000))
    def check(start: int, length: int) -> None:
        end = min(len(data), start + length) - 1
        req = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 206
            assert r.read() == data[start : end + 1]

    check()
    with urllib.request.urlopen(url, timeout=60) as r:  # no Range: the whole file, 200
        assert r.status == 200 and r.read() == data


BIG = "9" * 5000  # past Python's 4,300-digit int() limit

# RFC 9110 14: an unknown unit or an invalid header is ignored (the whole body, 200);
# a valid header that selects no byte is 416. tests/test_httprange.py has the full table.
BAD_RANGES = [
    ("bytes=200000-", 416),
    ("bytes=-0", 416),
    (f"bytes={BIG}-", 416),
    (f"bytes=0-{BIG}", 206),
    (f"bytes=-{BIG}", 206),
    (f"bytes={'9' * 4001}-{'9' * 4000}", 200),  # inverted (aiohttp refuses lines over 8 KiB)
    ("bytes=abc", 200),
    ("items=0-1", 200),
    ("bytes=9-3", 200),
    ("bytes=0-1,5-6", 200),
    ("bytes=\u0661-\u0662", 200),
]


def test_bad_ranges_are_ignored_or_416_and_the_server_keeps_working(
    procs: Procs, signal_url: str, tmp_path: Path
):
    src = make_file(srcdir(tmp_path) / "d.bin", 100_000)
    data = src.read_bytes()
    _, link = procs.seed(src, signal_url)
    _, url = stream_url(procs, link)
    parts = urllib.parse.urlsplit(url)
    for header, status in BAD_RANGES:
        # http.client sends the header as is (urllib would refuse non-Latin-1 text).
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.putrequest("GET", parts.path)
            conn.putheader("Range", header.encode())
            conn.endheaders()
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        assert r.status == status, (header[:40], r.status, body[:200])
        if status == 200:
            assert body == data
        elif status == 206:
            assert body == data and r.headers["Content-Range"] == "bytes 0-99999/100000"
        else:
            assert r.headers["Content-Range"] == "bytes */100000"
    head = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(head, timeout=30) as r:
        assert r.headers["Content-Length"] == "100000"
        assert r.headers["Accept-Ranges"] == "bytes"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.read() == src.read_bytes()


def test_missing_player_and_busy_port_are_clear_errors(procs: Procs, signal_url: str):
    absent = next((p for p in ("vlc", "ffplay") if not _installed(p)), None)
    if absent is not None:
        s = procs.p2p("stream", "ab" * 32, "--signal", signal_url, "--player", absent,
                      name="noplayer")
        assert s.wait(30) == 2
        err = s.stderr
        assert f"{absent} is not installed" in err and "players found" in err
        assert "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = procs.p2p("stream", "ab" * 32, "--signal", signal_url, "--player", "none",
                      "--port", str(port), name="busy")
        assert s.wait(30) == 2
        assert f"port {port} is in use" in s.stderr and "Traceback" not in s.stderr


def _installed(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def test_interrupted_stream_resumes_without_refetching(
    procs: Procs, signal_url: str, tmp_path: Path
):
    src = make_file(srcdir(tmp_path) / "clip.bin", 4_000_000)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "1M")
    s, _ = stream_url(procs, link, "-o", "clip.bin", name="first")
    s.wait_for(lambda p: len(verified(p)) >= 40, 60, "40 pieces")
    s.signal(signal.SIGINT)
    assert s.wait(30) == 130
    again, url = stream_url(procs, link, "-o", "clip.bin", name="second")
    resumed = again.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "resume"), None), 30, "resume"
    )
    assert resumed["pieces"] >= 40
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.read() == src.read_bytes()


def test_port_option_is_used(procs: Procs, signal_url: str, tmp_path: Path):
    src = make_file(srcdir(tmp_path) / "p.bin", 10_000)
    _, link = procs.seed(src, signal_url)
    port = free_port()
    _, url = stream_url(procs, link, "--port", str(port))
    assert url.startswith(f"http://127.0.0.1:{port}/")


def test_a_stop_after_the_download_completed_is_a_normal_exit(
    procs: Procs, signal_url: str, tmp_path: Path
):
    """With no player, Ctrl-C/SIGTERM is how a stream ends: once `done`, that is exit 0."""
    src = make_file(srcdir(tmp_path) / "clip.bin", 300_000)
    _, link = procs.seed(src, signal_url)
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = f"clip-{sig.name}.bin"
        s, _ = stream_url(procs, link, "-o", out, name=f"stream-{sig.name}")
        s.wait_for(lambda p: any(e["event"] == "done" for e in p.events()), 60, "done")
        s.signal(sig)
        assert s.wait(30) == 0, s.stderr[-3000:]
        assert (tmp_path / out).read_bytes() == src.read_bytes()


def test_bytes_changed_on_disk_under_a_verified_piece_are_never_served(
    procs: Procs, signal_url: str, tmp_path: Path
):
    """The served file edited in place: the response is cut, the stream exits 6 in one line."""
    data = make_file(srcdir(tmp_path) / "clip.bin", 1_000_000).read_bytes()
    _, link = procs.seed(srcdir(tmp_path) / "clip.bin", signal_url)
    s, url = stream_url(procs, link, "-o", "clip.bin")
    s.wait_for(lambda p: any(e["event"] == "done" for e in p.events()), 60, "done")
    with open(tmp_path / "clip.bin", "r+b") as f:  # the same inode the stream reads
        f.seek(500_000)
        f.write(bytes([data[500_000] ^ 0xFF]))
    got = b""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            got = resp.read()
    except (http.client.IncompleteRead, ConnectionError) as e:
        got = getattr(e, "partial", b"")
    assert len(got) < 500_000 + 16_384  # nothing past the changed 16 KiB chunk
    assert got == data[: len(got)]  # every byte served is the original
    assert s.wait(30) == 6, s.stderr[-3000:]
    errors = [line for line in s.stderr.splitlines() if line.startswith("p2p:")]
    assert len(errors) == 1 and "changed" in errors[0], s.stderr[-3000:]
    assert "Traceback" not in s.stderr
