"""Peers as a person can tell them apart: a short id, how we are connected, and where.

A peer's id is whatever the rendezvous that introduced it calls it: a Socket.IO id (20
random characters), `wt0:` and 40 hex digits (a WebTorrent tracker's peer id), `pj0:3.name`
(a PeerJS slot and instance), `px:` and hex (met through another peer). Printed whole they
fill a line and all look alike; cut to their first few characters, two can collide. So a
name is the rendezvous prefix and the first SHORT characters of the rest (past a tracker
peer id's client tag), lengthened for a peer whose short name another peer already has,
for as long as this command runs.
"""

from __future__ import annotations

import re

#: Characters of an id's body shown when no other peer shares them.
SHORT = 6

#: How a `peer-joined` event's `connection` reads to a person.
CONNECTION_WORDS = {
    "host": "direct",
    "srflx": "direct, through NAT",
    "prflx": "direct, through NAT",
    "relay": "relayed through TURN",
}

# `wt0:`, `pj12:`, `px:`: the rendezvous that named the peer, kept in its name.
_PREFIX = re.compile(r"[a-z]{2}[0-9]*:")


def split(peer: str) -> tuple[str, str]:
    """(rendezvous prefix, the rest) of a peer id; no prefix for a signaling server's."""
    m = _PREFIX.match(peer)
    return (m.group(), peer[m.end():]) if m else ("", peer)


def _without_client_tag(body: str) -> str:
    """A tracker's peer id begins with its client's tag ("-P2P010-", "-WW0208-": Azureus
    style), the same for every peer of one program: name the peer by the rest."""
    if len(body) == 40 and re.fullmatch(r"[0-9a-f]{40}", body):
        raw = bytes.fromhex(body)
        if raw[:1] == b"-" and raw[7:8] == b"-":
            return body[16:]
    return body


def remote_address(pair: str | None) -> str | None:
    """The far end's address of an ICE pair, 'host 10.0.0.1:1 -> srflx 203.0.113.7:2'."""
    if not pair or "->" not in pair:
        return None
    far = pair.rsplit("->", 1)[1].split()
    return far[-1] if far else None


class PeerNames:
    """Short names for the peers one command meets, distinct from each other (sans-IO)."""

    def __init__(self, short: int = SHORT) -> None:
        self.short = short
        self.names: dict[str, str] = {}
        self._taken: dict[str, str] = {}  # name -> the id it stands for

    def __call__(self, peer: str) -> str:
        name = self.names.get(peer)
        if name is not None:
            return name
        prefix, body = split(peer)
        body = _without_client_tag(body)
        n = self.short
        name = prefix + body[:n]
        while name in self._taken and n < len(body):
            n += 2
            name = prefix + body[:n]
        if name in self._taken:  # a prefix of another id, or the same id twice: never here
            name = peer
        self.names[peer] = name
        self._taken[name] = peer
        return name

    def shorten(self, text: str) -> str:
        """`text` with each whole id of a peer named so far replaced by its name."""
        for peer in sorted(self.names, key=len, reverse=True):  # an id inside a longer one
            if peer in text:
                text = text.replace(peer, self.names[peer])
        return text

    def joined(self, peer: str, connection: str, pair: str | None) -> str:
        """'a1b2c3 connected (direct, 10.0.0.2:40000)': the name, then how and where."""
        how = CONNECTION_WORDS.get(connection, "connection kind unknown")
        where = remote_address(pair)
        return f"{self(peer)} connected ({how}{', ' + where if where else ''})"
