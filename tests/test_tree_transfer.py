"""Folder shares end to end (issue 16): real p2p processes over loopback: seed DIR, fetch
-o DIR byte-identical, --select, -o - with one file or refused, -o DIR of a single file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import LOOPBACK, P2P, Procs, make_file, need, one_line_error

PIECE = 16 * 1024


def done_event(proc) -> dict:
    return proc.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "done"), None), 120, "done"
    )


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "empty.bin").write_bytes(b"")
    make_file(root / "sub" / "big.bin", 3 * 1024 * 1024 + 7)
    make_file(root / "sub" / "deeper" / "x.bin", PIECE + 3, seed=2)
    for i in range(40):  # many small files sharing pieces
        (root / "sub" / f"small{i:02}.txt").write_bytes(os.urandom(i * 97))
    (root / "sub" / "link.txt").symlink_to("../a.txt")
    return root


def listing(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def test_folder_round_trip_select_and_stdout(procs: Procs, signal_url: str) -> None:
    src = make_tree(procs.workdir / "src" / "photos")
    _, link = procs.seed(src, signal_url)

    f = procs.fetch(link, "-o", "out", name="whole")
    assert f.wait(120) == 0, f.stderr
    got = listing(procs.workdir / "out" / "photos")
    want = listing(src)
    assert got == want  # byte-identical, empty file and empty folder included
    assert not list((procs.workdir / "out").rglob("*.part"))
    assert done_event(f)["path"] == "out/photos"

    # Again into the same place: every file exists, so it is refused, one line, exit 2.
    again = procs.fetch(link, "-o", "out", name="again")
    assert "already exists; use --force" in one_line_error(again, 2)
    forced = procs.fetch(link, "-o", "out", "--force", name="forced")
    assert forced.wait(120) == 0, forced.stderr
    assert listing(procs.workdir / "out" / "photos") == want

    s = procs.fetch(link, "-o", "sel", "--select", "sub/deeper/*", "--select", "0", name="sel")
    assert s.wait(120) == 0, s.stderr
    assert listing(procs.workdir / "sel" / "photos") == {
        "a.txt": b"hello\n", "sub/": None, "sub/deeper/": None,
        "sub/deeper/x.bin": (src / "sub/deeper/x.bin").read_bytes()}
    done = done_event(s)
    assert done["size"] == 6 + PIECE + 3
    assert done["received"] < 4 * PIECE  # only the pieces those two files need

    with open(procs.workdir / "piped", "wb") as sink:
        p = procs.fetch(link, "-o", "-", "--select", "sub/big.bin", name="pipe", stdout=sink)
        assert p.wait(120) == 0, p.stderr
    assert (procs.workdir / "piped").read_bytes() == (src / "sub/big.bin").read_bytes()

    refused = procs.fetch(link, "-o", "-", name="refused", stdout=subprocess.DEVNULL)
    assert "give -o DIR" in one_line_error(refused, 2)
    two = procs.fetch(link, "-o", "-", "--select", "*.txt", name="two",
                      stdout=subprocess.DEVNULL)
    assert "takes one file" in one_line_error(two, 2)
    nothing = procs.fetch(link, "-o", "x", "--select", "*.mkv", name="nothing")
    assert "matches no file" in one_line_error(nothing, 2)
    bad_index = procs.fetch(link, "-o", "x", "--select", "999", name="bad-index")
    assert "numbered 0 to" in one_line_error(bad_index, 2)
    (procs.workdir / "afile").write_bytes(b"")
    # Before the manifest is known, a file there is refused as for any download; with
    # --force, the folder share says it needs a folder.
    assert "already exists" in one_line_error(procs.fetch(link, "-o", "afile", name="f1"), 2)
    not_dir = procs.fetch(link, "-o", "afile", "--force", name="not-dir")
    assert "is not a folder" in one_line_error(not_dir, 2)


def test_several_files_and_single_file_into_a_folder(procs: Procs, signal_url: str) -> None:
    d = procs.workdir / "src"
    d.mkdir()
    one, two = make_file(d / "one.bin", 100_000), make_file(d / "two.bin", 5, seed=3)
    seeder = procs.p2p("seed", str(one), str(two), *LOOPBACK, "--json", "--signal", signal_url,
                       name="seed-two")
    link = seeder.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip()
                           else None, 60, "the link")
    (procs.workdir / "into").mkdir()
    f = procs.fetch(link, "-o", "into", name="two")
    assert f.wait(120) == 0, f.stderr
    assert listing(procs.workdir / "into") == {"one.bin": one.read_bytes(),
                                               "two.bin": two.read_bytes()}

    # A single-file share with -o DIR: DIR/NAME (it used to be refused).
    _, link1 = procs.seed(one, signal_url, name="seed-one")
    (procs.workdir / "dir").mkdir()
    g = procs.fetch(link1, "-o", "dir", name="one")
    assert g.wait(120) == 0, g.stderr
    assert (procs.workdir / "dir" / "one.bin").read_bytes() == one.read_bytes()
    assert done_event(g)["path"] == "dir/one.bin"


@pytest.mark.parametrize("mode", ["human", "json"])
def test_seed_folder_errors_are_one_line(procs: Procs, tmp_path: Path, mode: str) -> None:
    d = tmp_path / f"bad-{mode}"
    d.mkdir()
    (d / "loop").symlink_to(d)
    args = ["--json"] if mode == "json" else []
    p = procs.start([P2P, "seed", str(d), "--port", "0", *args], f"seed-{mode}")
    assert "symbolic link to a folder" in one_line_error(p, 2)


@pytest.mark.parametrize("mode", ["human", "json"])
def test_info_shows_the_share_without_downloading(procs: Procs, signal_url: str,
                                                  mode: str) -> None:
    src = make_tree(procs.workdir / "src" / "photos")
    _, link = procs.seed(src, signal_url)
    args = ["--json"] if mode == "json" else []
    p = procs.p2p("info", link, *LOOPBACK, *args, name=f"info-{mode}")
    assert p.wait(60) == 0, p.stderr
    assert "Traceback" not in p.stderr
    if mode == "json":
        out = json.loads(p.stdout)
        assert out["event"] == "info" and out["name"] == "photos" and out["version"] == 2
        assert out["peers"] == 1 and out["seeders"] == 1
        assert out["folders"] == ["emptydir"]
        paths = [f["path"] for f in out["files"]]
        assert paths[:3] == ["a.txt", "empty.bin", "sub/big.bin"]
        assert [f["index"] for f in out["files"]] == list(range(len(paths)))
        assert out["files"][2]["size"] == 3 * 1024 * 1024 + 7
        # Not one piece byte came in.
        left = [e for e in p.events() if e["event"] == "peer-left"]
        assert all(e["received"] == 0 for e in left)
    else:
        assert "name   photos" in p.stdout
        assert "peers  1 answering, 1 with every piece" in p.stdout
        assert "sub/deeper/x.bin" in p.stdout and "emptydir/" in p.stdout
        assert "pieces" not in p.stderr  # no download bar

    one = make_file(procs.workdir / "src" / "single.bin", 1000)
    _, link1 = procs.seed(one, signal_url, name="seed-one")
    q = procs.p2p("info", link1, *LOOPBACK, "--json", name="info-one")
    assert q.wait(60) == 0, q.stderr
    out = json.loads(q.stdout)
    assert out["version"] == 1 and out["files"] == [{"index": 0, "path": "single.bin",
                                                     "size": 1000}]
    missing = procs.p2p("info", "ab" * 32, *LOOPBACK, "--signal", signal_url, "--timeout", "2",
                        *args, name=f"info-missing-{mode}")
    assert "no peer has" in one_line_error(missing, 3)


def test_stream_plays_a_video_of_a_folder_share(procs: Procs, signal_url: str) -> None:
    ffmpeg, ffprobe = need("ffmpeg"), need("ffprobe")
    src = procs.workdir / "src" / "holiday"
    (src / "clips").mkdir(parents=True)
    (src / "a-notes.txt").write_bytes(os.urandom(40_000))  # before the videos, sharing pieces
    for name, codec in (("clips/one.mp4", "libx264"), ("clips/two.mkv", "libx264")):
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=duration=3:size=320x240:rate=25", "-c:v", codec,
                        "-pix_fmt", "yuv420p", str(src / name)], check=True, timeout=120)
    _, link = procs.seed(src, signal_url)

    s = procs.p2p("stream", link, *LOOPBACK, "--json", "--player", "none", "-o", "st",
                  name="stream")
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "stream=codec_type",
                            "-of", "csv=p=0", url], capture_output=True, text=True, timeout=90)
    assert probe.returncode == 0, probe.stderr
    assert "video" in probe.stdout.split()
    with urllib.request.urlopen(url, timeout=60) as r:  # the first video, whole
        assert r.read() == (src / "clips/one.mp4").read_bytes()
    listing_url = url.rsplit("/", 1)[0] + "/"
    with urllib.request.urlopen(listing_url, timeout=30) as r:
        page = r.read().decode()
    assert "a-notes.txt" in page and "clips/two.mkv" in page and "(playing)" in page

    t = procs.p2p("stream", link, *LOOPBACK, "--json", "--player", "none", "-o", "st2",
                  "--select", "*.mkv", name="stream-select")
    url2 = t.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    with urllib.request.urlopen(url2, timeout=60) as r:
        assert r.read() == (src / "clips/two.mkv").read_bytes()
    t.wait_for(lambda p: any(e["event"] == "done" for e in p.events()), 60, "done")
    # Only the played file was written.
    assert [str(p.relative_to(procs.workdir / "st2")) for p in
            (procs.workdir / "st2").rglob("*") if p.is_file()] == ["holiday/clips/two.mkv"]

    bad = procs.p2p("stream", link, *LOOPBACK, "--player", "none", "--select", "*.txt",
                    "--select", "*.mp4", "-o", "st3", name="stream-two")
    assert "takes one file" in one_line_error(bad, 2)


def test_interrupted_folder_fetch_resumes(procs: Procs, signal_url: str) -> None:
    src = procs.workdir / "src" / "set"
    src.mkdir(parents=True)
    for i in range(4):
        make_file(src / f"part{i}.bin", 2 * 1024 * 1024 + i, seed=10 + i)
    _, link = procs.seed(src, signal_url, "--max-upload-rate", "2M")
    first = procs.fetch(link, "-o", "out", name="first")
    first.wait_for(lambda p: sum(e["event"] == "piece-verified" for e in p.events()) >= 100,
                   60, "100 pieces")
    first.signal(signal.SIGINT)
    assert first.wait(30) == 130, first.stderr
    assert list((procs.workdir / "out" / "set").glob("*.part"))
    second = procs.fetch(link, "-o", "out", name="second")
    assert second.wait(120) == 0, second.stderr
    resumed = next(e for e in second.events() if e["event"] == "resume")
    assert resumed["pieces"] >= 90  # pieces on a file boundary are fetched again
    assert listing(procs.workdir / "out" / "set") == listing(src)


def _crafted(entries: list[tuple[int, bytes, int]], root: bytes = b"r") -> bytes:
    """Folder-share manifest bytes as an attacker writes them (no validation)."""
    import struct

    out = [struct.pack(">4sBBH", b"P2PM", 2, 14, len(root)), root,
           struct.pack(">I", len(entries))]
    for kind, path, size in entries:
        out += [struct.pack(">BH", kind, len(path)), path, struct.pack(">Q", size)]
    total = sum(s for _, _, s in entries)
    return b"".join(out) + bytes(32) * (-(-total // PIECE))


@pytest.mark.parametrize("entries,root", [
    ([(0, b"../escaped.txt", 5)], b"r"),
    ([(0, b"ok.txt", 5)], b".."),
    ([(0, b"/tmp/absolute.txt", 5)], b""),
    ([(0, b"a\\..\\..\\x.txt", 5)], b""),
    ([(0, b"A", 5), (0, b"a", 5)], b"r"),
], ids=["dotdot", "root-dotdot", "absolute", "backslash", "case"])
def test_a_hostile_manifest_writes_nothing(procs: Procs, signal_url: str, entries, root) -> None:
    """The hash names the manifest, so anyone can make a link to a hostile one: fetch
    refuses it before writing anything, anywhere."""
    import hashlib
    import sys

    from conftest import ROOT

    raw = _crafted(entries, root)
    (procs.workdir / "crafted.manifest").write_bytes(raw)
    hostile = procs.start([sys.executable, str(ROOT / "tests/helpers/hostile_peer.py"),
                           signal_url, str(procs.workdir / "crafted.manifest"), "crafted"],
                          "hostile")
    hostile.wait_for(lambda p: p.stdout.strip(), 30, "hostile announce")
    out = procs.workdir / "deep" / "out"
    out.parent.mkdir()
    f = procs.fetch(hashlib.sha256(raw).hexdigest(), "--signal", signal_url, "-o", str(out),
                    "--timeout", "3")
    assert f.wait(60) not in (0, None), f.stderr
    assert "Traceback" not in f.stderr
    rejected = [e for e in f.events() if e["event"] == "manifest-rejected"]
    assert rejected, f.stderr
    # Nothing anywhere: not the target, not beside it, not in the work dir (which holds
    # only the crafted bytes and the processes' logs), not at the absolute path.
    assert list(out.parent.iterdir()) == []
    made = {p.name for p in procs.workdir.rglob("*")} - {"crafted.manifest", "deep"}
    assert all(n.endswith((".err", ".out")) for n in made), made
    assert not Path("/tmp/absolute.txt").exists()
