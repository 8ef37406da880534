"""Start-up and seek latency: `p2p stream` beside `p2p fetch | player` in the same run.

Two 60 s test videos are seeded on loopback: an MP4 with its index (moov) at the end, the
hard case for streaming, and the same with `-movflags faststart` (index first). A pipe
cannot seek back, so `fetch | player` cannot play the first at all ("fails" below).
Each figure is measured from the moment the client process is started:

  stream   url          `p2p stream --player none` started -> its URL on stdout (when a
                        player would start)
           first_byte   `p2p stream --player none` started -> first byte of a GET /
           first_frame  ... -> ffprobe has decoded the first video frame from the URL
           seek_80      a fresh stream -> ffprobe has decoded a frame at 80% of the duration
           frame_cpu    CPU seconds (user + system) the `p2p stream` process had used when
                        ffprobe decoded that first frame: its start-up cost, which unlike
                        the wall-clock figures barely moves with other processes' load
  pipe     first_byte   `p2p fetch -o -` started -> first byte on its stdout
           first_frame  `p2p fetch -o - | ffprobe -` -> first video frame decoded
           seek_80      `p2p fetch -o - | ffprobe -read_intervals 80%` (a pipe cannot seek,
                        so the player reads everything before 80%)

Every figure is the median of --runs runs (default 3). The client trees are byte-compiled
first, as installing p2p does: with PYTHONDONTWRITEBYTECODE set, a source tree would
otherwise compile its ~50 modules from source at every start (tens of milliseconds).
Loopback only; every process is stopped.
    python benchmarks/stream.py [--duration 60] [--runs 3] [--json]

`--client NAME=DIR` (repeatable) runs the clients (`stream`, `fetch`) from the source tree
DIR (as PYTHONPATH) under the label NAME, beside the current code (`current`), taking turns
run by run against the same seeders: a before/after comparison measured in one run, e.g.
`git archive HEAD~3 | tar -x -C /tmp/before && ln -s cli /tmp/before/p2p_cli` then
`--client before=/tmp/before`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

P2P = str(Path(sys.executable).parent / "p2p")
ROOT = Path(__file__).resolve().parents[1]
LOOP = ["--ice-host", "127.0.0.1"]
#: Environment of the client processes, per label (see --client); None: inherited.
CLIENT_ENV: dict[str, dict[str, str] | None] = {"current": None}
COLUMNS = ("url", "first_byte", "first_frame", "seek_80", "frame_cpu")
#: frame_cpu of each first_frame run, per (client, mode).
FRAME_CPU: dict[tuple[str, str], list[float]] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def popen(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(args, cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL, **kw)


def compile_tree(tree: Path) -> None:
    """Byte-compile a source tree's modules (into its __pycache__, ignored by git)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "cli"),
                    str(tree / "p2pcli")], check=True, stdout=subprocess.DEVNULL, timeout=300)


def first_frame_cmd(src: str, at: float | None) -> list[str]:
    interval = f"{at}%+#1" if at is not None else "%+#1"
    return ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
            "-of", "csv=p=0", "-read_intervals", interval, src]


def start_stream(link: str, cwd: Path, client: str) -> tuple[subprocess.Popen, str, float]:
    t0 = time.monotonic()
    p = popen([P2P, "stream", link, *LOOP, "--player", "none", "--quiet", "--force"], cwd,
              env=CLIENT_ENV[client])
    assert p.stdout is not None
    url = p.stdout.readline().decode().strip()
    if not url:
        raise RuntimeError("stream printed no URL")
    return p, url, t0


def stream_url(link: str, cwd: Path, client: str) -> float:
    p, _, t0 = start_stream(link, cwd, client)
    t = time.monotonic() - t0
    kill(p)
    _clean(cwd)
    return t


def stream_first_byte(link: str, cwd: Path, client: str) -> float:
    p, url, t0 = start_stream(link, cwd, client)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read(1)
        return time.monotonic() - t0
    finally:
        kill(p)
        _clean(cwd)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the live process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_frame(link: str, cwd: Path, duration: float, at: float | None,
                 client: str, cpu: list[float] | None = None) -> float:
    p, url, t0 = start_stream(link, cwd, client)
    try:
        seek = duration * at / 100 if at is not None else None
        cmd = first_frame_cmd(url, None)
        if seek is not None:
            cmd[cmd.index("%+#1")] = f"{seek}%+#1"
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"ffprobe failed: {out.stderr}")
        t = time.monotonic() - t0
        if cpu is not None:
            cpu.append(cpu_seconds(p.pid))
        return t
    finally:
        kill(p)
        _clean(cwd)


def pipe_first_byte(link: str, cwd: Path, client: str) -> float:
    t0 = time.monotonic()
    p = popen([P2P, "fetch", link, *LOOP, "-o", "-", "--quiet"], cwd, env=CLIENT_ENV[client])
    try:
        assert p.stdout is not None
        p.stdout.read(1)
        return time.monotonic() - t0
    finally:
        kill(p)


def pipe_frame(link: str, cwd: Path, duration: float, at: float | None,
               client: str) -> float:
    t0 = time.monotonic()
    p = popen([P2P, "fetch", link, *LOOP, "-o", "-", "--quiet"], cwd, env=CLIENT_ENV[client])
    try:
        cmd = first_frame_cmd("-", None)
        if at is not None:
            cmd[cmd.index("%+#1")] = f"{duration * at / 100}%+#1"
        out = subprocess.run(cmd, stdin=p.stdout, capture_output=True, text=True, timeout=300)
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"ffprobe failed: {out.stderr}")
        return time.monotonic() - t0
    finally:
        kill(p)


def _clean(cwd: Path) -> None:
    for f in cwd.glob("movie*.mp4*"):
        f.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="test video length, seconds")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--client", action="append", default=[], metavar="NAME=DIR",
                    help="also run the clients from source tree DIR, labelled NAME")
    ap.add_argument("--only", default="", help="comma-separated figures to measure "
                    "(e.g. stream/moov-end:first_frame); default: all")
    args = ap.parse_args()
    for spec in args.client:
        name, _, tree = spec.partition("=")
        if not name or not Path(tree, "p2p_cli", "main.py").is_file():
            sys.exit(f"--client {spec!r}: expected NAME=DIR with DIR/p2p_cli/main.py")
        CLIENT_ENV[name] = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
        compile_tree(Path(tree).resolve())
    compile_tree(ROOT)
    for tool in ("ffmpeg", "ffprobe"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (apt-get install ffmpeg)")
    work = Path(tempfile.mkdtemp(prefix="p2p-streambench-"))
    seeddir, cwd = work / "seed", work / "client"
    seeddir.mkdir()
    cwd.mkdir()
    env = {**os.environ, "P2P_CACHE_DIR": str(work / "cache"), "P2P_LAN": "0"}  # no mDNS
    procs: list[subprocess.Popen] = []
    try:
        movie = seeddir / "movie.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
             f"testsrc2=duration={args.duration}:size=1280x720:rate=25,noise=alls=10:allf=t",
             "-f", "lavfi", "-i", f"sine=frequency=440:duration={args.duration}",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "4M",
             "-c:a", "aac", "-shortest", str(movie)], check=True, timeout=600)
        fast = seeddir / "movie-faststart.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(movie), "-c", "copy",
                        "-movflags", "faststart", str(fast)], check=True, timeout=120)
        port = free_port()
        procs.append(popen([P2P, "serve-signal", "--host", "127.0.0.1", "--port", str(port),
                            "--quiet"], work, env=env))
        time.sleep(1)
        links = {}
        for key, path in (("moov-end", movie), ("faststart", fast)):
            seed = popen([P2P, "seed", str(path), "--signal", f"http://127.0.0.1:{port}", *LOOP,
                          "--quiet"], work, env=env)
            procs.append(seed)
            assert seed.stdout is not None
            links[key] = seed.stdout.readline().decode().strip()
        d = args.duration
        measures = {}
        for key, link in links.items():
            measures[f"stream/{key}"] = {
                "url": lambda c, link=link: stream_url(link, cwd, c),
                "first_byte": lambda c, link=link: stream_first_byte(link, cwd, c),
                "first_frame": lambda c, link=link, key=key: stream_frame(
                    link, cwd, d, None, c, FRAME_CPU.setdefault((c, key), [])),
                "seek_80": lambda c, link=link: stream_frame(link, cwd, d, 80, c),
            }
            measures[f"pipe/{key}"] = {
                "first_byte": lambda c, link=link: pipe_first_byte(link, cwd, c),
                "first_frame": lambda c, link=link: pipe_frame(link, cwd, d, None, c),
                "seek_80": lambda c, link=link: pipe_frame(link, cwd, d, 80, c),
            }
        only = {s for s in args.only.split(",") if s}
        results: dict[str, dict[str, float | str]] = {}
        for mode, ms in measures.items():
            for client in CLIENT_ENV:
                results[_label(client, mode)] = dict.fromkeys(COLUMNS, "-")
            for name, fn in ms.items():
                if only and f"{mode}:{name}" not in only:
                    continue
                # The clients take turns run by run, so load on the machine hits them alike.
                runs: dict[str, list[float]] = {c: [] for c in CLIENT_ENV}
                failed: set[str] = set()
                for _ in range(args.runs):
                    for client in CLIENT_ENV:
                        if client in failed:
                            continue
                        try:
                            runs[client].append(fn(client))
                        except RuntimeError:
                            failed.add(client)
                for client, times in runs.items():
                    label = _label(client, mode)
                    if client in failed:
                        results[label][name] = "fails"
                        print(f"{label} {name}: fails", file=sys.stderr, flush=True)
                        continue
                    results[label][name] = round(statistics.median(times), 3)
                    print(f"{label} {name}: {times}", file=sys.stderr, flush=True)
                    cpu = FRAME_CPU.get((client, mode.partition("/")[2]))
                    if name == "first_frame" and mode.startswith("stream/") and cpu:
                        results[label]["frame_cpu"] = round(statistics.median(cpu), 3)
                        print(f"{label} frame_cpu: {cpu}", file=sys.stderr, flush=True)
        size = movie.stat().st_size
    finally:
        for p in procs:
            kill(p)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"video_bytes": size, "duration_s": args.duration, **results}, indent=2))
        return
    print(f"{args.duration:.0f} s video, {size / 1e6:.1f} MB; "
          f"median of {args.runs} runs, seconds from client start")
    width = max(len(label) for label in results) + 2
    print(f"{'':{width}}{'url':>7}{'first_byte':>12}{'first_frame':>13}{'seek_80':>10}"
          f"{'frame_cpu':>11}")
    for mode, r in results.items():
        print(f"{mode:{width}}{r['url']:>7}{r['first_byte']:>12}{r['first_frame']:>13}"
              f"{r['seek_80']:>10}{r['frame_cpu']:>11}")


def _label(client: str, mode: str) -> str:
    return mode if len(CLIENT_ENV) == 1 else f"{client}:{mode}"


if __name__ == "__main__":
    main()
