"""Pieces between us and our peers, sans-IO: what to ask whom, and what came of it.

`PieceExchange` is the downloading half of the swarm core: availability (BITFIELD, HAVE),
requests kept in flight per peer, blocks assembled into pieces, verification results and
the blame for bad pieces, priorities (streaming) and the pipe reader's window. It shares the
core's peers and outbox; the core calls it for the messages about pieces.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import events as ev
from .. import wire
from ..manifest import Manifest
from ..picker import Picker
from .actions import Outbox, Verify
from .peer import MAX_DEPTH, MIN_DEPTH, Peer

Drop = Callable[..., None]  # (peer, reason, now, *, ban=False, warn=False)


class PieceExchange:
    """Which blocks to ask which peer for, and what came of them."""

    def __init__(self, peers: dict[str, Peer], out: Outbox, drop: Drop) -> None:
        self.peers = peers
        self.out = out
        self.drop = drop
        self.manifest: Manifest | None = None
        "Set once the store for it is open (a seeder: from the start)."
        self.picker: Picker | None = None
        "None while seeding (we have everything) or before the manifest."
        self.offers_pieces = True
        "Tell peers which pieces we have (a pipe download's spool keeps none)."
        self.bad_pieces = 0
        self._buffers: dict[int, bytearray] = {}
        self._contributors: dict[int, set[str]] = {}

    @property
    def complete(self) -> bool:
        return self.picker is not None and self.picker.complete

    def can_serve(self, piece: int) -> bool:
        return self.manifest is not None and (self.picker is None or self.picker.have[piece])

    def may_help(self, p: Peer) -> bool:
        """Whether `p` may give us something we lack: the manifest, or a piece."""
        if self.manifest is None:
            return not p.manifest.unavailable
        return self.can_help(p)

    def can_help(self, p: Peer) -> bool:
        """Whether `p` has a piece we lack and have not given up asking it for."""
        k = self.picker
        if k is None or k.complete:
            return False
        if p.has_all:
            return len(p.refused) < k.missing
        return any(k.wants(i) and i not in p.refused for i in p.pieces)

    def holding(self, ready: list[Peer]) -> list[Peer]:
        """Of the connected peers `ready`, those that hold off a download's `--timeout`: the
        ones that gave us something and may give more (a peer with nothing we need, or that
        only handshook, must not). While the read-ahead window is full (the reader of a pipe
        download, a player say, is paused) we ask nobody for anything, so nobody new could
        help: then any of them that has what we lack holds it."""
        helped = [p for p in ready if p.helped and self.may_help(p)]
        k = self.picker
        if helped or k is None or not k.waiting_for_reader():
            return helped
        return [p for p in ready if self.can_help(p)]

    def has_everything(self, p: Peer) -> bool:
        """`p` announced every piece (it wants nothing from anyone)."""
        if p.has_all:
            return True
        m = self.manifest
        return m is not None and len(p.pieces) == m.piece_count

    def progress_fields(self) -> dict[str, int]:
        m, k = self.manifest, self.picker
        if m is None or k is None:
            return {}
        have = sum(m.piece_length(i) for i in range(k.count) if k.have[i])
        if k.n_skipped:  # `--select`: progress is over the pieces wanted
            size = sum(m.piece_length(i) for i in range(k.count) if not k.skipped[i])
            return {"size": size, "have": have, "pieces": k.count - k.n_skipped,
                    "verified": k.n_have}
        return {"size": m.size, "have": have, "pieces": k.count, "verified": k.n_have}

    # -- starting --------------------------------------------------------------------------

    def start(self, p: Peer) -> None:
        """Both handshakes are done and the content is known: tell `p` what we have."""
        m, k = self.manifest, self.picker
        assert m is not None
        p.proto.set_geometry(wire.Geometry(m.piece_count, m.piece_size, m.size))
        if k is None or (self.offers_pieces and k.complete):
            have = None  # a seeder, or a finished download: everything
        elif not self.offers_pieces:
            have = set()
        else:
            have = {i for i, h in enumerate(k.have) if h}
        self.out.send(p, p.proto.send_availability(have))

    def attach(self, p: Peer, now: float) -> None:
        """`p`'s availability is known: count it in the picker and ask it for blocks."""
        k = self.picker
        if k is None or p.in_picker:
            return
        # HAVEs that came before the manifest were not range-checked yet.
        p.pieces = {x for x in p.pieces if x < k.count}
        if p.pending_bitfield is not None and not p.has_all:
            try:
                p.pieces |= wire.bitfield_pieces(p.pending_bitfield, k.count)
            except wire.ProtocolError as e:
                self.drop(p, f"protocol error: {e}", now, ban=True)
                return
            p.pending_bitfield = None
        p.in_picker = True
        k.add_peer(p.id, None if p.has_all else set(p.pieces))
        self.refill(p, now)

    def detach(self, p: Peer) -> None:
        if self.picker is not None and p.in_picker:
            self.picker.remove_peer(p.id, None if p.has_all else p.pieces)

    # -- messages --------------------------------------------------------------------------

    def on_reject(self, p: Peer, e: wire.BlockRejected, now: float) -> None:
        if self.picker is None:
            return
        self.picker.on_reject(p.id, (e.piece, e.offset, e.length))
        # It told us it has the piece and then refused: stop asking it for that one.
        p.refused.add(e.piece)
        if len(p.refused) > wire.MAX_REFUSALS:
            raise wire.ProtocolError("refuses pieces it claims to have (lying bitfield)")
        self.refill(p, now)

    def on_have(self, p: Peer, e: wire.HaveReceived, now: float) -> None:
        if e.piece in p.pieces or p.has_all:
            return
        p.pieces.add(e.piece)
        if self.picker is not None and p.in_picker:
            self.picker.peer_has(e.piece)
            self.refill(p, now)

    def on_block(self, p: Peer, e: wire.BlockReceived, now: float) -> None:
        k, m = self.picker, self.manifest
        if k is None or m is None:
            return
        n = len(e.data)
        new = k.block_needed(e.piece, e.offset)  # not a late or end-game duplicate
        complete, dups = k.on_block(p.id, (e.piece, e.offset, n))
        for other, dblock in dups:
            o = self.peers.get(other)
            if o is not None:
                self.out.send(o, o.proto.send_cancel(*dblock))
        if new:
            buf = self._buffers.get(e.piece)
            if buf is None:
                buf = self._buffers[e.piece] = bytearray(m.piece_length(e.piece))
            buf[e.offset : e.offset + n] = e.data
            self._contributors.setdefault(e.piece, set()).add(p.id)
        if complete:
            self.out.push(Verify(e.piece, self._buffers.pop(e.piece)))
        self.refill(p, now)

    def piece_checked(self, piece: int, ok: bool, now: float) -> None:
        """The adapter checked (and, if `ok`, stored) a piece from a `Verify` action."""
        k = self.picker
        assert k is not None
        peers = self._contributors.pop(piece, set())
        if not ok:
            self.bad_pieces += 1
            k.on_piece_failed(piece)
            self.out.emit(ev.PieceRejected(piece=piece, peers=sorted(peers)))
            for pid in peers:
                p = self.peers.get(pid)
                if p is None:
                    continue
                # Alone, a peer takes all the blame; sharing it, each takes a strike.
                p.strikes += wire.BAD_PIECE_STRIKES if len(peers) == 1 else 1
                if p.strikes >= wire.BAD_PIECE_STRIKES:
                    self.drop(p, f"sent corrupt data for piece {piece}", now, ban=True)
            self.refill_all(now)
            return
        k.on_piece_verified(piece)
        self.out.emit(ev.PieceVerified(piece=piece, peers=sorted(peers)))
        if self.offers_pieces:
            for p in self.peers.values():
                if p.proto.availability_sent and not p.has_all:
                    self.out.send(p, p.proto.send_have(piece))
        self.refill_all(now)

    # -- requests --------------------------------------------------------------------------

    def set_priority(self, pieces: list[int], now: float) -> None:
        """Put these pieces first (streaming); cancel requests nobody needs any more."""
        k = self.picker
        if k is None:
            return
        k.set_priority(pieces)
        urgent = {x for x in pieces if not k.have[x]}
        if urgent and k.strict_priority:
            for p in list(self.peers.values()):
                for block in k.in_flight_blocks(p.id):
                    if block[0] not in urgent:
                        self.out.send(p, p.proto.send_cancel(*block))
                        k.on_reject(p.id, block)
        self.refill_all(now)

    def set_cursor(self, piece: int, now: float) -> None:
        """A pipe's reader took every piece before `piece`: the window moves on."""
        if self.picker is not None:
            self.picker.set_cursor(piece)
            self.refill_all(now)

    def refill_all(self, now: float) -> None:
        for p in list(self.peers.values()):
            self.refill(p, now)

    def refill(self, p: Peer, now: float) -> None:
        k = self.picker
        if k is None or k.complete or not p.in_picker or not p.ready:
            return
        free = p.depth - k.in_flight(p.id)
        if free <= 0:
            return
        has = None if p.has_all and not p.refused else p.has
        for piece, offset, length in k.pick(p.id, has, free, now):
            self.out.send(p, p.proto.send_request(piece, offset, length))

    def pace(self, p: Peer, rate: float) -> None:
        """Keep about one second of data in flight to `p`."""
        if self.picker is not None and self.manifest is not None:
            p.depth = max(MIN_DEPTH, min(MAX_DEPTH, int(rate / self.picker.block_size) + 2))

    def expire(self, now: float) -> None:
        """Cancel requests older than the picker's timeout; drop peers that send nothing."""
        k = self.picker
        if k is None or k.complete:
            return
        timed_out: set[str] = set()
        for pid, block in k.expired(now):
            p = self.peers.get(pid)
            if p is not None:
                self.out.send(p, p.proto.send_cancel(*block))
                p.depth = MIN_DEPTH
                timed_out.add(pid)
        for pid in timed_out:
            p = self.peers.get(pid)
            # A request timed out and the peer sent nothing at all for a whole timeout:
            # it is not slow, it is not answering.
            if p is not None and now - p.last_data >= k.request_timeout:
                p.unresponsive = True
                self.drop(p, "stopped answering requests", now, warn=True)
        self.refill_all(now)
