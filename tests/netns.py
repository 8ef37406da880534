"""Throwaway network namespaces joined by a bridge, for network-fault tests and benchmarks.

Topology, all of it created here and none of it in the root namespace:

    hub namespace:  bridge br0 10.231.N.1/24   (the signaling server listens here)
    peer namespace: eth0 10.231.N.k/24, a veth whose other end is a port of br0

Every address lives only inside namespaces this module created, so test traffic cannot
leave the machine, and two runs at once cannot collide (each has its own bridge). Faults
are iptables rules inside one peer namespace: random UDP loss (`-m statistic`, since this
kernel has no netem) or a total UDP cut. Signaling is TCP and is left alone, so a cut peer
stays announced while its WebRTC traffic disappears, which is what a dead NAT mapping or a
pulled cable looks like to the other side.

`Lab.close()` deletes the namespaces, which takes the veths, the bridge and the rules with
them; processes still running inside keep their (now nameless) namespace until they exit,
so stop them first. Namespaces left by a run that died (its pid is gone) are removed when
the next `Lab` starts.

Pure Python on purpose (no pytest): benchmarks/faults.py uses it too.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "p2pt"  # namespace names: p2pt<pid>x<tag>-<role>
SUBNET = "10.231"  # 10.231.N.0/24, N random per lab; private to the lab's namespaces
SIGNAL_PORT = 8080
P2P = str(Path(sys.executable).parent / "p2p")


class LabError(RuntimeError):
    """A namespace or iptables command failed."""


def probe(prefix: str, tools: tuple[str, ...], rule: tuple[str, ...] | None = None,
          failing: str = "") -> str | None:
    """Why a lab cannot run here (None: it can): root, `tools` on PATH, a namespace, and
    the iptables `rule` (whose failure is said as `failing`) accepted inside it."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, iptables)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test-all installs it)"
    name = f"{prefix}{os.getpid()}probe"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip() or r.returncode}"
    try:
        if rule is not None:
            r = subprocess.run(["ip", "netns", "exec", name, "iptables", *rule],
                               capture_output=True, text=True)
            if r.returncode != 0:
                return f"{failing}: {r.stderr.strip() or r.returncode}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can). Probed once per process."""
    return probe(PREFIX, ("ip", "iptables"),
                 ("-A", "INPUT", "-p", "udp", "-m", "statistic", "--mode", "random",
                  "--probability", "0.5", "-j", "DROP"),
                 "iptables statistic match unusable in a namespace")


def _run(*args: str) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(prefix: str = PREFIX) -> None:
    """Delete namespaces `<prefix><pid>x...` of earlier runs whose process is gone (a killed
    test run). Every namespace-making helper in tests/ names its namespaces this way."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=30).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{prefix}(\d+)x\S*$", name)
        if m and not pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@dataclass
class Node:
    """One peer namespace: where to run a process and the address it owns."""

    ns: str
    "Namespace name, for `ip netns exec`."
    addr: str
    "Its eth0 address; the only address its processes should offer as an ICE candidate."

    def cmd(self, *args: str) -> list[str]:
        """A command line that runs `args` inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *args]

    def p2p(self, *args: str) -> list[str]:
        return self.cmd(P2P, *args)

    def run(self, *args: str) -> str:
        """Run a command inside this namespace and return its stdout; LabError if it fails."""
        return _run(*self.cmd(*args))


@dataclass
class Namespaces:
    """Namespaces one lab created, named `<prefix><pid>x<tag>-<role>` (see `reap_stale`),
    deleted together by `close()`."""

    prefix: str = PREFIX
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    net: int = field(default_factory=lambda: random.randrange(1, 255))
    "A random number for the lab's subnets."
    _names: list[str] = field(default_factory=list)

    def _new_ns(self, role: str) -> str:
        """A new namespace for `role`, loopback up."""
        name = f"{self.prefix}{os.getpid()}x{self.tag}-{role}"
        _run("ip", "netns", "add", name)
        self._names.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    @property
    def server(self) -> Node:
        """The namespace where the lab's servers run."""
        raise NotImplementedError

    def udp_listening(self, port: int) -> bool:
        """Whether a UDP socket is bound to `port` in the server's namespace."""
        table = _run(*self.server.cmd("cat", "/proc/net/udp"))
        return any(line.split()[1].endswith(f":{port:04X}") for line in table.splitlines()[1:])

    def close(self) -> None:
        """Delete every namespace of this lab (and with them veths, bridges and rules)."""
        for name in reversed(self._names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._names.clear()


@dataclass
class Lab:
    """A hub with a bridge and any number of peer namespaces on it."""

    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    net: int = field(default_factory=lambda: random.randrange(1, 255))
    nodes: dict[str, Node] = field(default_factory=dict)
    hub: Node | None = None
    _names: list[str] = field(default_factory=list)

    def _ns(self, role: str) -> str:
        return f"{PREFIX}{os.getpid()}x{self.tag}-{role}"

    def start(self) -> Lab:
        reap_stale()
        name = self._ns("hub")
        _run("ip", "netns", "add", name)
        self._names.append(name)
        self.hub = Node(name, f"{SUBNET}.{self.net}.1")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", name, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", name, "addr", "add", f"{self.hub.addr}/24", "dev", "br0")
        _run("ip", "-n", name, "link", "set", "br0", "up")
        return self

    def add(self, role: str) -> Node:
        """A new namespace plugged into the bridge, with the next free address."""
        assert self.hub is not None, "start() first"
        name = self._ns(role)
        _run("ip", "netns", "add", name)
        self._names.append(name)
        host = len(self.nodes) + 2
        port = f"v{len(self.nodes)}"
        # Both ends are created directly inside their namespaces: nothing appears in root.
        _run("ip", "-n", self.hub.ns, "link", "add", port, "type", "veth",
             "peer", "name", "eth0", "netns", name)
        _run("ip", "-n", self.hub.ns, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.hub.ns, "link", "set", port, "up")
        node = Node(name, f"{SUBNET}.{self.net}.{host}")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", name, "addr", "add", f"{node.addr}/24", "dev", "eth0")
        _run("ip", "-n", name, "link", "set", "eth0", "up")
        self.nodes[role] = node
        return node

    @property
    def signal_url(self) -> str:
        assert self.hub is not None
        return f"http://{self.hub.addr}:{SIGNAL_PORT}"

    def signal_cmd(self) -> list[str]:
        """`p2p serve-signal` in the hub, reachable from every peer namespace."""
        assert self.hub is not None
        return self.hub.p2p("serve-signal", "--host", self.hub.addr,
                            "--port", str(SIGNAL_PORT), "--json")

    def seed_cmd(self, node: Node, src: Path | str, *extra: str) -> list[str]:
        """`p2p seed` in `node`, announced on the hub's server, offering only its address."""
        return node.p2p("seed", str(src), "--ice-host", node.addr, "--signal", self.signal_url,
                        "--json", *extra)

    def fetch_cmd(self, node: Node, link: str, *extra: str) -> list[str]:
        """`p2p fetch` in `node` (the link names the hub's server)."""
        return node.p2p("fetch", link, "--ice-host", node.addr, "--json", *extra)

    # -- faults ----------------------------------------------------------------------------

    def _iptables(self, node: Node, *rule: str) -> None:
        _run("ip", "netns", "exec", node.ns, "iptables", *rule)

    def loss(self, node: Node, probability: float,
             chains: tuple[str, ...] = ("INPUT", "OUTPUT")) -> None:
        """Drop this share of UDP datagrams entering and leaving `node`, at random.

        A datagram between two namespaces crosses one of the two chains of `node` once, so
        each is lost with `probability`. (On one namespace's loopback it would cross both:
        give `chains=("OUTPUT",)` there for the same loss.)
        """
        for chain in chains:
            self._iptables(node, "-A", chain, "-p", "udp", "-m", "statistic", "--mode",
                           "random", "--probability", f"{probability:g}", "-j", "DROP")

    def cut(self, node: Node) -> None:
        """Drop every UDP datagram to and from `node`: its WebRTC links go silent."""
        for chain in ("INPUT", "OUTPUT"):
            self._iptables(node, "-I", chain, "1", "-p", "udp", "-j", "DROP")

    def heal(self, node: Node) -> None:
        """Remove every rule set on `node`."""
        for chain in ("INPUT", "OUTPUT"):
            self._iptables(node, "-F", chain)

    def drops(self, node: Node) -> int:
        """Datagrams the rules on `node` dropped so far (both directions)."""
        out = _run("ip", "netns", "exec", node.ns, "iptables", "-L", "-v", "-x", "-n")
        total = 0
        for line in out.splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "DROP" and parts[0].isdigit():
                total += int(parts[0])
        return total

    def close(self) -> None:
        """Delete every namespace of this lab (and with them veths, bridge and rules)."""
        for name in reversed(self._names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._names.clear()
        self.nodes.clear()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
