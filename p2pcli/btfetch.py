"""Downloading a magnet link from BitTorrent peers (sans-IO): the decisions of a fetch.

`BtDownload` is fed what happens (a peer connected, bytes from a peer, the clock) and
returns what to send to whom and whom to drop; verified pieces are handed out in order of
arrival through `take_verified`. It owns one `btwire.BtProtocol` per peer and reuses
`p2pcli.picker.Picker` for which block to ask whom for (rarest first, or sequential with a
window for stdout, end-game and request timeouts as for p2p peers).

Policy:
- Metadata first: every peer that says `metadata_size` in its extension handshake is asked
  for the pieces still missing, each from one peer; the whole is checked against the info
  hash (`MetadataAssembler`), and a peer whose metadata does not match is dropped.
- Then each peer that unchokes us gets up to `PIPELINE` blocks of 16 KiB in flight.
- A piece that fails its SHA-1 costs each peer that sent part of it a strike; a peer that
  sent all of it, or reaches `BAD_PIECE_STRIKES`, is dropped, and the piece is fetched again.
- We never upload piece data here (a fetch); we answer metadata requests once we have it.
- `--timeout` counts help (`idle_for`): metadata or a block arriving, or a connected peer
  that has a piece we lack. A peer that keeps us choked still holds the clock: in
  BitTorrent a newcomer waits in line for an (optimistic) unchoke, 30 s and more with a
  busy seeder, and webtorrent-cli waits too. A peer with nothing we want holds nothing off.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import btwire as bt
from .magnet import MagnetError, MagnetLink, TorrentInfo, parse_info
from .picker import Picker

PIPELINE = 32  # blocks in flight per peer: 512 KiB, enough for a loopback or LAN link
BAD_PIECE_STRIKES = 3
METADATA_TIMEOUT = 10.0  # seconds a peer has to send a metadata piece before another is asked


def window_pieces(window_bytes: int, piece_length: int) -> int:
    """A sequential fetch's window in pieces: the stdout spool holds as many
    (btstore.TorrentStore)."""
    return max(2, window_bytes // piece_length)


@dataclass
class _Peer:
    proto: bt.BtProtocol
    choked: bool = True
    has: bytearray | None = None  # None until its bitfield (or all-haves) are known
    has_all: bool = False
    strikes: int = 0
    answered: bool = False
    "Its BitTorrent handshake came (`p2p info` counts these)."
    helped: bool = False
    "It sent us metadata or a block."
    metadata_asked: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    peer: str
    "Who to send to."
    data: bytes
    "The bytes."


@dataclass(frozen=True)
class Drop:
    peer: str
    "Who to disconnect."
    reason: str
    "Why, for a log line or a warning."


Action = Send | Drop


class BtDownload:
    def __init__(
        self,
        link: MagnetLink,
        peer_id: bytes,
        *,
        info: TorrentInfo | None = None,
        sequential: bool = False,
        window_bytes: int | None = None,
        rng: random.Random | None = None,
        want: Callable[[TorrentInfo], Iterable[int] | None] | None = None,
        strict_priority: bool = False,
        await_store: bool = False,
    ) -> None:
        self.link = link
        self.want = want
        """Given the metadata, the pieces to fetch (None: all): `--select`, or none at all
        for `p2p info`. Called once, before any block is asked for."""
        self.store_pending = await_store
        """No block is asked for until `store_opened` says which pieces the store already
        holds (a resumed `.part`, re-verified off the event loop: btstore.TorrentStore)."""
        self.strict_priority = strict_priority
        """Streaming: while pieces a player waits for are missing, ask for nothing else;
        and nothing at all before the first `set_priority` (what the random first picks
        fetched was cancelled by it, then often asked again: bytes twice)."""
        self._prioritized = False
        self.peer_id = peer_id
        self.sequential = sequential
        self.window_bytes = window_bytes
        "Sequential: how far past the first missing piece to fetch, in bytes (None: all)."
        self.rng = rng or random.Random()
        self.peers: dict[str, _Peer] = {}
        self.info: TorrentInfo | None = None
        self.picker: Picker | None = None
        self._assembler: bt.MetadataAssembler | None = None
        self._metadata_pieces: dict[int, bytes] = {}
        self._blocks: dict[int, dict[int, tuple[str, bytes]]] = {}  # piece -> offset -> block
        self._verified: list[tuple[int, bytes]] = []
        self.bytes_received = 0
        self.received_from: dict[str, int] = {}
        "Piece bytes each peer sent us (peers that left included)."
        self.bad_pieces = 0
        self.last_help = 0.0
        "When help last came (`idle_for`); the caller starts the wait with `wait_from`."
        if info is not None:
            self._set_info(info)

    # -- inputs ----------------------------------------------------------------------------

    def connected(self, peer: str) -> list[Action]:
        """A data channel to `peer` is open: our handshakes go first."""
        n = len(self.info.pieces) if self.info else None
        proto = bt.BtProtocol(self.link.info_hash, self.peer_id, n)
        self.peers[peer] = _Peer(proto, has=bytearray(n) if n is not None else None)
        if self.picker is not None:
            self.picker.add_peer(peer, [])
        size = len(self.info.raw) if self.info else None
        return [Send(peer, proto.handshake() + bt.extended_handshake(size))]

    def disconnected(self, peer: str) -> None:
        p = self.peers.pop(peer, None)
        if p is None or self.picker is None:
            return
        for block in self.picker.in_flight_blocks(peer):
            self.picker.on_reject(peer, block)
        self.picker.remove_peer(peer, self._pieces_of(p))

    def received(self, peer: str, data: bytes, now: float) -> list[Action]:
        p = self.peers.get(peer)
        if p is None:
            return []
        try:
            events = p.proto.receive_data(data)
            out: list[Action] = []
            for event in events:
                out += self._on_event(peer, p, event, now)
        except bt.ProtocolError as e:
            self.disconnected(peer)
            return [Drop(peer, str(e))]
        return out + self._schedule(now)

    def wait_from(self, now: float) -> None:
        """The wait for help (`--timeout`) starts now."""
        self.last_help = now

    def idle_for(self, now: float) -> float:
        """Seconds without help: 0 while a peer that has a piece we lack is connected
        (unchoking us or not), else since help last came."""
        if any(self._may_help(p) for p in self.peers.values()):
            self.last_help = now
            return 0.0
        return now - self.last_help

    def tick(self, now: float) -> list[Action]:
        """Requests that timed out go to other peers; slow metadata is asked elsewhere."""
        self.idle_for(now)  # a helping peer seen now holds the clock until it goes
        if self.picker is not None:
            self.picker.expired(now)
        else:
            for p in self.peers.values():
                for i, t in list(p.metadata_asked.items()):
                    if now - t > METADATA_TIMEOUT:
                        del p.metadata_asked[i]
        return self._schedule(now)

    # -- outputs ---------------------------------------------------------------------------

    def take_verified(self) -> list[tuple[int, bytes]]:
        """Pieces verified since the last call (index, bytes)."""
        out, self._verified = self._verified, []
        return out

    @property
    def complete(self) -> bool:
        return self.picker is not None and self.picker.complete

    def set_priority(self, pieces: list[int], now: float) -> list[Action]:
        """Streaming: these pieces first, most urgent first (`readahead.ReadAhead`). With
        `strict_priority`, blocks in flight for other pieces are cancelled, as the p2p swarm
        does (swarm/exchange.py): a seek must not wait behind the old read-ahead."""
        picker = self.picker
        if picker is None:
            return []
        picker.set_priority(pieces)
        self._prioritized = True
        out: list[Action] = []
        urgent = {x for x in pieces if not picker.have[x]}
        if urgent and picker.strict_priority:
            for peer, p in self.peers.items():
                for block in picker.in_flight_blocks(peer):
                    if block[0] not in urgent:
                        out.append(Send(peer, p.proto.cancel(*block)))
                        picker.on_reject(peer, block)
        return out + self._schedule(now)

    def peers_seen(self) -> dict[str, bool]:
        """Peers connected now that answered our handshake, each with whether it has
        every piece (known once the metadata and its bitfield are)."""
        return {q: bool(p.has_all or (p.has and all(p.has)))
                for q, p in self.peers.items() if p.answered}

    def store_opened(self, found: Iterable[int], now: float) -> list[Action]:
        """The store is open (`await_store`) and holds these verified pieces: they are
        never asked for; the others are, from now on."""
        assert self.picker is not None
        for i in found:
            self.picker.mark_have(i)
        self.store_pending = False
        return self._schedule(now)

    def consumed(self, piece: int) -> None:
        """Sequential output wrote everything before `piece`: move the window on."""
        if self.picker is not None:
            self.picker.set_cursor(piece)

    # -- internals -------------------------------------------------------------------------

    def _set_info(self, info: TorrentInfo) -> list[Action]:
        self.info = info
        n = len(info.pieces)
        lengths = [info.piece_size(i) for i in range(n)]
        # A window in pieces from one in bytes: what stdout holds out of order stays
        # bounded whatever the torrent's piece length.
        wb = self.window_bytes
        window = None if wb is None else window_pieces(wb, info.piece_length)
        self.picker = Picker(
            lengths, bt.BLOCK, sequential=self.sequential, window=window, rng=self.rng
        )
        self.picker.strict_priority = self.strict_priority
        wanted = None if self.want is None else self.want(info)
        if wanted is not None:
            keep = set(wanted)
            self.picker.skip(i for i in range(n) if i not in keep)
            if self.sequential and keep:
                # To stdout, the window starts at the first piece wanted, not at 0.
                self.picker.set_cursor(min(keep))
        out: list[Action] = []
        for peer, p in list(self.peers.items()):
            try:
                for event in p.proto.set_num_pieces(n):
                    out += self._on_event(peer, p, event, 0.0)
            except bt.ProtocolError as e:
                self.disconnected(peer)
                out.append(Drop(peer, str(e)))
                continue
            if p.has is None:
                p.has = bytearray(n)
            self.picker.add_peer(peer, None if p.has_all else self._pieces_of(p))
        return out

    def _may_help(self, p: _Peer) -> bool:
        k = self.picker
        if k is None or k.complete:
            return False
        return p.has_all or any(h and k.wants(i) for i, h in enumerate(p.has or b""))

    def _pieces_of(self, p: _Peer) -> list[int] | None:
        if p.has_all:
            return None
        return [i for i, h in enumerate(p.has or b"") if h]

    def _on_event(self, peer: str, p: _Peer, event: bt.Event, now: float) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, bt.Handshake):
            p.answered = True
            out.append(Send(peer, bt.interested()))
        elif isinstance(event, bt.ExtendedHandshake):
            if self.info is None and event.metadata_size and event.ut_metadata is not None:
                if self._assembler is None:
                    self._assembler = bt.MetadataAssembler(self.link.info_hash, event.metadata_size)
                elif self._assembler.size != event.metadata_size:
                    raise bt.ProtocolError("a metadata_size other peers do not agree with")
        elif isinstance(event, bt.Bitfield):
            n = len(self.info.pieces) if self.info else 0
            if self.info is not None:
                had = self._pieces_of(p) if p.has is not None else []
                p.has = bytearray(bt.has_bit(event.bits, i) for i in range(n))
                p.has_all = all(p.has)
                assert self.picker is not None
                if had:
                    self.picker.remove_peer(peer, had)
                self.picker.add_peer(peer, None if p.has_all else self._pieces_of(p))
        elif isinstance(event, bt.Have):
            if self.info is not None and p.has is not None and not p.has[event.index]:
                p.has[event.index] = 1
                if not p.has_all:
                    assert self.picker is not None
                    self.picker.peer_has(event.index)
        elif isinstance(event, bt.Unchoke):
            p.choked = False
        elif isinstance(event, bt.Choke):
            p.choked = True
            if self.picker is not None:  # a choke discards the peer's queue (BEP 3)
                for block in self.picker.in_flight_blocks(peer):
                    self.picker.on_reject(peer, block)
        elif isinstance(event, bt.Piece):
            out += self._on_block(peer, p, event)
            p.helped, self.last_help = True, now
        elif isinstance(event, bt.MetadataData):
            out += self._on_metadata(peer, p, event)
            p.helped, self.last_help = True, now
        elif isinstance(event, bt.MetadataReject):
            p.metadata_asked.pop(event.piece, None)
        elif isinstance(event, bt.MetadataRequest):
            if self.info is not None and p.proto.peer_ut_metadata is not None:
                raw = self.info.raw
                start = event.piece * bt.METADATA_PIECE
                if start < len(raw):
                    chunk = raw[start : start + bt.METADATA_PIECE]
                    out.append(Send(peer, p.proto.metadata_data(event.piece, len(raw), chunk)))
                else:
                    out.append(Send(peer, p.proto.metadata_reject(event.piece)))
            elif p.proto.peer_ut_metadata is not None:
                out.append(Send(peer, p.proto.metadata_reject(event.piece)))
        # Interested, NotInterested, Request, Cancel, KeepAlive: a fetch uploads nothing.
        return out

    def _on_metadata(self, peer: str, p: _Peer, event: bt.MetadataData) -> list[Action]:
        p.metadata_asked.pop(event.piece, None)
        if self.info is not None or self._assembler is None:
            return []
        try:
            raw = self._assembler.add(event.piece, event.data)
        except bt.ProtocolError:
            # Pieces may have come from several peers; start over from this one alone.
            self._assembler = bt.MetadataAssembler(self.link.info_hash, self._assembler.size)
            raise
        if raw is None:
            return []
        try:
            info = parse_info(raw, self.link.info_hash)
        except MagnetError as e:
            # The hash matched, so the link itself names unusable content.
            raise bt.ProtocolError(f"the torrent's metadata is unusable: {e}") from None
        return self._set_info(info)

    def _on_block(self, peer: str, p: _Peer, event: bt.Piece) -> list[Action]:
        picker, info = self.picker, self.info
        if picker is None or info is None:
            raise bt.ProtocolError("a PIECE before the metadata")
        self.bytes_received += len(event.data)
        self.received_from[peer] = self.received_from.get(peer, 0) + len(event.data)
        block = (event.index, event.begin, len(event.data))
        if not picker.block_needed(event.index, event.begin):
            picker.on_block(peer, block)
            return []
        done, cancels = picker.on_block(peer, block)
        self._blocks.setdefault(event.index, {})[event.begin] = (peer, event.data)
        out: list[Action] = [
            Send(q, self.peers[q].proto.cancel(*b)) for q, b in cancels if q in self.peers
        ]
        if not done:
            return out
        parts = self._blocks.pop(event.index)
        data = b"".join(parts[o][1] for o in sorted(parts))
        if hashlib.sha1(data).digest() == info.pieces[event.index]:
            picker.on_piece_verified(event.index)
            self._verified.append((event.index, data))
            return out
        self.bad_pieces += 1
        picker.on_piece_failed(event.index)
        senders = {s for s, _ in parts.values()}
        for s in senders:
            q = self.peers.get(s)
            if q is None:
                continue
            q.strikes += 1
            if len(senders) == 1 or q.strikes >= BAD_PIECE_STRIKES:
                self.disconnected(s)
                out.append(Drop(s, f"piece {event.index} failed its SHA-1 check"))
        return out

    def _schedule(self, now: float) -> list[Action]:
        out: list[Action] = []
        if self.info is None:
            if self._assembler is None:
                return out
            asked = {i for p in self.peers.values() for i in p.metadata_asked}
            todo = [i for i in self._assembler.missing() if i not in asked]
            able = [(q, p) for q, p in self.peers.items() if p.proto.peer_ut_metadata is not None]
            for k, i in enumerate(todo if able else []):  # round robin over the peers able
                peer, p = able[k % len(able)]
                p.metadata_asked[i] = now
                out.append(Send(peer, p.proto.metadata_request(i)))
            return out
        picker = self.picker
        assert picker is not None
        if self.store_pending or (self.strict_priority and not self._prioritized):
            return out
        for peer, p in self.peers.items():
            if p.choked or (p.has is None and not p.has_all):
                continue
            slots = PIPELINE - picker.in_flight(peer)
            has = None if p.has_all else p.has.__getitem__  # type: ignore[union-attr]
            blocks = picker.pick(peer, has, slots, now)
            if blocks:
                out.append(Send(peer, b"".join(p.proto.request(*b) for b in blocks)))
        return out
