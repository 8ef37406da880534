"""`p2p info`, `p2p stream` and `--select` of magnet links against the real thing:
WebTorrent 2.8.5 seeding in node through the real bittorrent-tracker on loopback (as
tests/test_webtorrent_fetch.py). The decisions themselves are unit-tested in
tests/test_btselect.py."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import Procs, make_file, need, one_line_error, start_ws_tracker
from test_webtorrent_fetch import wt_seed

pytestmark = pytest.mark.skipif(
    not (Path(__file__).resolve().parent / "js" / "node_modules" / "webtorrent").is_dir(),
    reason="needs node and `npm ci` in tests/js",
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6 s MP4 (~2 MB) with its index at the end, as a player meets it in the wild."""
    ffmpeg = need("ffmpeg")
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=duration=6:size=320x240:rate=25,noise=alls=20:allf=t",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=6", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "2M", "-c:a", "aac",
                    "-shortest", str(path)], check=True, timeout=120)
    return path


def p2p_json(procs: Procs, *args: str, name: str):
    return procs.p2p(*args, "--ice-host", "127.0.0.1", "--json", name=name)


def probe_and_range(url: str, data: bytes, start: int) -> None:
    """ffprobe finds both streams at the URL, and a Range returns the source's bytes."""
    ffprobe = need("ffprobe")
    probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "stream=codec_type",
                            "-of", "csv=p=0", url], capture_output=True, text=True, timeout=90)
    assert probe.returncode == 0, probe.stderr
    assert {"video", "audio"} <= set(probe.stdout.split())
    end = start + 100_000
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end - 1}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
        assert r.read() == data[start:end]


def wait_done(proc) -> dict:
    """The stream's `done` event: every wanted piece verified, the file under its name."""
    proc.wait_for(lambda p: any(e["event"] == "done" for e in p.events()), 60, "done")
    return next(e for e in proc.events() if e["event"] == "done")


@pytest.mark.timeout(150)
def test_info_and_stream_of_a_magnet(procs: Procs, clip: Path) -> None:
    url, _ = start_ws_tracker(procs)
    (procs.workdir / "src").mkdir()  # the stream writes into the working directory
    src = procs.workdir / "src" / "movie.mp4"
    shutil.copyfile(clip, src)
    data = src.read_bytes()
    magnet = wt_seed(procs, src, url, piece_length=65536)
    # info: the info dict by ut_metadata, the seeder counted; the same shape as a p2p link's
    i = procs.p2p("info", magnet, "--json", name="info")
    assert i.wait(60) == 0, i.stderr
    got = json.loads(i.stdout)
    assert got == {"event": "info", "hash": magnet.split("btih:")[1][:40], "name": "movie.mp4",
                   "size": len(data), "piece_size": 65536, "pieces": -(-len(data) // 65536),
                   "version": 1, "files": [{"index": 0, "path": "movie.mp4", "size": len(data)}],
                   "folders": [], "peers": 1, "seeders": 1}
    # and of a .torrent of the same content (its info dict from the file), for people
    from p2pcli.btsession import torrent_for
    from p2pcli.magnet import bencode

    meta, _ = torrent_for(src, 65536)
    tfile = procs.workdir / "movie.torrent"
    tfile.write_bytes(bencode({"announce": url, "info": 0}).replace(
        b"4:infoi0e", b"4:info" + meta.raw))
    human = procs.p2p("info", str(tfile), name="info-human")
    assert human.wait(60) == 0, human.stderr
    assert f"hash   {got['hash']}" in human.stdout
    assert "peers  1 answering, 1 with every piece" in human.stdout
    # stream: plays while downloading; a Range far into the file is the source's bytes
    s = p2p_json(procs, "stream", magnet, "--player", "none", "--timeout", "30", name="stream")
    link = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL").splitlines()[0]
    assert link.endswith("/movie.mp4")
    probe_and_range(link, data, len(data) // 2)
    assert any(e["event"] == "first-byte" for e in s.events())
    assert wait_done(s)["size"] == len(data)
    assert (procs.workdir / "movie.mp4").read_bytes() == data  # kept, under its name
    probe_and_range(link, data, 0)  # and still served from it
    s.signal(signal.SIGTERM)
    assert s.wait(30) == 0, s.stderr


@pytest.mark.timeout(150)
def test_select_on_a_multi_file_torrent_fetches_only_its_pieces(procs: Procs, clip: Path
                                                                ) -> None:
    url, _ = start_ws_tracker(procs)
    share = procs.workdir / "src" / "share"
    (share / "sub").mkdir(parents=True)
    a = make_file(share / "a.bin", 300_000, seed=2)
    video = share / "sub" / "clip.mp4"
    shutil.copyfile(clip, video)
    z = make_file(share / "z.bin", 200_000, seed=3)
    magnet = wt_seed(procs, share, url)  # 16 KiB pieces
    i = procs.p2p("info", magnet, name="info")
    assert i.wait(60) == 0, i.stderr
    assert "files  3 (index, size, path: --select takes either)" in i.stdout
    assert "sub/clip.mp4" in i.stdout
    # fetch --select: that file only, and only the pieces that hold its bytes
    dest = procs.workdir / "dl"
    dest.mkdir()
    f = procs.fetch(magnet, "-o", str(dest), "--select", "z.*", "--timeout", "30", name="f")
    assert f.wait(60) == 0, f.stderr
    assert (dest / "share" / "z.bin").read_bytes() == z.read_bytes()
    assert not (dest / "share" / "a.bin").exists()
    assert not (dest / "share" / "sub").exists()
    done = next(e for e in f.events() if e["event"] == "done")
    total = a.stat().st_size + video.stat().st_size + z.stat().st_size
    first = (total - z.stat().st_size) // 16384  # the piece z.bin starts in
    assert done["size"] == z.stat().st_size
    assert done["received"] <= total - first * 16384  # nothing before that piece
    # stream plays the torrent's video (its first), fetching only its pieces
    s = p2p_json(procs, "stream", magnet, "--player", "none", "--timeout", "30", name="stream")
    link = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL").splitlines()[0]
    data = video.read_bytes()
    probe_and_range(link, data, 1_000_000)
    done = wait_done(s)
    assert (procs.workdir / "share" / "sub" / "clip.mp4").read_bytes() == data
    assert not (procs.workdir / "share" / "a.bin").exists()
    assert not (procs.workdir / "share" / "z.bin").exists()
    # Only the pieces holding its bytes were verified, none of its neighbours' others.
    assert done["size"] == len(data)
    off = a.stat().st_size
    need = (off + len(data) - 1) // 16384 - off // 16384 + 1
    s.wait_for(lambda p: any(e["event"] == "progress" and e["verified"] == need
                             for e in p.events()), 30, "a progress event")
    assert max(e["verified"] or 0 for e in s.events() if e["event"] == "progress") == need
    s.signal(signal.SIGTERM)
    assert s.wait(30) == 0, s.stderr


@pytest.mark.timeout(90)
def test_user_errors_are_one_line(procs: Procs) -> None:
    bad = procs.workdir / "bad.torrent"
    bad.write_bytes(b"<html>not a torrent</html>")
    url, _ = start_ws_tracker(procs)
    nobody = f"magnet:?xt=urn:btih:{'cd' * 20}&tr={url}"
    # All at once (each waits on its own): a file that is no torrent, a swarm nobody seeds.
    bads = [procs.p2p(cmd, str(bad), name=f"bad-{cmd}") for cmd in ("info", "stream", "fetch")]
    nones = [p2p_json(procs, "info", nobody, "--timeout", "2", name="none-info"),
             p2p_json(procs, "stream", nobody, "--timeout", "2", "--player", "none",
                      name="none-stream")]
    (procs.workdir / "src").mkdir()
    src = make_file(procs.workdir / "src" / "one.bin", 100_000, seed=4)
    magnet = wt_seed(procs, src, url)
    sels = [p2p_json(procs, "fetch", magnet, "--select", "*.mkv", "-o",
                     str(procs.workdir / "x"), name="sel-fetch"),
            p2p_json(procs, "stream", magnet, "--select", "*.mkv", "--player", "none",
                     name="sel-stream")]
    for p in bads:
        assert "bad torrent file" in one_line_error(p, 2)
    for p in nones:
        assert "metadata" in one_line_error(p, 3)  # ExitCode.NO_PEERS
    for p in sels:
        assert "matches no file" in one_line_error(p, 2)  # once the metadata is known
