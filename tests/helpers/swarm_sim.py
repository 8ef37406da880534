"""An in-memory network of `SwarmCore`s with a fake clock, for unit tests of the swarm.

It carries out each core's actions the way `p2pcli/swarm/node.py` does, with no sockets,
threads or asyncio: `Connect` becomes an offer at the other end, which answers (or hears
"busy") and then both channels open; `Send` and `Close` travel over a `Link` after
`latency` seconds, in order; `Upload` serves one queued request every `serve_delay` seconds
from the endpoint's bytes; `Verify` checks the piece with the manifest a `latency` later (a
thread in node.py); `OpenStore` builds a `Picker` as `download.py` does. Time moves only in
`Net.run`, from one scheduled delivery or core timer to the next, so every run of a test is
the same run.

Besides full nodes (`Node`: a core and its store), a test can put hand-driven peers on the
network (`Raw`): they send the wire messages a test writes and keep what they receive, to
check a core's answer to each hostile case precisely.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2pcli import events as ev
from p2pcli import wire
from p2pcli.manifest import Manifest, piece_count_for
from p2pcli.picker import Picker
from p2pcli.swarm import actions as act
from p2pcli.swarm import pex
from p2pcli.swarm.core import SwarmCore

START = 1000.0  # the fake clock's first reading (any value; not 0, to catch "0 is unset")


def make_manifest(data: bytes, piece_size: int = 16 * 1024, name: str = "file.bin") -> Manifest:
    """The manifest of `data` as `p2p seed` would build it (pieces hashed in memory)."""
    hashes = [hashlib.sha256(data[i : i + piece_size]).digest()
              for i in range(0, len(data), piece_size)]
    assert len(hashes) == piece_count_for(len(data), piece_size)
    return Manifest.create(name, len(data), piece_size, hashes)


def piece_of(m: Manifest, data: bytes, i: int) -> bytes:
    return data[m.piece_offset(i) : m.piece_offset(i) + m.piece_length(i)]


@dataclass(eq=False)
class Link:
    """One connection between two endpoints; each end closes separately (as a channel does)."""

    a: str
    "The offerer."
    b: str
    open: bool = False
    protocol: str = wire.CHANNEL_PROTOCOL
    "The offerer's channel protocol string (its extensions)."
    keys: dict[str, str] = field(default_factory=dict)
    "What each end calls the other, when not its name (a 'px:' id: met by peer exchange)."

    def other(self, name: str) -> str:
        return self.b if name == self.a else self.a

    def key_at(self, name: str) -> str:
        """The id endpoint `name` knows the other end by."""
        return self.keys.get(name, self.other(name))


class Endpoint:
    """Something on the network with a signaling name and a remote address."""

    def __init__(self, net: Net, name: str, address: str) -> None:
        self.net = net
        self.name = name
        self.address = address
        self.links: dict[str, Link] = {}
        "Our current link to each peer (what node.py keeps in `Swarm.links`)."

    def transmit(self, peer: str, data: bytes) -> None:
        """Put `data` on our open link to `peer` (dropped if there is none)."""
        link = self.links.get(peer)
        if link is not None and link.open:
            self.net.later(lambda: self.net._deliver(link, self.name, data))

    # What the network tells an endpoint (overridden).
    def offered(self, src: str, link: Link) -> bool:
        raise NotImplementedError

    def opened(self, peer: str, link: Link) -> None: ...

    def received(self, peer: str, data: bytes) -> None: ...

    def closed(self, peer: str, link: Link) -> None: ...

    def busy(self, peer: str) -> None: ...


class Node(Endpoint):
    """A `SwarmCore` and its store: a seeder (`data` given) or a downloader."""

    def __init__(self, net: Net, name: str, address: str, content_hash: bytes, *,
                 data: bytes | None, manifest: Manifest | None, peer_id: bytes,
                 max_peers: int, max_peers_per_address: int | None,
                 picker: Callable[[Manifest], Picker] | None,
                 extensions: frozenset[str] = wire.SUPPORTED_EXTENSIONS) -> None:
        super().__init__(net, name, address)
        self.core = SwarmCore(content_hash, peer_id, now=net.now, manifest=manifest,
                              max_peers=max_peers, max_peers_per_address=max_peers_per_address)
        self.core.pex.extensions = extensions  # empty: a peer from before extensions
        self.pieces: dict[int, bytes] = {}
        "What we hold, verified: every piece for a seeder."
        if manifest is not None:
            assert data is not None
            self.pieces = {i: piece_of(manifest, data, i) for i in range(manifest.piece_count)}
        self.make_picker = picker or default_picker
        self.events: list[ev.Event] = []
        self.actions: list[tuple[float, act.Action]] = []
        "Every action taken and when, in order (tests look for Connect, SignalBusy...)."
        self.serve_delay = 0.0
        "Seconds to send one block (0: as fast as requests come)."
        self.serving_stalled = False
        "Take requests and never answer them (a peer that stopped answering)."
        self.corrupt: set[int] = set()
        "Pieces this node serves with one byte flipped."
        self._serving: set[str] = set()
        self.verify_log: list[tuple[int, bool]] = []
        self.pex_offers: list[tuple[str, bool]] = []
        "Offers made through peer exchange: (to whom, whether a via took it)."

    # -- queries for tests

    def events_of(self, kind: type[ev.Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def warnings(self) -> list[str]:
        return [e.message for e in self.events_of(ev.Warning)]

    def left_reasons(self, peer: str | None = None) -> list[str | None]:
        return [e.reason for e in self.events_of(ev.PeerLeft) if peer in (None, e.peer)]

    def did(self, kind: type) -> list[tuple[float, Any]]:
        """(when, action) for each action of `kind` taken so far."""
        return [(t, a) for t, a in self.actions if isinstance(a, kind)]

    def sent_to(self, peer: str, kind: type | None = None) -> list[Any]:
        """The wire messages we sent `peer`, decoded, in order (of `kind` only if given)."""
        out = [wire.decode(a.data) for _, a in self.did(act.Send) if a.peer == peer]
        return [e for e in out if kind is None or isinstance(e, kind)]

    @property
    def complete(self) -> bool:
        return self.core.complete

    def content(self) -> bytes:
        return b"".join(self.pieces[i] for i in sorted(self.pieces))

    # -- carrying out the core's actions (node.py's `_drain`)

    def drain(self) -> bool:
        did = False
        while (a := self.core.next_action()) is not None:
            did = True
            self.actions.append((self.net.now, a))
            self._do(a)
        return did

    def _do(self, a: act.Action) -> None:
        net, core = self.net, self.core
        if isinstance(a, act.Send):
            self.transmit(a.peer, a.data)
        elif isinstance(a, act.Emit):
            self.events.append(a.event)
        elif isinstance(a, act.Close):
            link = self.links.pop(a.peer, None)
            self._serving.discard(a.peer)
            if link is not None:
                net.later(lambda: net._hang_up(link, self.name))
        elif isinstance(a, act.Connect) and a.peer.startswith(pex.PREFIX):
            self._dial_pex(a.peer)
        elif isinstance(a, act.Connect):
            link = self.links[a.peer] = Link(self.name, a.peer, protocol=self.protocol)
            net.later(lambda: net._offer(link))
        elif isinstance(a, act.SignalBusy) and a.peer.startswith(pex.PREFIX):
            core.pex.send_signal("answer", a.peer, {"busy": a.reason}, net.now)
        elif isinstance(a, act.SignalBusy):
            net.later(lambda: net._busy(self.name, a.peer))
        elif isinstance(a, act.Relay):
            self._relayed(a)
        elif isinstance(a, act.Upload):
            if not self.serving_stalled and a.peer not in self._serving:
                self._serving.add(a.peer)
                net.later(lambda: self._serve(a.peer, self.links.get(a.peer)), self.serve_delay)
        elif isinstance(a, act.AnswerManifest):
            answer = core.serving.manifest_answer(a.peer)
            if answer is not None and a.peer in self.links:
                self.transmit(a.peer, answer)
                core.serving.manifest_answered(a.peer)
        elif isinstance(a, act.Verify):
            # Checked off the loop in node.py: what the core decided meanwhile goes first.
            net.later(lambda: self._verify(a))
        elif isinstance(a, act.OpenStore):
            picker = self.make_picker(a.manifest)
            for i in self.pieces:  # found on disk: a resumed download
                picker.mark_have(i)
            core.store_opened(a.manifest, picker, offers_pieces=True, now=net.now)
        else:  # pragma: no cover - a new action kind the harness must learn
            raise AssertionError(f"unknown action {a!r}")

    # -- peer exchange: what node.py's PexMeeting does. The "SDP" is a token naming the
    # simulated link; a connection opens when the offerer takes the answer.

    @property
    def protocol(self) -> str:
        return self.core.pex.channel_protocol

    def _dial_pex(self, key: str) -> None:
        net = self.net
        target = net.by_peer_id(pex.id_of(key))
        link = self.links[key] = Link(self.name, target or f"nobody-{key}",
                                      protocol=self.protocol, keys={self.name: key})
        sent = self.core.pex.send_signal("offer", key, {"offer": {"type": "offer",
                                                                  "sdp": net.token(link)}},
                                         net.now)
        self.pex_offers.append((key, sent))
        net.later(lambda: net._never_opened(link), 15.0)  # unless an answer opens it

    def _relayed(self, a: act.Relay) -> None:
        net, core = self.net, self.core
        if a.kind == "offer":
            link = net.pending.get(a.data["offer"]["sdp"])
            if link is None or link.b != self.name:  # forged: nobody is at the other end
                link = Link(f"nobody-{a.peer}", self.name)
            admitted = core.admission.offer_received(a.peer, net.now)
            self.drain()
            if admitted:
                link.keys[self.name] = a.peer
                self.links[a.peer] = link
                core.pex.send_signal("answer", a.peer, {"answer": {"type": "answer",
                                                                   "sdp": net.token(link)}},
                                     net.now)
                net.later(lambda: self._answer_timeout(a.peer, link), 15.0)
        elif core.admission.expects_answer(a.peer):
            if isinstance(a.data.get("busy"), str):
                core.admission.answered_busy(a.peer, net.now)
            elif (link := self.links.get(a.peer)) is not None and (
                    net.pending.get(a.data["answer"]["sdp"]) is link):
                net.later(lambda: net._open(link))

    def _answer_timeout(self, key: str, link: Link) -> None:
        if self.links.get(key) is link and not link.open:
            self.core.admission.connect_failed(key, "connection timed out", self.net.now)

    def _verify(self, a: act.Verify) -> None:
        m = self.core.manifest
        assert m is not None
        ok = m.piece_ok(a.piece, a.data)
        if ok:
            self.pieces[a.piece] = bytes(a.data)
        self.verify_log.append((a.piece, ok))
        self.core.piece_checked(a.piece, ok, self.net.now)

    def _serve(self, peer: str, link: Link | None) -> None:
        """node.py's `_upload`: the oldest request, read, then its PIECE (or a REJECT)."""
        core = self.core
        if link is None or self.links.get(peer) is not link:
            return
        block = core.serving.next_upload(peer)
        if block is None:
            self._serving.discard(peer)
            return
        piece, offset, length = block
        have = self.pieces.get(piece)
        if have is None:
            msg = core.serving.cannot_serve(peer, block)
            if msg is not None:
                self.transmit(peer, msg)
        else:
            data = have[offset : offset + length]
            if piece in self.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            msg = core.serving.piece_message(peer, block, data)
            if msg is None:
                return
            self.transmit(peer, msg)
            core.block_sent(peer, len(data))
        self.net.later(lambda: self._serve(peer, link), self.serve_delay)

    # -- what the network tells us (node.py's signaling and session handlers)

    def offered(self, src: str, link: Link) -> bool:
        admitted = self.core.admission.offer_received(src, self.net.now)
        self.drain()  # closes the link of a peer that restarted its side
        if admitted:
            self.links[src] = link
        return admitted

    def opened(self, peer: str, link: Link) -> None:
        src = self.net.endpoints[link.other(self.name)]
        self.core.peer_opened(peer, src.address, "host", self.net.now, protocol=link.protocol)

    def received(self, peer: str, data: bytes) -> None:
        self.core.data_received(peer, data, self.net.now)

    def closed(self, peer: str, link: Link) -> None:
        if link.open:
            self.core.peer_closed(peer, self.net.now)
        else:
            self.core.admission.connect_failed(peer, None, self.net.now)

    def busy(self, peer: str) -> None:
        if self.core.admission.expects_answer(peer):
            self.core.admission.answered_busy(peer, self.net.now)


def default_picker(m: Manifest, *, sequential: bool = False, window: int | None = None,
                   strict_priority: bool = False) -> Picker:
    """The picker `download.py` opens for a manifest."""
    lengths = [m.piece_length(i) for i in range(m.piece_count)]
    p = Picker(lengths, min(m.piece_size, wire.DEFAULT_MAX_BLOCK), sequential=sequential,
               window=window, rng=random.Random(0))  # seeded: every run the same
    p.strict_priority = strict_priority
    return p


class Raw(Endpoint):
    """A peer a test drives by hand: it sends what the test writes and keeps what arrives."""

    def __init__(self, net: Net, name: str, address: str) -> None:
        super().__init__(net, name, address)
        self.inbox: list[tuple[str, wire.Event]] = []
        "(from, decoded message), in order of arrival."
        self.hung_up: list[str] = []
        "Peers that closed their link to us."
        self.refused_busy: list[str] = []
        "Peers that answered our offer with busy."
        self.accept = True
        self.protocol = wire.CHANNEL_PROTOCOL
        "The channel protocol string of our offers ('p2p/1 pex' to speak peer exchange)."
        self.peer_id = b"raw-peer-id-0001"
        "The id it handshakes with (tests keep it in step with `Wire.peer_id`)."

    def got(self, kind: type | None = None, peer: str | None = None) -> list[Any]:
        return [e for p, e in self.inbox
                if (kind is None or isinstance(e, kind)) and peer in (None, p)]

    def send(self, peer: str, data: bytes | str) -> None:
        link = self.links.get(peer)
        assert link is not None and link.open, f"{self.name} has no open link to {peer}"
        self.net.later(lambda: self.net._deliver(link, self.name, data))

    def connect(self, peer: str) -> None:
        """Offer a connection to `peer` (as if its name came in a peer list)."""
        link = self.links[peer] = Link(self.name, peer, protocol=self.protocol)
        self.net.later(lambda: self.net._offer(link))

    def hang_up(self, peer: str) -> None:
        link = self.links.pop(peer)
        self.net.later(lambda: self.net._hang_up(link, self.name))

    def offered(self, src: str, link: Link) -> bool:
        if self.accept:
            self.links[src] = link
        return self.accept

    def received(self, peer: str, data: bytes) -> None:
        self.inbox.append((peer, wire.decode(data)))

    def closed(self, peer: str, link: Link) -> None:
        self.links.pop(peer, None)
        self.hung_up.append(peer)

    def busy(self, peer: str) -> None:
        self.links.pop(peer, None)
        self.refused_busy.append(peer)


class Net:
    """Endpoints, the links between them, a fake clock, and what is due when."""

    def __init__(self, latency: float = 0.001) -> None:
        self.now = START
        self.latency = latency
        self.endpoints: dict[str, Endpoint] = {}
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.pending: dict[str, Link] = {}
        "Links being set up through peer exchange, by the token their offer carries."

    def token(self, link: Link) -> str:
        """The stand-in for an SDP: it names `link`."""
        t = f"sim-link-{id(link)}"
        self.pending[t] = link
        return t

    def by_peer_id(self, peer_id: bytes | None) -> str | None:
        """The endpoint that handshakes with `peer_id`."""
        for e in self.endpoints.values():
            pid = e.core.peer_id if isinstance(e, Node) else getattr(e, "peer_id", None)
            if pid == peer_id:
                return e.name
        return None

    # -- building

    def seeder(self, name: str, data: bytes, m: Manifest, **kw: Any) -> Node:
        return self._node(name, m.content_hash, data=data, manifest=m, **kw)

    def downloader(self, name: str, content_hash: bytes, **kw: Any) -> Node:
        return self._node(name, content_hash, data=None, manifest=None, **kw)

    def _node(self, name: str, content_hash: bytes, *, data: bytes | None,
              manifest: Manifest | None, address: str | None = None,
              peer_id: bytes | None = None, max_peers: int = 32,
              max_peers_per_address: int | None = None,
              picker: Callable[[Manifest], Picker] | None = None,
              extensions: frozenset[str] = wire.SUPPORTED_EXTENSIONS) -> Node:
        n = Node(self, name, address or f"10.0.0.{next(self._ids)}", content_hash, data=data,
                 manifest=manifest, peer_id=peer_id or name.encode().ljust(16, b"."),
                 max_peers=max_peers, max_peers_per_address=max_peers_per_address,
                 picker=picker, extensions=extensions)
        self.endpoints[name] = n
        return n

    def raw(self, name: str, address: str | None = None) -> Raw:
        r = Raw(self, name, address or f"10.0.1.{next(self._ids)}")
        self.endpoints[name] = r
        return r

    def nodes(self) -> list[Node]:
        return [e for e in self.endpoints.values() if isinstance(e, Node)]

    def join(self, node: Node) -> None:
        """`node` announces itself: signaling lists the others to it, and it offers to them."""
        for other in self.endpoints:
            if other != node.name:
                node.core.admission.peer_listed(other, self.now)

    def leave(self, ep: Endpoint) -> None:
        """`ep` goes away: its links close and signaling tells everyone it left."""
        for peer, link in list(ep.links.items()):
            del ep.links[peer]
            self.later(lambda link=link: self._hang_up(link, ep.name))
        del self.endpoints[ep.name]
        for n in self.nodes():
            n.core.admission.signaling_left(ep.name, self.now)

    def cut(self, a: str, b: str) -> None:
        """The link between `a` and `b` breaks (a network blip; an SCTP association that gave
        up): both ends hear it closed, with no CLOSE message, and both stay in the room."""
        ea, eb = self.endpoints[a], self.endpoints[b]
        link = ea.links[b]
        assert eb.links.get(a) is link and link.open
        self.later(lambda: self._hang_up(link, b))
        self.later(lambda: self._hang_up(link, a))

    # -- what happens on the wire

    def later(self, fn: Callable[[], None], delay: float | None = None) -> None:
        at = self.now + (self.latency if delay is None else max(delay, self.latency))
        heapq.heappush(self._due, (at, next(self._seq), fn))

    def _offer(self, link: Link) -> None:
        src, dst = self.endpoints.get(link.a), self.endpoints.get(link.b)
        if src is None or src.links.get(link.b) is not link:
            return  # the offerer gave up first
        if dst is None:
            # Nobody answers: the offerer's connection attempt times out.
            self.later(lambda: self._never_opened(link), 15.0)
            return
        if dst.offered(link.a, link):
            self.later(lambda: self._open(link))

    def _never_opened(self, link: Link) -> None:
        src = self.endpoints.get(link.a)
        key = link.key_at(link.a)
        if isinstance(src, Node) and src.links.get(key) is link and not link.open:
            src.core.admission.connect_failed(key, "connection timed out", self.now)

    def _busy(self, who: str, peer: str) -> None:
        ep = self.endpoints.get(peer)
        if ep is not None:
            ep.busy(who)

    def _open(self, link: Link) -> None:
        ends = [self.endpoints.get(link.a), self.endpoints.get(link.b)]
        if link.open:
            return
        if not all(e is not None and e.links.get(link.key_at(e.name)) is link for e in ends):
            for e in ends:  # one side closed it while it connected
                if e is not None and e.links.get(link.key_at(e.name)) is link:
                    e.closed(link.key_at(e.name), link)
            return
        link.open = True
        for e in ends:
            assert e is not None
            e.opened(link.key_at(e.name), link)
            if isinstance(e, Node):
                e.drain()  # the handshake goes first, as node.py does

    def _deliver(self, link: Link, src: str, data: bytes | str) -> None:
        dst = link.other(src)
        ep = self.endpoints.get(dst)
        if ep is not None and ep.links.get(link.key_at(dst)) is link:
            ep.received(link.key_at(dst), data)

    def _hang_up(self, link: Link, src: str) -> None:
        dst = link.other(src)
        ep = self.endpoints.get(dst)
        if ep is not None and ep.links.get(link.key_at(dst)) is link:
            ep.closed(link.key_at(dst), link)

    # -- running

    def drain(self) -> None:
        while any([n.drain() for n in self.nodes()]):
            pass

    def _next_time(self) -> float:
        t_due = self._due[0][0] if self._due else math.inf
        return min(t_due, min((n.core.get_timer() for n in self.nodes()), default=math.inf))

    def step(self) -> bool:
        """Do the next thing due (a delivery, or the cores' timers); False if none."""
        self.drain()
        t = self._next_time()
        if t == math.inf:
            return False
        self.now = max(self.now, t)
        if self._due and self._due[0][0] <= t:
            heapq.heappop(self._due)[2]()
        else:
            for n in self.nodes():
                if n.core.get_timer() <= self.now:
                    n.core.handle_timer(self.now)
        self.drain()
        return True

    def run(self, until: Callable[[], bool], seconds: float = 120.0) -> float:
        """Run until `until()` holds; fails after `seconds` of fake time. Returns the time
        it took."""
        start, deadline = self.now, self.now + seconds
        while True:
            self.drain()
            if until():
                return self.now - start
            if self._next_time() > deadline or not self.step():
                raise AssertionError(f"not done after {seconds} s of simulated time")

    def run_for(self, seconds: float) -> None:
        """Let `seconds` of time pass, doing everything that falls due meanwhile."""
        end = self.now + seconds
        while True:
            self.drain()
            if self._next_time() > end:
                break
            self.step()
        self.now = end


@dataclass
class Wire:
    """Hand-made messages about one content, for `Raw` peers."""

    m: Manifest
    peer_id: bytes = b"raw-peer-id-0001"
    max_block: int = wire.DEFAULT_MAX_BLOCK
    extra: dict[str, Any] = field(default_factory=dict)

    def handshake(self, content_hash: bytes | None = None, peer_id: bytes | None = None) -> bytes:
        return wire.encode_handshake(content_hash or self.m.content_hash,
                                     peer_id or self.peer_id, self.max_block)

    def bitfield(self, pieces: set[int]) -> bytes:
        return wire.encode_bitfield(wire.bitfield_from(pieces, self.m.piece_count))

    def manifest_data(self, offset: int = 0, length: int = wire.MANIFEST_CHUNK,
                      encoded: bytes | None = None) -> bytes:
        enc = self.m.encoded if encoded is None else encoded
        return wire.encode_manifest_data(len(enc), offset, enc[offset : offset + length])

    def piece(self, data: bytes, piece: int, offset: int, length: int) -> bytes:
        start = self.m.piece_offset(piece) + offset
        return wire.encode_piece_header(piece, offset) + data[start : start + length]
