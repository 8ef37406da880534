"""Raw-stack ceiling: one aiortc data channel between two processes on loopback, nothing else.

Every p2p benchmark compares its figures against this one, measured in the same run, so
that "p2p moves X MB/s" can be read as "X% of what aiortc itself manages on this machine".

What it does: two separate OS processes (multiprocessing, spawn context), a sender and a
receiver, each with one `RTCPeerConnection` (no STUN/TURN, host candidate 127.0.0.1 only)
and one reliable, ordered data channel. The offer/answer travels over a multiprocessing
pipe between the two processes (aiortc gathers every candidate before the SDP is ready, so
one round trip suffices). The sender sends `size` bytes in `msg_size` messages with
back-pressure (`bufferedAmount` above HIGH_WATER: wait for `bufferedamountlow` at
LOW_WATER); the receiver counts bytes and, once it has them all, sends the text "ack"; the
sender closes on the ack (closing earlier would drop what aiortc still has queued).

Measured:
  setup_s          sender's RTCPeerConnection creation -> channel open on the sender (both
                   processes already started and imported; process start-up not included)
  transfer_s       sender: just before the first send() -> the receiver's ack arrives
  mb_per_s         size / transfer_s / 1e6
  per side:        cpu_s (user+sys of that process over its transfer phase: the sender from
                   first send to ack, the receiver from first message to sending the ack),
                   cpu_s_per_gib, cpu_whole_s (whole process life, start-up included),
                   peak_rss_bytes (ru_maxrss of that process)

Use as a library (the import works both ways; benchmarks/ is a package):

    from benchmarks.bare_channel import run       # repo root on sys.path
    from bare_channel import run                  # benchmarks/ on sys.path
    result = run(256 * 2**20, msg_size=65536, use_uvloop=None)   # -> dict, see run()

`run()` starts two processes and always stops them (join, then terminate, then kill); the
whole run is bounded by `timeout` (300 s by default; plus at most ~10 s to stop the
processes) and raises `BenchmarkError` past it or
when a side fails. It is synchronous and blocks until done (from async code use
`asyncio.to_thread(run, ...)`). The children are started with the spawn method, which
re-imports the caller's main module: keep an `if __name__ == "__main__":` guard there.

Use from the command line:

    python benchmarks/bare_channel.py --size 256M --msg-size 64K [--no-uvloop] [--json]
    python benchmarks/bare_channel.py --profile /tmp/prof    # CPU samples, transfer phase
    python benchmarks/bare_channel.py --cprofile /tmp/prof   # cProfile: exact call counts
  (py-spy samples wall time: on a busy 2-core machine it charges run-queue waits to
  whatever was running, mostly sendto, which wakes the peer; hence --profile.)

Needs aiortc; uvloop is optional; psutil is not used (resource.getrusage is). The p2pcli
package (for `p2pcli.patches.choose_host_addresses`) must be importable: it is when the project
is installed, and the repo root is put on sys.path otherwise. Linux/macOS (resource,
SIGPROF); the UDP drop counter is Linux-only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import sys
import time
import traceback
from typing import Any

HIGH_WATER = 1024 * 1024  # pause sending while more than this is queued in aiortc
LOW_WATER = 256 * 1024  # bufferedAmountLowThreshold: resume when it drains to this
MAX_MESSAGE = 256 * 1024  # aiortc's advertised max-message-size
DEFAULT_SIZE = 256 * 2**20
DEFAULT_MSG_SIZE = 64 * 1024
DEFAULT_TIMEOUT = 300.0
SETUP_TIMEOUT = 30.0  # offer/answer, ICE, DTLS, SCTP: seconds on loopback, normally < 1
STALL_TIMEOUT = 30.0  # no progress at all for this long: give up
CLOSE_TIMEOUT = 10.0  # receiver waits this long for the sender's close after its ack
ACK = "ack"
GIB = 2**30


class BenchmarkError(RuntimeError):
    """A side failed, died, or the run went past its time limit."""


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(
    size: int,
    msg_size: int = DEFAULT_MSG_SIZE,
    use_uvloop: bool | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    profile_dir: str | None = None,
    cprofile_dir: str | None = None,
) -> dict[str, Any]:
    """Send `size` bytes over one aiortc data channel between two fresh processes.

    use_uvloop: None = use uvloop if importable. profile_dir: write `sender.folded` /
    `receiver.folded`, CPU-time samples of the transfer phase (see CpuSampler; a few %
    overhead). cprofile_dir: write `sender.prof` / `receiver.prof`, cProfile of the
    transfer phase (exact call counts; wall-clock times; ~2.5x slower).

    Returns a dict: size, msg_size, uvloop, setup_s, transfer_s, mb_per_s,
    cpu_scope ("transfer"), loadavg_1m ([before, after]), cpus, udp_rcvbuf_errors
    (system-wide drops during the run, or None), python, aiortc,
    and "sender"/"receiver" dicts with cpu_s, cpu_user_s, cpu_sys_s, cpu_s_per_gib,
    cpu_whole_s, peak_rss_bytes, pid. Times in seconds, MB = 10^6 bytes, GiB = 2^30.
    """
    if size <= 0:
        raise ValueError("size must be positive")
    if not 0 < msg_size <= MAX_MESSAGE:
        raise ValueError(f"msg_size must be in 1..{MAX_MESSAGE} (aiortc's max-message-size)")
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    elif use_uvloop and not uvloop_available():
        raise BenchmarkError("uvloop requested but not importable")

    cfg = {
        "size": size,
        "msg_size": msg_size,
        "uvloop": bool(use_uvloop),
        # Each side gives up a little before the parent does, so it can still report why.
        "deadline_s": max(1.0, timeout - 5.0),
        "profile_dir": profile_dir,
        "cprofile_dir": cprofile_dir,
    }
    ctx = multiprocessing.get_context("spawn")
    peer_s, peer_r = ctx.Pipe()  # SDP + readiness between the two children
    res = {role: ctx.Pipe(duplex=False) for role in ("sender", "receiver")}
    procs = {
        role: ctx.Process(
            target=_child_main,
            args=(role, peer_s if role == "sender" else peer_r, res[role][1], cfg),
            name=f"bare-{role}",
            daemon=True,
        )
        for role in ("sender", "receiver")
    }
    results: dict[str, dict] = {}
    errors: list[str] = []
    load_before = os.getloadavg()[0]
    drops_before = udp_rcvbuf_errors()
    deadline = time.monotonic() + timeout
    try:
        for p in procs.values():
            p.start()
        # Drop the parent's copies so a dead child shows up as EOF on its result pipe.
        for conn in (peer_s, peer_r, res["sender"][1], res["receiver"][1]):
            conn.close()
        waiting = {res[role][0]: role for role in procs}
        while waiting and not errors:
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append(
                    f"timed out after {timeout:.0f} s waiting for {sorted(waiting.values())}"
                )
                break
            for conn in multiprocessing.connection.wait(list(waiting), timeout=left):
                role = waiting.pop(conn)
                try:
                    status, payload = conn.recv()
                except EOFError:
                    procs[role].join(1.0)  # to learn its exit code
                    errors.append(
                        f"{role} exited without a result (exit code {procs[role].exitcode})"
                    )
                    continue
                if status == "ok":
                    results[role] = payload
                else:
                    errors.append(f"{role} failed:\n{payload}")
    finally:
        # After a failure the other side may be waiting for its own deadline: don't wait.
        _stop_all(procs.values(), grace=5.0 if not errors else 0.5)
        for role in res:
            res[role][0].close()
    if errors:
        raise BenchmarkError("; ".join(errors))

    s, r = results["sender"], results["receiver"]
    if r["bytes"] != size:
        raise BenchmarkError(f"receiver counted {r['bytes']} bytes, expected {size}")
    out = {
        "size": size,
        "msg_size": msg_size,
        "uvloop": bool(use_uvloop),
        "setup_s": s["setup_s"],
        "transfer_s": s["transfer_s"],
        "mb_per_s": size / s["transfer_s"] / 1e6,
        "cpu_scope": "transfer",
        # Other work on the machine skews every figure: 1-minute load average before/after
        # (this run's own two processes add up to ~2 to the "after" figure).
        "loadavg_1m": [load_before, os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        # Datagrams the kernel dropped because a UDP receive buffer was full (SCTP then
        # retransmits). System-wide counter, so other UDP traffic counts too; None if
        # unknown (not Linux).
        "udp_rcvbuf_errors": _delta(drops_before, udp_rcvbuf_errors()),
        "python": platform.python_version(),
        "aiortc": s["aiortc"],
    }
    for role, d in (("sender", s), ("receiver", r)):
        out[role] = {
            "cpu_s": d["cpu_s"],
            "cpu_user_s": d["cpu_user_s"],
            "cpu_sys_s": d["cpu_sys_s"],
            "cpu_s_per_gib": d["cpu_s"] / (size / GIB),
            "cpu_whole_s": d["cpu_whole_s"],
            "peak_rss_bytes": d["peak_rss_bytes"],
            "pid": d["pid"],
        }
    return out


def udp_rcvbuf_errors() -> int | None:
    """Linux's system-wide count of UDP datagrams dropped for a full receive buffer."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


def _stop_all(procs, grace: float) -> None:
    """Join each started process; terminate, then kill, whatever is still alive."""
    procs = list(procs)
    end = time.monotonic() + grace
    for p in procs:
        if p.pid is not None:
            p.join(timeout=max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=3)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=3)


# -- child processes -----------------------------------------------------------------------


def _child_main(role: str, peer, result, cfg: dict) -> None:
    """Entry point of each spawned process: run its side, report ("ok", dict) or ("error", tb)."""
    try:
        if cfg["uvloop"]:
            import uvloop

            loop_factory = uvloop.new_event_loop
        else:
            loop_factory = None
        side = _sender if role == "sender" else _receiver
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            data = runner.run(asyncio.wait_for(side(peer, cfg), cfg["deadline_s"]))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        data["cpu_whole_s"] = ru.ru_utime + ru.ru_stime
        data["peak_rss_bytes"] = ru.ru_maxrss * 1024  # KiB on Linux
        data["pid"] = os.getpid()
        result.send(("ok", data))
    except TimeoutError:
        with contextlib.suppress(OSError):
            result.send(("error", f"timed out (its deadline: {cfg['deadline_s']:.0f} s)"))
    except BaseException:
        with contextlib.suppress(OSError):
            result.send(("error", traceback.format_exc()))
    finally:
        result.close()
        peer.close()


def _imports():
    try:
        from p2pcli.patches import choose_host_addresses
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from p2pcli.patches import choose_host_addresses
    import aiortc
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    choose_host_addresses(["127.0.0.1"])  # and stock aiortc: this is the stock ceiling
    return aiortc, RTCConfiguration, RTCPeerConnection, RTCSessionDescription


async def _pipe_recv(conn, timeout: float):
    """Receive one object from a multiprocessing pipe without blocking the event loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(fd)
    return conn.recv()  # small object, already readable


def _cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _cpu_fields(start: tuple[float, float], end: tuple[float, float]) -> dict[str, float]:
    user, sys_ = end[0] - start[0], end[1] - start[1]
    return {"cpu_s": user + sys_, "cpu_user_s": user, "cpu_sys_s": sys_}


def _short_path(path: str) -> str:
    """'.../site-packages/aiortc/x.py' -> 'aiortc/x.py'; '.../lib/python3.11/a/b.py' -> 'a/b.py'."""
    path = path.replace(os.sep, "/")
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    if "/lib/python3" in path:
        return path.rsplit("/lib/python3", 1)[1].split("/", 1)[-1]
    return "/".join(path.rsplit("/", 2)[-2:])


class CpuSampler:
    """Statistical CPU profiler of this process: a SIGPROF every `interval` s of CPU time.

    Unlike a wall-clock sampler (py-spy) it never counts time spent waiting for a core or
    idling in the event loop, which matters when two busy processes share two cores. Each
    sample is the Python stack at the next bytecode boundary, so time in C (OpenSSL,
    sendto/recvfrom syscalls) is charged to the Python function that called it, and time
    in uvloop's C core between callbacks to the callback that runs next. Main thread only.
    """

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._names: dict[Any, str] = {}

    def _handler(self, _signum, frame) -> None:
        names, parts = self._names, []
        while frame is not None:
            code = frame.f_code
            name = names.get(code)
            if name is None:
                name = names[code] = f"{code.co_qualname} ({_short_path(code.co_filename)})"
            parts.append(name)
            frame = frame.f_back
        key = ";".join(reversed(parts))
        self.counts[key] = self.counts.get(key, 0) + 1

    def start(self) -> None:
        import signal

        signal.signal(signal.SIGPROF, self._handler)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def write_folded(self, path: str) -> None:
        """Collapsed stacks ("a;b;c COUNT" lines), as flamegraph.pl / speedscope read them."""
        with open(path, "w") as f:
            for stack, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
                f.write(f"{stack} {n}\n")


def top_self(folded_path: str, n: int = 15) -> list[tuple[float, str]]:
    """(percent of samples, function) by self time, from a collapsed-stack file."""
    counts: dict[str, int] = {}
    total = 0
    with open(folded_path) as f:
        for line in f:
            stack, _, num = line.rstrip("\n").rpartition(" ")
            leaf = stack.rsplit(";", 1)[-1]
            counts[leaf] = counts.get(leaf, 0) + int(num)
            total += int(num)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(100.0 * c / max(total, 1), name) for name, c in ranked]


class _Profiling:
    """The optional profilers of one side's transfer phase (--profile, --cprofile)."""

    def __init__(self, cfg: dict, role: str) -> None:
        self.cfg, self.role = cfg, role
        self.sampler: CpuSampler | None = None
        self.cprof = None

    def start(self) -> None:
        if self.cfg["cprofile_dir"]:
            import cProfile

            # Default (wall) clock: a CPU-time timer costs a syscall per call here and
            # would dominate. Time spent preempted lands on whatever call was running.
            self.cprof = cProfile.Profile()
            self.cprof.enable()
        if self.cfg["profile_dir"]:
            self.sampler = CpuSampler()
            self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            os.makedirs(self.cfg["profile_dir"], exist_ok=True)
            self.sampler.write_folded(os.path.join(self.cfg["profile_dir"], f"{self.role}.folded"))
            self.sampler = None
        if self.cprof is not None:
            self.cprof.disable()
            os.makedirs(self.cfg["cprofile_dir"], exist_ok=True)
            self.cprof.dump_stats(os.path.join(self.cfg["cprofile_dir"], f"{self.role}.prof"))
            self.cprof = None


async def _sender(peer, cfg: dict) -> dict:
    aiortc, RTCConfiguration, RTCPeerConnection, RTCSessionDescription = _imports()
    size, msg_size = cfg["size"], cfg["msg_size"]
    payload = os.urandom(msg_size)
    if await _pipe_recv(peer, SETUP_TIMEOUT) != "ready":  # receiver imported and running
        raise BenchmarkError("unexpected message from receiver")

    t0 = time.perf_counter()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        channel = pc.createDataChannel("bench", ordered=True)
        opened, low, acked = asyncio.Event(), asyncio.Event(), asyncio.Event()
        channel.on("open", opened.set)
        channel.bufferedAmountLowThreshold = LOW_WATER
        channel.on("bufferedamountlow", low.set)
        t_ack: list[float] = []

        @channel.on("message")
        def _on_message(message) -> None:
            if message == ACK and not acked.is_set():
                t_ack.append(time.perf_counter())
                acked.set()

        await pc.setLocalDescription(await pc.createOffer())
        peer.send({"type": pc.localDescription.type, "sdp": pc.localDescription.sdp})
        answer = await _pipe_recv(peer, SETUP_TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        await asyncio.wait_for(opened.wait(), SETUP_TIMEOUT)
        setup_s = time.perf_counter() - t0

        prof = _Profiling(cfg, "sender")
        cpu0 = _cpu()
        prof.start()
        t_first = time.perf_counter()
        sent = 0
        while sent < size:
            n = min(msg_size, size - sent)
            channel.send(payload if n == msg_size else payload[:n])
            sent += n
            if channel.bufferedAmount > HIGH_WATER:
                low.clear()  # nothing can set it before we await: no race
                await asyncio.wait_for(low.wait(), STALL_TIMEOUT)
        await asyncio.wait_for(acked.wait(), STALL_TIMEOUT)
        cpu1 = _cpu()
        prof.stop()
        return {
            "setup_s": setup_s,
            "transfer_s": t_ack[0] - t_first,
            "bytes": sent,
            "aiortc": aiortc.__version__,
            **_cpu_fields(cpu0, cpu1),
        }
    finally:
        await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)


async def _receiver(peer, cfg: dict) -> dict:
    _aiortc, RTCConfiguration, RTCPeerConnection, RTCSessionDescription = _imports()
    size = cfg["size"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done, closed = asyncio.Event(), asyncio.Event()
    prof = _Profiling(cfg, "receiver")
    state: dict[str, Any] = {"bytes": 0, "cpu0": None, "cpu1": None}

    @pc.on("datachannel")
    def _on_channel(channel) -> None:
        channel.on("close", closed.set)

        @channel.on("message")
        def _on_message(message) -> None:
            if state["cpu0"] is None:
                state["cpu0"] = _cpu()
                prof.start()
            state["bytes"] += len(message)
            if state["bytes"] >= size and not done.is_set():
                channel.send(ACK)
                state["cpu1"] = _cpu()
                prof.stop()
                done.set()

    @pc.on("connectionstatechange")
    def _on_state() -> None:
        if pc.connectionState in ("closed", "failed"):
            closed.set()

    try:
        peer.send("ready")
        offer = await _pipe_recv(peer, SETUP_TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(**offer))
        await pc.setLocalDescription(await pc.createAnswer())
        peer.send({"type": pc.localDescription.type, "sdp": pc.localDescription.sdp})
        # The transfer itself is bounded by the caller's overall deadline.
        await done.wait()
        # Keep the connection up until the sender has our ack and closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), CLOSE_TIMEOUT)
        return {"bytes": state["bytes"], **_cpu_fields(state["cpu0"], state["cpu1"])}
    finally:
        await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)


# -- command line --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'256M' -> 256 MiB; K/M/G are binary (KiB/MiB/GiB); a bare number is bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 1G, 65536)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return int(value * mult)


def _human(n: int) -> str:
    for unit, mult in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= mult:
            return f"{n / mult:g} {unit}"
    return f"{n} B"


def format_result(r: dict) -> str:
    lines = [
        f"bare aiortc data channel: {_human(r['size'])} in {_human(r['msg_size'])} "
        f"messages, uvloop={'on' if r['uvloop'] else 'off'} "
        f"(python {r['python']}, aiortc {r['aiortc']})",
        f"  load avg   {r['loadavg_1m'][0]:.2f} before, {r['loadavg_1m'][1]:.2f} after "
        f"on {r['cpus']} CPUs (other work on the machine skews all figures)",
        f"  UDP drops  {r['udp_rcvbuf_errors']} datagrams (full receive buffer, system-wide)",
        f"  setup      {r['setup_s'] * 1000:8.1f} ms",
        f"  transfer   {r['transfer_s']:8.2f} s   {r['mb_per_s']:.2f} MB/s",
        "  side        cpu s (user+sys)   cpu s/GiB   peak RSS   whole-process cpu s",
    ]
    for role in ("sender", "receiver"):
        d = r[role]
        lines.append(
            f"  {role:9s} {d['cpu_s']:7.2f} ({d['cpu_user_s']:.2f}+{d['cpu_sys_s']:.2f})"
            f"   {d['cpu_s_per_gib']:9.2f}   {d['peak_rss_bytes'] / 2**20:6.1f} MiB"
            f"   {d['cpu_whole_s']:7.2f}"
        )
    lines.append("  (cpu s: transfer phase only; whole-process includes start-up and setup)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="bytes (K/M/G)")
    ap.add_argument("--msg-size", type=parse_size, default=DEFAULT_MSG_SIZE, help="(K/M)")
    ap.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: use uvloop if importable",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds, total")
    ap.add_argument(
        "--profile", metavar="DIR", help="CPU-sample both sides: DIR/{sender,receiver}.folded"
    )
    ap.add_argument("--cprofile", metavar="DIR", help="cProfile both sides: DIR/*.prof")
    args = ap.parse_args(argv)
    try:
        result = run(
            args.size,
            args.msg_size,
            args.uvloop,
            timeout=args.timeout,
            profile_dir=args.profile,
            cprofile_dir=args.cprofile,
        )
    except (BenchmarkError, ValueError) as e:
        print(f"bare_channel: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_result(result))
    if args.profile:
        for role in ("sender", "receiver"):
            print(f"  {role}: top self CPU time (of transfer-phase samples)")
            for pct, name in top_self(os.path.join(args.profile, f"{role}.folded")):
                print(f"    {pct:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
