"""Two networks with no route between them and a TURN server both can reach, for tests.

Topology, created here and none of it in the root namespace:

    relay namespace:  ha 10.232.N.1/24 ---- eth0 10.232.N.2/24  namespace "a"
                      hb 10.233.N.1/24 ---- eth0 10.233.N.2/24  namespace "b"
                      (coturn and the signaling server listen on 10.232.N.1)

Each peer namespace has one default route, to the relay namespace. The relay namespace
does not forward (ip_forward=0), so "a" and "b" reach the relay's own addresses and never
each other: WebRTC between them only works through the TURN server. `routed(True)` turns
forwarding on, and then the two have a direct path. N is random per lab; every address
lives only inside these namespaces, and `close()` deletes them (veths with them).
Namespaces of runs whose process is gone are deleted when the next lab starts.

Also here: coturn's configuration (the same file README's "Across the internet" shows)
and starting it as a test's own process, never as a system service; and the steps the
TURN and NAT tests share (tests/nat_helpers.py's lab has the same `server`, `a` and `b`).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Proc, Procs

from netns import Namespaces, Node, _run, probe, reap_stale

PREFIX = "p2pturn"  # namespace names: p2pturn<pid>x<tag>-<role>
TURN_PORT = 3478
SIGNAL_PORT = 8080
REALM = "p2p.test"
SECRET = "correct horse battery staple"  # coturn's and serve-signal's, in the labs


@functools.cache
def unavailable() -> str | None:
    """Why these tests cannot run here (None: they can). Probed once per process."""
    return probe(PREFIX, ("ip", "turnserver"))


@dataclass
class TurnLab(Namespaces):
    prefix: str = PREFIX
    relay: Node | None = None
    a: Node | None = None
    b: Node | None = None

    @property
    def server(self) -> Node:
        assert self.relay is not None
        return self.relay

    def start(self) -> TurnLab:
        reap_stale(PREFIX)
        relay = self._new_ns("relay")
        self.relay = Node(relay, f"10.232.{self.net}.1")
        _run("ip", "netns", "exec", relay, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        for role, subnet, port in (("a", 232, "ha"), ("b", 233, "hb")):
            name = self._new_ns(role)
            # Both ends are created inside their namespaces: nothing appears in root.
            _run("ip", "-n", relay, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", name)
            _run("ip", "-n", relay, "addr", "add", f"10.{subnet}.{self.net}.1/24", "dev", port)
            _run("ip", "-n", relay, "link", "set", port, "up")
            node = Node(name, f"10.{subnet}.{self.net}.2")
            _run("ip", "-n", name, "addr", "add", f"{node.addr}/24", "dev", "eth0")
            _run("ip", "-n", name, "link", "set", "eth0", "up")
            _run("ip", "-n", name, "route", "add", "default", "via", f"10.{subnet}.{self.net}.1")
            setattr(self, role, node)
        return self

    def routed(self, on: bool) -> None:
        """Give "a" and "b" a direct path to each other (through the relay namespace's
        kernel, not through TURN), or take it away."""
        _run(*self.server.cmd("sysctl", "-qw", f"net.ipv4.ip_forward={int(on)}"))

    @property
    def signal_url(self) -> str:
        return f"http://{self.server.addr}:{SIGNAL_PORT}"

    @property
    def turn_url(self) -> str:
        return f"turn:{self.server.addr}:{TURN_PORT}"


def coturn_config(listen_ip: str, secret: str, *, port: int = TURN_PORT,
                  realm: str = REALM, workdir: Path | None = None) -> str:
    """A coturn configuration for `serve-signal --turn-secret SECRET` (README shows it)."""
    lines = [
        f"listening-ip={listen_ip}",
        f"relay-ip={listen_ip}",
        f"listening-port={port}",
        f"realm={realm}",
        # TURN REST API: credentials are HMAC-SHA1(secret, "<expiry>:<peer id>"), made
        # by the signaling server for each client; coturn checks them with the secret.
        "use-auth-secret",
        f"static-auth-secret={secret}",
        "min-port=49152",
        "max-port=65535",
        "fingerprint",
        "no-cli",
        "no-tls",
        "no-dtls",
        "no-multicast-peers",
        "log-file=stdout",
        "simple-log",
    ]
    if workdir is not None:
        # Keep coturn's own files in the test's directory, not in /var.
        lines += [f"pidfile={workdir / 'turnserver.pid'}", f"userdb={workdir / 'turndb'}"]
    return "\n".join(lines) + "\n"


# -- steps the TURN and NAT tests share: coturn and serve-signal on the lab's server,
# a seeder in "a", a fetcher in "b" ----------------------------------------------------------


def start_coturn(procs: Procs, lab: TurnLab, tmp_path: Path, secret: str = SECRET) -> Proc:
    """coturn on the lab's server namespace, as a process of the test."""
    conf = tmp_path / "turnserver.conf"
    conf.write_text(coturn_config(lab.server.addr, secret, workdir=tmp_path))
    turn = procs.start(lab.server.cmd("turnserver", "-c", str(conf)), "turnserver")
    deadline = time.monotonic() + 20
    while not lab.udp_listening(TURN_PORT):
        assert turn.p.poll() is None, f"turnserver exited:\n{turn.stdout[-3000:]}"
        assert time.monotonic() < deadline, f"turnserver never listened:\n{turn.stdout[-3000:]}"
        time.sleep(0.05)
    return turn


def start_signal(procs: Procs, lab: TurnLab, *ice: str) -> Proc:
    """serve-signal on the lab's server namespace, where both peers reach it."""
    # No token in these labs: the TURN server is theirs alone, so an open relay is meant.
    sig = procs.start(lab.server.p2p("serve-signal", "--host", lab.server.addr, "--port",
                                     str(SIGNAL_PORT), "--json", "--open-relay", *ice),
                      "signal")
    sig.wait_for(lambda p: any(e["event"] == "listening" for e in p.events()), 30, "listening")
    return sig


def seed_in(procs: Procs, lab: TurnLab, src: Path) -> tuple[Proc, str]:
    """`p2p seed` in "a", with no ICE option: servers come from the signaling server."""
    assert lab.a is not None
    p = procs.start(lab.a.p2p("seed", str(src), "--signal", lab.signal_url, "--json"), "seed")
    link = p.wait_for(lambda p: p.stdout.strip(), 60, "the link")
    # The seeder must have its ice-config (and checked the servers) before peers arrive.
    p.wait_for(lambda p: any(e["event"] == "ice-config" for e in p.events()), 30, "ice-config")
    return p, link


def fetch_in(procs: Procs, lab: TurnLab, link: str, *extra: str) -> Proc:
    assert lab.b is not None
    return procs.start(lab.b.p2p("fetch", link, "-o", "out.bin", "--json", *extra), "fetch")


def event(proc: Proc, name: str) -> dict:
    """The last `name` event `proc` printed (its stderr in the failure if none)."""
    found = [e for e in proc.events() if e["event"] == name]
    assert found, f"no {name} event:\n{proc.stderr[-3000:]}"
    return found[-1]


def reaches(src: Node, addr: str) -> bool:
    """Whether namespace `src` reaches `addr` (TCP port 9: a refusal means it arrived)."""
    code = (f"import socket; s=socket.socket(); s.settimeout(1)\n"
            f"try: s.connect(('{addr}', 9))\n"
            f"except ConnectionRefusedError: print('reached')\n"
            f"except OSError: print('no path')\n")
    r = subprocess.run(src.cmd(sys.executable, "-c", code), capture_output=True, text=True,
                       timeout=30)
    assert r.stdout.strip() in ("no path", "reached"), r.stderr
    return r.stdout.strip() == "reached"
