"""`serve-signal` as a WebTorrent tracker (issue 15, rendezvous kind 4's "nice to have"):
the server side of the WebSocket tracker protocol, sans I/O.

WebTorrent clients (and p2p's own `--tracker`) can announce to `ws://HOST:PORT/announce`.
The protocol is the one `p2pcli/rendezvous/wstracker.py` speaks as a client
(docs/PROTOCOL.md 2.1); what a tracker does with it, as bittorrent-tracker's server does:

- an announce joins (or updates) the sender in its info hash's swarm and is answered with
  `{action: "announce", info_hash, interval, complete, incomplete}`;
- each of its offers (at most `MAX_OFFERS`, and no more than its `numwant`) goes to a
  different other peer of the swarm, chosen at random, as `{action: "announce",
  info_hash, peer_id: <sender>, offer_id, offer}`;
- an answer (`to_peer_id`, `offer_id`, `answer`) goes to that one peer, stamped with the
  sender's `peer_id` — only between peers of the same swarm;
- `event: "stopped"`, or the connection closing, takes the peer out.

Limits keep one client from costing the server much: swarms, peers per swarm and per
connection, the size of a message and of an SDP, and the rate of messages per connection
(a token bucket). A message that breaks them, or is malformed, is answered with a
`failure reason` and otherwise ignored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Hashable
from dataclasses import dataclass, field

from ..rendezvous.wstracker import MAX_MESSAGE, MAX_OFFERS, binary, parse_id, parse_sdp
from .limits import TokenBucket

INTERVAL = 120  # seconds between a client's regular announces (bittorrent-tracker's WS value)
MAX_SWARMS = 10_000
MAX_PEERS_PER_SWARM = 1_000
MAX_PEERS_PER_CONNECTION = 50  # one connection announcing many torrents (WebTorrent does)
MESSAGE_RATE = 20.0  # messages per second per connection, sustained
MESSAGE_BURST = 100.0

Conn = Hashable
Out = list[tuple[Conn, str]]
"Frames to send: (connection, text)."


@dataclass
class _Peer:
    conn: Conn
    left: int | None


@dataclass
class TrackerHub:
    """Every swarm of one tracker; connections are whatever keys the adapter uses."""

    interval: int = INTERVAL
    rng: random.Random = field(default_factory=random.Random)
    swarms: dict[bytes, dict[bytes, _Peer]] = field(default_factory=dict)
    joined: dict[Conn, set[tuple[bytes, bytes]]] = field(default_factory=dict)
    "(info hash, peer id) each connection announced."
    buckets: dict[Conn, TokenBucket] = field(default_factory=dict)

    def message(self, conn: Conn, text: str, now: float) -> Out:
        """What to send, and to whom, for one text frame from `conn`."""
        bucket = self.buckets.get(conn)
        if bucket is None:
            bucket = self.buckets[conn] = TokenBucket(MESSAGE_RATE, MESSAGE_BURST)
        if bucket.take(now) > 0:
            return [(conn, _failure("too many messages: slow down"))]
        if len(text) > MAX_MESSAGE:
            return [(conn, _failure("message too large"))]
        try:
            msg = json.loads(text)
        except ValueError:
            return [(conn, _failure("not JSON"))]
        if not isinstance(msg, dict):
            return [(conn, _failure("not a JSON object"))]
        if msg.get("action") == "scrape":
            return [(conn, _failure("scrape is not supported"))]
        if msg.get("action") != "announce":
            return [(conn, _failure("unknown action"))]
        info_hash, peer_id = parse_id(msg.get("info_hash")), parse_id(msg.get("peer_id"))
        if info_hash is None or peer_id is None:
            return [(conn, _failure("info_hash and peer_id must be 20-byte strings"))]
        if "answer" in msg:
            return self._answer(conn, info_hash, peer_id, msg)
        return self._announce(conn, info_hash, peer_id, msg)

    def closed(self, conn: Conn) -> None:
        """`conn` went away: its peers leave their swarms."""
        self.buckets.pop(conn, None)
        for info_hash, peer_id in self.joined.pop(conn, set()):
            self._leave(info_hash, peer_id, conn)

    # -- announces and answers ---------------------------------------------------------------

    def _announce(self, conn: Conn, info_hash: bytes, peer_id: bytes, msg: dict) -> Out:
        if msg.get("event") == "stopped":
            self._leave(info_hash, peer_id, conn)
            self.joined.get(conn, set()).discard((info_hash, peer_id))
            return [(conn, self._response(info_hash))]
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            if len(self.swarms) >= MAX_SWARMS:
                return [(conn, _failure("this tracker is full"))]
            swarm = self.swarms[info_hash] = {}
        mine = self.joined.setdefault(conn, set())
        if (info_hash, peer_id) not in mine:
            other = swarm.get(peer_id)
            if other is not None and other.conn != conn:
                return [(conn, _failure("peer_id in use by another connection"))]
            if len(swarm) >= MAX_PEERS_PER_SWARM or len(mine) >= MAX_PEERS_PER_CONNECTION:
                if not swarm:
                    del self.swarms[info_hash]
                return [(conn, _failure("too many peers"))]
            mine.add((info_hash, peer_id))
        left = msg.get("left")
        swarm[peer_id] = _Peer(conn, left if _count(left) else None)
        out: Out = [(conn, self._response(info_hash))]
        out += self._forward_offers(swarm, info_hash, peer_id, msg.get("offers"),
                                    msg.get("numwant"))
        return out

    def _forward_offers(self, swarm: dict[bytes, _Peer], info_hash: bytes, sender: bytes,
                        offers: object, numwant: object) -> Out:
        if not isinstance(offers, list):
            return []
        want = numwant if _count(numwant) else len(offers)
        others = [p for pid, p in swarm.items() if pid != sender]
        self.rng.shuffle(others)
        out: Out = []
        for target, item in zip(others, offers[:min(MAX_OFFERS, want)], strict=False):
            if not isinstance(item, dict):
                continue
            offer_id, sdp = parse_id(item.get("offer_id")), parse_sdp(item.get("offer"), "offer")
            if offer_id is None or sdp is None:
                continue
            out.append((target.conn, json.dumps({
                "action": "announce", "info_hash": binary(info_hash),
                "peer_id": binary(sender), "offer_id": binary(offer_id),
                "offer": {"type": "offer", "sdp": sdp},
            })))
        return out

    def _answer(self, conn: Conn, info_hash: bytes, peer_id: bytes, msg: dict) -> Out:
        swarm = self.swarms.get(info_hash, {})
        me = swarm.get(peer_id)
        target = swarm.get(parse_id(msg.get("to_peer_id")) or b"")
        offer_id, sdp = parse_id(msg.get("offer_id")), parse_sdp(msg.get("answer"), "answer")
        if me is None or me.conn != conn:
            return [(conn, _failure("announce before answering"))]
        if target is None or offer_id is None or sdp is None:
            return []  # the offerer left, or a malformed answer: nobody to tell
        return [(target.conn, json.dumps({
            "action": "announce", "info_hash": binary(info_hash),
            "peer_id": binary(peer_id), "offer_id": binary(offer_id),
            "answer": {"type": "answer", "sdp": sdp},
        }))]

    def _response(self, info_hash: bytes) -> str:
        swarm = self.swarms.get(info_hash, {})
        complete = sum(p.left == 0 for p in swarm.values())
        return json.dumps({"action": "announce", "info_hash": binary(info_hash),
                           "interval": self.interval, "complete": complete,
                           "incomplete": len(swarm) - complete})

    def _leave(self, info_hash: bytes, peer_id: bytes, conn: Conn) -> None:
        swarm = self.swarms.get(info_hash)
        if swarm is not None and (p := swarm.get(peer_id)) is not None and p.conn == conn:
            del swarm[peer_id]
            if not swarm:
                del self.swarms[info_hash]

    def stats(self) -> dict[str, int]:
        return {"swarms": len(self.swarms),
                "peers": sum(len(s) for s in self.swarms.values())}


def _failure(reason: str) -> str:
    return json.dumps({"failure reason": reason})


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
