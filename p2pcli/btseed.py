"""Seeding a torrent to BitTorrent peers (sans-IO): the decisions of `p2p seed --torrent`.

`BtUpload` is fed what happens on each connection and returns what to send: our
handshake, extension handshake (with `metadata_size`, so a magnet leecher can ask for the
info dict) and a full bitfield; UNCHOKE to a peer that says INTERESTED; `Serve` for each
valid REQUEST (the adapter reads the block and sends the PIECE, then calls `served`);
metadata pieces on request. A request outside the piece, and every wire violation of
`btwire`, drops the peer. Who is unchoked is `btchoke.Choker`'s decision (4 regular slots
by bytes taken, 1 optimistic, rotated); a choked peer's queued and new REQUESTs are
dropped, as BEP 3 says. The upload limit is the adapter's.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import btwire as bt
from .btchoke import Choker, Rechoke
from .btfetch import Drop, Send
from .magnet import TorrentInfo


@dataclass(frozen=True)
class Serve:
    peer: str
    "Who asked."
    index: int
    "Piece index."
    begin: int
    "Offset in the piece."
    length: int
    "Bytes (at most btwire.MAX_REQUEST)."
    epoch: int = 0
    "How many times the peer had been choked when it asked: a later CHOKE voids it."


Action = Send | Drop | Serve


class BtUpload:
    def __init__(self, info: TorrentInfo, peer_id: bytes) -> None:
        self.info = info
        self.peer_id = peer_id
        self.peers: dict[str, bt.BtProtocol] = {}
        self.cancelled: dict[str, set[tuple[int, int, int]]] = {}
        self.epochs: dict[str, int] = {}
        self.choker = Choker()
        self.bytes_sent = 0

    def connected(self, peer: str, now: float) -> list[Action]:
        proto = bt.BtProtocol(self.info.info_hash, self.peer_id, len(self.info.pieces))
        self.peers[peer] = proto
        self.cancelled[peer] = set()
        self.epochs[peer] = 0
        self.choker.connected(peer, now)
        hello = (proto.handshake() + bt.extended_handshake(len(self.info.raw))
                 + bt.bitfield(bt.bits_of([True] * len(self.info.pieces))))
        return [Send(peer, hello)]

    def disconnected(self, peer: str, now: float) -> list[Action]:
        self.peers.pop(peer, None)
        self.cancelled.pop(peer, None)
        self.epochs.pop(peer, None)
        return self._rechoke(self.choker.disconnected(peer, now))

    def tick(self, now: float) -> list[Action]:
        return self._rechoke(self.choker.on_timer(now))

    def _rechoke(self, r: Rechoke) -> list[Action]:
        out: list[Action] = []
        for peer in r.choke:
            if peer in self.epochs:
                self.epochs[peer] += 1  # what it asked for before is void now
                out.append(Send(peer, bt.choke()))
        out += [Send(peer, bt.unchoke()) for peer in r.unchoke if peer in self.peers]
        return out

    def received(self, peer: str, data: bytes, now: float) -> list[Action]:
        proto = self.peers.get(peer)
        if proto is None:
            return []
        out: list[Action] = []
        try:
            for event in proto.receive_data(data):
                out += self._on_event(peer, proto, event, now)
        except bt.ProtocolError as e:
            return [Drop(peer, str(e)), *self.disconnected(peer, now)]
        return out

    def should_serve(self, s: Serve) -> bool:
        """Whether a queued block is still wanted (not cancelled since, and the peer not
        choked since it asked)."""
        gone = self.cancelled.get(s.peer)
        if gone is None:
            return False
        if s.epoch != self.epochs.get(s.peer):
            self.served(s.peer, 0)
            return False
        key = (s.index, s.begin, s.length)
        if key in gone:
            gone.discard(key)
            self.served(s.peer, 0)
            return False
        return True

    def served(self, peer: str, n: int) -> None:
        self.bytes_sent += n
        self.choker.sent(peer, n)
        proto = self.peers.get(peer)
        if proto is not None:
            proto.answered_request()

    def _on_event(self, peer: str, proto: bt.BtProtocol, event: bt.Event,
                  now: float) -> list[Action]:
        if isinstance(event, bt.Interested):
            return self._rechoke(self.choker.interested(peer, now))
        if isinstance(event, bt.NotInterested):
            return self._rechoke(self.choker.not_interested(peer, now))
        if isinstance(event, bt.Request):
            if event.begin + event.length > self.info.piece_size(event.index):
                raise bt.ProtocolError(f"a REQUEST beyond the end of piece {event.index}")
            if not self.choker.is_unchoked(peer):
                # Sent before our CHOKE reached it, or out of turn: dropped, not an error.
                proto.answered_request()
                return []
            return [Serve(peer, event.index, event.begin, event.length, self.epochs[peer])]
        if isinstance(event, bt.Cancel):
            self.cancelled[peer].add((event.index, event.begin, event.length))
            return []
        if isinstance(event, bt.MetadataRequest) and proto.peer_ut_metadata is not None:
            raw = self.info.raw
            start = event.piece * bt.METADATA_PIECE
            if start >= len(raw):
                return [Send(peer, proto.metadata_reject(event.piece))]
            chunk = raw[start : start + bt.METADATA_PIECE]
            return [Send(peer, proto.metadata_data(event.piece, len(raw), chunk))]
        return []
