"""Fixtures that run the real `p2p` processes on loopback and always stop them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
P2P = str(BIN / "p2p")
LOOPBACK = ["--ice-host", "127.0.0.1"]

# No test may multicast on the machine's real interfaces: every p2p process a test starts
# inherits this and neither announces nor browses mDNS. tests/test_lan.py turns it back on
# inside the network namespaces it creates.
os.environ["P2P_LAN"] = "0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def stop_group(p: subprocess.Popen, grace: float = 5) -> None:
    """Stop `p`, started with `start_new_session`, and its whole process group: SIGTERM,
    then SIGKILL if it has not exited after `grace` seconds (tests and benchmarks alike)."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(grace)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


class Proc:
    """A started process whose output goes to files, readable while it runs."""

    def __init__(self, args: list[str], workdir: Path, name: str, env: dict | None = None,
                 stdout=None, **kw) -> None:
        self.args = args
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self._out = open(self.out_path, "wb") if stdout is None else None
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(
            args,
            stdout=self._out if stdout is None else stdout,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            start_new_session=True,
            **kw,
        )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def events(self) -> list[dict]:
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def wait_for(self, pred, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred(self)
            if v:
                return v
            if self.p.poll() is not None:
                v = pred(self)
                if v:
                    return v
                raise AssertionError(
                    f"{self.name} exited {self.p.returncode} before {what}:\n{self.stderr[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: timed out waiting for {what}:\n{self.stderr[-3000:]}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit in {timeout}s:\n{self.stderr[-3000:]}"
            ) from None

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)

    def kill(self) -> None:
        stop_group(self.p)
        for f in (self._out, self._err):
            if f:
                f.close()


class Procs:
    def __init__(self, workdir: Path, env: dict) -> None:
        self.workdir = workdir
        self.env = env
        self.all: list[Proc] = []

    def start(self, args: list[str], name: str, **kw) -> Proc:
        p = Proc(args, self.workdir, name, env=kw.pop("env", self.env), **kw)
        self.all.append(p)
        return p

    def p2p(self, *args: str, name: str, **kw) -> Proc:
        return self.start([P2P, *args], name, **kw)

    def serve_signal(self, name: str = "signal") -> str:
        port = free_port()
        self.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port), name=name)
        wait_port(port)
        return f"http://127.0.0.1:{port}"

    def reference_signal(self, name: str = "refsignal") -> str:
        port = free_port()
        script = ROOT / "tests" / "helpers" / "reference_signal_server.py"
        self.start([sys.executable, str(script), str(port)], name)
        wait_port(port)
        return f"http://127.0.0.1:{port}"

    def seed(
        self, path: Path, signal_url: str | None, *extra: str, name: str = "seed", **kw
    ) -> tuple[Proc, str]:
        args = ["seed", str(path), *LOOPBACK, "--json", *extra]
        if signal_url:
            args += ["--signal", signal_url]
        p = self.p2p(*args, name=name, **kw)
        link = p.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip() else None,
                          60, "the link")
        return p, link

    def fetch(self, link: str, *extra: str, name: str = "fetch", **kw) -> Proc:
        return self.p2p("fetch", link, *LOOPBACK, "--json", *extra, name=name, **kw)

    def stop_all(self) -> None:
        for p in reversed(self.all):
            p.kill()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)  # for fixtures that report on failure
    return report


@pytest.fixture
def procs(request, tmp_path: Path) -> Iterator[Procs]:
    env = dict(os.environ)
    env["P2P_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("P2P_SIGNAL", None)
    env["PYTHONUNBUFFERED"] = "1"
    ps = Procs(tmp_path, env)
    try:
        yield ps
    finally:
        ps.stop_all()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # A failure that a full CI run shows once and a rerun does not: what every
            # process said, in the report (its files are gone with the run's temp dir).
            for p in ps.all:
                lines = p.err_path.read_text(errors="replace").splitlines()
                print(f"--- {p.name} stderr, last {min(len(lines), 40)} of {len(lines)} lines")
                print("\n".join(lines[-40:]))


@pytest.fixture
def signal_url(procs: Procs) -> str:
    # P2P_TEST_SIGNAL=reference runs the suite through the design note's reference server.
    if os.environ.get("P2P_TEST_SIGNAL") == "reference":
        return procs.reference_signal()
    return procs.serve_signal()


def start_node_server(procs: Procs, script: str, package: str, name: str,
                      args: list[str], prefix: list[str] | None) -> tuple[str, Proc]:
    """A server of tests/js (`script`, needing npm `package`) that prints {"port": N} once
    listening; `prefix`: a command to run it under (`ip netns exec NS`). Returns the port."""
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/js/node_modules" / package).is_dir():
        pytest.skip(f"node and tests/js's {package} are needed (scripts/test-all)")
    # Node resolves the script's imports from tests/js/node_modules, next to it.
    p = procs.start([*(prefix or []), node, str(ROOT / "tests/js" / script), *args], name)
    line = p.wait_for(lambda p: p.stdout.strip(), 30, f"{name}'s port")
    return str(json.loads(line.splitlines()[0])["port"]), p


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def start_ws_tracker(procs: Procs, name: str = "tracker", host: str = "127.0.0.1",
                     prefix: list[str] | None = None) -> tuple[str, Proc]:
    """The real WebTorrent tracker (bittorrent-tracker's server, tests/js/ws_tracker.mjs) on
    `host`, any port."""
    port, p = start_node_server(procs, "ws_tracker.mjs", "bittorrent-tracker", name, [host],
                                prefix)
    return f"ws://{_url_host(host)}:{port}", p


@pytest.fixture
def tracker(procs: Procs) -> tuple[str, Proc]:
    return start_ws_tracker(procs)


def start_peerjs_server(procs: Procs, name: str = "peerjs", host: str = "127.0.0.1",
                        port: int = 0, prefix: list[str] | None = None) -> tuple[str, Proc]:
    """The real PeerJS server (the `peer` package's PeerServer, tests/js/peerjs_server.mjs)
    on `host`, `port` (0: any). Returns its URL as users give it (http://HOST:PORT, key and
    path the defaults)."""
    got, p = start_node_server(procs, "peerjs_server.mjs", "peer", name, [host, str(port)],
                               prefix)
    return f"http://{_url_host(host)}:{got}", p


@pytest.fixture
def peerjs_server(procs: Procs) -> tuple[str, Proc]:
    return start_peerjs_server(procs)


@contextlib.contextmanager
def running_lab(procs: Procs, lab, unavailable: str | None) -> Iterator:
    """A namespace lab (tests/netns.py, turn_helpers.py, nat_helpers.py) for one test:
    skipped with `unavailable`'s reason if it cannot run here; its processes stopped
    before its namespaces go (a process inside would keep a deleted namespace alive)."""
    if unavailable:
        pytest.skip(unavailable)
    try:
        lab.start()
        yield lab
    finally:
        procs.stop_all()
        lab.close()


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


def one_line_error(proc: Proc, code: int) -> str:
    """`proc` failed with exit `code` and one `p2p:` line on stderr, no traceback."""
    rc = proc.wait(90)
    err = proc.stderr
    assert rc == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("p2p:")]
    assert len(lines) == 1, err
    return lines[0]


def sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; run scripts/test-all, which installs it")
    return path


def nowait_reads(directory: Path) -> bool:
    """Whether files in `directory` take `preadv(RWF_NOWAIT)`, the seeder's reads on the
    event loop (p2pcli/store.py `read_block_nowait`): Linux 4.14+ on ext4, XFS, btrfs;
    not tmpfs here (EOPNOTSUPP), nor macOS. Without it the seeder reads in threads."""
    if not hasattr(os, "RWF_NOWAIT"):
        return False
    probe = directory / ".nowait-probe"
    probe.write_bytes(b"x")  # just written: in the page cache
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()
