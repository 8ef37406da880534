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
and starting it as a test's own process, never as a system service.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from netns import _run, reap_stale

PREFIX = "p2pturn"  # namespace names: p2pturn<pid>x<tag>-<role>
P2P = str(Path(sys.executable).parent / "p2p")
TURN_PORT = 3478
SIGNAL_PORT = 8080
REALM = "p2p.test"


@functools.cache
def unavailable() -> str | None:
    """Why these tests cannot run here (None: they can). Probed once per process."""
    if os.geteuid() != 0:
        return "TURN namespace tests need root (ip netns add)"
    if shutil.which("ip") is None:
        return "ip is not installed (scripts/test-all installs iproute2)"
    if shutil.which("turnserver") is None:
        return "turnserver is not installed (scripts/test-all installs Debian's coturn)"
    probe = f"{PREFIX}{os.getpid()}probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip() or r.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Node:
    ns: str
    "Namespace name, for `ip netns exec`."
    addr: str
    "Its address on the link to the relay namespace."

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def p2p(self, *args: str) -> list[str]:
        return self.cmd(P2P, *args)


@dataclass
class TurnLab:
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    net: int = field(default_factory=lambda: random.randrange(1, 255))
    relay: Node | None = None
    a: Node | None = None
    b: Node | None = None
    _names: list[str] = field(default_factory=list)

    def _ns(self, role: str) -> str:
        name = f"{PREFIX}{os.getpid()}x{self.tag}-{role}"
        _run("ip", "netns", "add", name)
        self._names.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def start(self) -> TurnLab:
        reap_stale(PREFIX)
        relay = self._ns("relay")
        self.relay = Node(relay, f"10.232.{self.net}.1")
        _run("ip", "netns", "exec", relay, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        for role, subnet, port in (("a", 232, "ha"), ("b", 233, "hb")):
            name = self._ns(role)
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
        assert self.relay is not None
        _run(*self.relay.cmd("sysctl", "-qw", f"net.ipv4.ip_forward={int(on)}"))

    @property
    def signal_url(self) -> str:
        assert self.relay is not None
        return f"http://{self.relay.addr}:{SIGNAL_PORT}"

    @property
    def turn_url(self) -> str:
        assert self.relay is not None
        return f"turn:{self.relay.addr}:{TURN_PORT}"

    def udp_listening(self, port: int) -> bool:
        """Whether a UDP socket is bound to `port` in the relay namespace."""
        assert self.relay is not None
        table = _run(*self.relay.cmd("cat", "/proc/net/udp"))
        return any(line.split()[1].endswith(f":{port:04X}") for line in table.splitlines()[1:])

    def close(self) -> None:
        for name in reversed(self._names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._names.clear()


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
