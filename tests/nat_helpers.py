"""Two homes behind two NATs and a "public" network between them, for tests.

Topology, created here and none of it in the root namespace:

    pub namespace:    bridge br0 172.31.N.1/24   (serve-signal, coturn as STUN/TURN);
                      default route to a gateway nobody is (the rest of the internet)
    router "ra":      wan0 172.31.N.2/24 (a port of br0) | lan0 192.168.1.1/24
    home "a":         eth0 192.168.1.2/24, default via 192.168.1.1
    router "rb":      wan0 172.31.N.3/24 (a port of br0) | lan0 192.168.2.1/24
    home "b":         eth0 192.168.2.2/24, default via 192.168.2.1

Each router forwards its home's traffic out of wan0 with source NAT (`MASQUERADE`: the
mapping a home router makes, the same public port for every destination, so hole punching
works), or with `--random-fully` (a new random port per destination: a symmetric NAT,
through which only a relay works). Neither router has a route to the other home's private
network, and each drops UDP that reaches its own WAN address unsolicited: otherwise a
STUN-mapped port that is not yet in conntrack belongs to the router itself and every hole
punch into it fails. So "a" and "b" meet only through the public namespace's servers, and
talk only through NAT mappings or the relay.

Every address lives only inside these namespaces; `close()` deletes them (veths with
them), and namespaces of runs whose process is gone are deleted when the next lab starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from netns import Namespaces, Node, _run, probe, reap_stale
from turn_helpers import SIGNAL_PORT, TURN_PORT

PREFIX = "p2pnat"  # namespace names: p2pnat<pid>x<tag>-<role>


@functools.cache
def unavailable() -> str | None:
    """Why these tests cannot run here (None: they can). Probed once per process."""
    return probe(PREFIX, ("ip", "iptables", "turnserver"),
                 ("-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE",
                  "--random-fully"), "iptables cannot NAT here")


@dataclass
class NatLab(Namespaces):
    """The topology above; `server`, `a`, `b`, `signal_url` and `turn_url` as TurnLab has
    them, so tests/turn_helpers.py's steps (coturn, serve-signal, seed, fetch) run here."""

    prefix: str = PREFIX
    symmetric: bool = False
    "Both routers map each destination to a new random port (`--random-fully`)."
    pub: Node | None = None
    a: Node | None = None
    b: Node | None = None
    routers: dict[str, Node] = field(default_factory=dict)
    "Each home's router, by home, with its WAN (public) address."

    @property
    def server(self) -> Node:
        assert self.pub is not None
        return self.pub

    def start(self) -> NatLab:
        reap_stale(PREFIX)
        pub = self._new_ns("pub")
        self.pub = Node(pub, f"172.31.{self.net}.1")
        _run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", pub, "addr", "add", f"{self.pub.addr}/24", "dev", "br0")
        _run("ip", "-n", pub, "link", "set", "br0", "up")
        _run("ip", "netns", "exec", pub, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        # Like a host on the internet, the public namespace has a default route, and what
        # nobody routes (a home's private address) is lost on the way: the gateway is a
        # MAC address no interface has, so the frames are dropped unseen. Without it,
        # coturn relaying ICE checks to a peer's private host candidate gets ENETUNREACH
        # and closes the whole allocation.
        gateway = f"172.31.{self.net}.254"
        _run("ip", "-n", pub, "neigh", "add", gateway, "lladdr", "02:00:00:00:00:fe",
             "dev", "br0", "nud", "permanent")
        _run("ip", "-n", pub, "route", "add", "default", "via", gateway)
        for i, role in enumerate(("a", "b"), start=1):
            self.routers[role] = self._router(role, i)
        return self

    def _router(self, role: str, i: int) -> Node:
        """Router `r<role>` between the bridge and home `role` (192.168.i.0/24)."""
        pub = self.server.ns
        router = self._new_ns(f"r{role}")
        wan = Node(router, f"172.31.{self.net}.{i + 1}")
        # Both ends of each veth are created inside their namespaces: nothing in root.
        _run("ip", "-n", pub, "link", "add", f"w{role}", "type", "veth",
             "peer", "name", "wan0", "netns", router)
        _run("ip", "-n", pub, "link", "set", f"w{role}", "master", "br0")
        _run("ip", "-n", pub, "link", "set", f"w{role}", "up")
        _run("ip", "-n", router, "addr", "add", f"{wan.addr}/24", "dev", "wan0")
        _run("ip", "-n", router, "link", "set", "wan0", "up")
        home = self._new_ns(role)
        _run("ip", "-n", router, "link", "add", "lan0", "type", "veth",
             "peer", "name", "eth0", "netns", home)
        _run("ip", "-n", router, "addr", "add", f"192.168.{i}.1/24", "dev", "lan0")
        _run("ip", "-n", router, "link", "set", "lan0", "up")
        node = Node(home, f"192.168.{i}.2")
        _run("ip", "-n", home, "addr", "add", f"{node.addr}/24", "dev", "eth0")
        _run("ip", "-n", home, "link", "set", "eth0", "up")
        _run("ip", "-n", home, "route", "add", "default", "via", f"192.168.{i}.1")
        _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nat = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"]
        _run("ip", "netns", "exec", router, "iptables", *nat,
             *(["--random-fully"] if self.symmetric else []))
        _run("ip", "netns", "exec", router, "iptables", "-A", "INPUT", "-i", "wan0",
             "-p", "udp", "-j", "DROP")
        setattr(self, role, node)
        return wan

    @property
    def signal_url(self) -> str:
        return f"http://{self.server.addr}:{SIGNAL_PORT}"

    @property
    def stun_url(self) -> str:
        return f"stun:{self.server.addr}:{TURN_PORT}"

    @property
    def turn_url(self) -> str:
        return f"turn:{self.server.addr}:{TURN_PORT}"
