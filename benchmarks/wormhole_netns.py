"""`p2p send` / `p2p receive` between two network namespaces (issue 18's closing note).

Two namespaces joined by one veth pair, nothing in the root namespace:

    A  10.231.N.1  `p2p serve-signal`, `p2p send FILE` (and `p2p seed FILE`, the baseline)
    B  10.231.N.2  `p2p receive CODE --yes -o -` (and `p2p fetch LINK -o -`)

Prints the transcript of one send/receive pair (the commands and their stderr, human
mode, verbatim), then, over --runs rounds, the time from starting `receive` (our Popen,
interpreter start-up included) to its first byte on stdout, beside `fetch -o -` of the same
file from a `seed` in the same namespace, in the same rounds (the order alternates from
round to round). Every received stream is compared with the file. Medians (min-max), and
the ratio receive / fetch as the ratio of the medians and the range of the rounds' own
ratios (how noisy the run was). The load average is printed before and after.

Needs root and `ip`. Everything started here is stopped and both namespaces deleted on
exit, Ctrl-C and SIGTERM included.

    .venv/bin/python benchmarks/wormhole_netns.py [--runs 5] [--size 3M]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import stop_group  # noqa: E402
from netns import SUBNET, Namespaces, Node, _run, reap_stale, unavailable  # noqa: E402

P2P = str(Path(sys.executable).parent / "p2p")
PORT = 8080
TIMEOUT = 60.0  # seconds any one command may take


class VethPair(Namespaces):
    """Namespaces A and B, one veth between them (`eth0` in each)."""

    a: Node
    b: Node

    def start(self) -> VethPair:
        reap_stale(self.prefix)
        a, b = self._new_ns("a"), self._new_ns("b")
        _run("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", b)
        self.a = Node(a, f"{SUBNET}.{self.net}.1")
        self.b = Node(b, f"{SUBNET}.{self.net}.2")
        for node in (self.a, self.b):
            _run("ip", "-n", node.ns, "addr", "add", f"{node.addr}/24", "dev", "eth0")
            _run("ip", "-n", node.ns, "link", "set", "eth0", "up")
        return self

    @property
    def server(self) -> Node:
        return self.a


class Procs:
    """Processes started here, stopped by `stop_all` (their whole process group)."""

    def __init__(self) -> None:
        self.all: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.all.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.all):
            stop_group(p)


def wait_listening(node: Node, host: str, port: int) -> None:
    probe = (f"import socket; socket.create_connection(({host!r}, {port}), 0.5).close()")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(node.cmd(sys.executable, "-c", probe),
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {host}:{port}")


def line_matching(path: Path, pattern: str, proc: subprocess.Popen) -> str:
    """The first group of `pattern` in the file `path` (a process's stderr or stdout)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"), re.M)
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{path.read_text()}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {pattern!r} in {path}")


def first_byte(cmd: list[str], want: bytes, err: Path, procs: Procs) -> float:
    """Seconds from starting `cmd` to its first byte on stdout; all of stdout must be `want`."""
    with open(err, "wb") as e:
        started = time.monotonic()
        p = procs.start(cmd, stdout=subprocess.PIPE, stderr=e)
        assert p.stdout is not None
        head = p.stdout.read(1)
        seconds = time.monotonic() - started
        got = head + p.stdout.read()
        rc = p.wait(TIMEOUT)
    if rc != 0 or got != want:
        raise RuntimeError(f"{cmd[3:5]}: exit {rc}, {len(got)} of {len(want)} bytes "
                           f"(identical: {got == want}):\n{err.read_text()}")
    return seconds


def one_send_receive(pair: VethPair, url: str, src: Path, work: Path, procs: Procs,
                     k: int) -> tuple[float, str, str, list[str], list[str]]:
    send_err = work / f"send{k}.err"
    send_cmd = ["send", str(src), "--signal", url, "--ice-host", pair.a.addr,
                "--from", "alice"]
    with open(send_err, "wb") as e:
        send = procs.start(pair.a.p2p(*send_cmd), stdout=subprocess.DEVNULL, stderr=e)
    code = line_matching(send_err, r"^code: (\S+)$", send)
    recv_cmd = ["receive", code, "--signal", url, "--ice-host", pair.b.addr, "--yes",
                "-o", "-"]
    recv_err = work / f"receive{k}.err"
    seconds = first_byte(pair.b.p2p(*recv_cmd), src.read_bytes(), recv_err, procs)
    if send.wait(TIMEOUT) != 0:
        raise RuntimeError(f"send exited {send.returncode}:\n{send_err.read_text()}")
    return (seconds, send_err.read_text(), recv_err.read_text(),
            ["p2p", *send_cmd], ["p2p", *recv_cmd])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="3M", help="file size: bytes, or with K or M")
    args = ap.parse_args()
    why = unavailable()
    if why:
        print(f"skipped: {why}", file=sys.stderr)
        return 0
    mult = {"K": 1024, "M": 1024 * 1024}.get(args.size[-1:].upper(), 1)
    size = int(args.size.rstrip("KkMm")) * mult
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    pair, procs = VethPair(), Procs()
    with tempfile.TemporaryDirectory(prefix="p2p-wormhole-netns-") as tmp:
        work = Path(tmp)
        src = work / "f.bin"
        src.write_bytes(os.urandom(size))
        env_note = f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        try:
            pair.start()
            url = f"http://{pair.a.addr}:{PORT}"
            with open(work / "signal.err", "wb") as e:
                procs.start(pair.a.p2p("serve-signal", "--host", pair.a.addr, "--port",
                                       str(PORT)), stdout=subprocess.DEVNULL, stderr=e)
            wait_listening(pair.b, pair.a.addr, PORT)
            with open(work / "seed.out", "wb") as o, open(work / "seed.err", "wb") as e:
                seed = procs.start(pair.a.p2p("seed", str(src), "--signal", url, "--ice-host",
                                              pair.a.addr, "--no-lan"), stdout=o, stderr=e)
            link = line_matching(work / "seed.out", r"^(p2p://\S+)$", seed)
            fetch_cmd = pair.b.p2p("fetch", link, "--ice-host", pair.b.addr, "--no-lan",
                                   "-o", "-")
            receive_s: list[float] = []
            fetch_s: list[float] = []
            transcript = None
            for k in range(args.runs):
                order = ("receive", "fetch") if k % 2 == 0 else ("fetch", "receive")
                for kind in order:
                    if kind == "fetch":
                        fetch_s.append(first_byte(fetch_cmd, src.read_bytes(),
                                                  work / f"fetch{k}.err", procs))
                    else:
                        got = one_send_receive(pair, url, src, work, procs, k)
                        receive_s.append(got[0])
                        transcript = transcript or got
            assert transcript is not None
        finally:
            procs.stop_all()
            pair.close()
        _, send_text, recv_text, send_cmd, recv_cmd = transcript
        print(f"# send/receive between two network namespaces (veth), {size} bytes, "
              f"{args.runs} rounds")
        print(f"# A {pair.a.addr}: serve-signal, send, seed; B {pair.b.addr}: receive, fetch")
        print("\n## transcript (round 1, stderr verbatim)\n")
        print(f"A$ {' '.join(send_cmd)}")
        print(send_text.rstrip())
        print(f"B$ {' '.join(recv_cmd)} > got.bin")
        print(recv_text.rstrip())
        print("(got.bin is byte-identical to f.bin in every round)")
        print("\n## start of the command to its first byte on stdout\n")
        print(f"receive CODE -o -   {spread(receive_s)}   rounds: "
              f"{', '.join(f'{x:.3f}' for x in receive_s)}")
        print(f"fetch LINK -o -     {spread(fetch_s)}   rounds: "
              f"{', '.join(f'{x:.3f}' for x in fetch_s)}")
        ratios = [r / f for r, f in zip(receive_s, fetch_s, strict=True)]
        of_medians = statistics.median(receive_s) / statistics.median(fetch_s)
        print(f"receive / fetch     {of_medians:.2f}x "
              f"(ratio of medians); the rounds' own ratios {min(ratios):.2f}-{max(ratios):.2f}x")
        print(env_note + f"; after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
