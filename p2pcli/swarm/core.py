"""The swarm's decisions, sans-IO: every peer of one content hash and what flows over them.

`SwarmCore` is to the swarm what `wire.PeerProtocol` is to one peer. It takes what happened
(a peer listed, offered, opened, sent bytes or closed; a piece checked; the time passed) and
answers with actions for its adapter (`actions.py`: send bytes, close a link, verify a piece,
open the store, report an event) and the time it next wants `handle_timer`. It reads no
clock and does no I/O: `swarm/node.py` drives it with aiortc links, signaling and threads,
and tests/test_swarm_core.py drives it with in-memory peers and a fake clock.

It owns each peer's `PeerProtocol`, connection `Slots`, the manifest's fetching and
timeouts; the pieces themselves (`Picker`, strikes, end-game cancels) are its
`PieceExchange` (exchange.py).
"""

from __future__ import annotations

from .. import events as ev
from .. import wire
from ..manifest import Manifest
from ..picker import Picker
from ..slots import BUSY, Slots
from . import actions as act
from .admission import Admission
from .exchange import PieceExchange
from .manifest_fetch import ManifestRejected, check_late_answer
from .patience import Patience
from .peer import Peer, second_connection
from .pex import PeerExchange
from .rates import Rate
from .serving import Serving

TICK = 0.5  # seconds between housekeeping rounds (`handle_timer`)
REFUSE_GRACE = 2.0  # seconds a refused peer gets to read our CLOSE and hang up itself
Block = wire.Block


class SwarmCore:
    """All peers of one content hash. Seeding: give the `manifest` (the store is open)."""

    def __init__(
        self,
        content_hash: bytes,
        peer_id: bytes,
        *,
        now: float,
        max_peers: int = 32, max_peers_per_address: int | None = None,
        manifest: Manifest | None = None, manifest_timeout: float = wire.MANIFEST_TIMEOUT,
        handshake_timeout: float = wire.HANDSHAKE_TIMEOUT,
    ) -> None:
        self.content_hash = content_hash
        # Seconds a peer gets for its handshake, and then for our manifest request.
        self.handshake_timeout, self.manifest_timeout = handshake_timeout, manifest_timeout
        self.peer_id = peer_id
        self.peers: dict[str, Peer] = {}
        self.slots = Slots(max_peers, max_peers_per_address)
        self.out = act.Outbox()
        self.pieces = PieceExchange(self.peers, self.out, self._drop)
        self.pieces.manifest = manifest
        self.admission = Admission(self.peers, self.out, self.slots, self._drop,
                                   self._new_peer)
        self.pex = PeerExchange(peer_id, self.peers, self.out, self.admission, self._drop,
                                lambda: self.wanting)
        self.serving = Serving(self.peers, self.pieces)
        self.bytes_up = self.bytes_down = 0
        self.up_rate, self.down_rate = Rate(now), Rate(now)
        self.received_from: dict[str, int] = {}
        "Bytes each peer gave us, for the summary."
        self.connections: dict[str, str] = {}
        "The connection kind of each peer in `received_from` (host/srflx/relay)."
        self.bad_manifests = 0
        self.patience = Patience(now)  # a download's `--timeout`
        self._opening = False  # a verified manifest arrived; its store is being opened
        self._next_tick = now + TICK
        x = self.pieces
        self._handlers = {
            wire.Handshake: self._on_handshake,
            wire.BlockReceived: self._on_block,
            wire.BlockRequested: self._on_request,
            wire.BlockCancelled: lambda p, e, now: None,  # `PeerProtocol` unqueued it
            wire.BlockRejected: x.on_reject, wire.HaveReceived: x.on_have,
            wire.BitfieldReceived: self._on_availability,
            wire.HaveAllReceived: self._on_availability,
            wire.ManifestRequested: self._on_manifest_request,
            wire.ManifestData: self._on_manifest_data,
            wire.Closed: self._on_close,
            **self.pex.handlers(),  # the peer exchange extension's messages
        }

    # -- outputs ---------------------------------------------------------------------------

    def next_action(self) -> act.Action | None:
        q = self.out.queue
        return q.popleft() if q else None

    def get_timer(self) -> float:
        return self._next_tick

    # -- queries ---------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest | None:
        """Set once the store for it is open (a seeder: from the start)."""
        return self.pieces.manifest

    @property
    def picker(self) -> Picker | None:
        """None while seeding (we have everything) or before the manifest."""
        return self.pieces.picker

    @property
    def complete(self) -> bool:
        return self.pieces.complete

    @property
    def rejections(self) -> int:
        """Bad manifests and bad pieces seen."""
        return self.bad_manifests + self.pieces.bad_pieces

    def wait_from(self, now: float) -> None:
        """The wait for help (a download's `--timeout`) starts now."""
        self.patience.restart(now)

    def idle_for(self, now: float) -> float:
        """Seconds since a peer last gave us something (patience.py): `--timeout`'s clock."""
        return self.patience.idle_for(bool(self.helpful_peers()), now)

    def usable_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.ready]

    def helpful_peers(self) -> list[Peer]:
        """The connected peers that hold off `--timeout` (PieceExchange.holding)."""
        return self.pieces.holding(self.usable_peers())

    def progress(self) -> ev.Progress:
        return ev.Progress(peers=len(self.usable_peers()), received=self.bytes_down,
                           rate=round(self.down_rate.value), sent=self.bytes_up,
                           **self.pieces.progress_fields())

    # -- signaling and link inputs (who may connect: `admission`) ------------------------

    def forget(self, peer: str, reason: str | None, now: float) -> None:
        """Drop `peer` (e.g. its signaling made no sense, or it left while connecting)."""
        p = self.peers.get(peer)
        if p is not None:
            self._drop(p, reason, now)

    def _new_peer(self, peer: str, offerer: bool, now: float) -> Peer:
        proto = wire.PeerProtocol(self.content_hash, self.peer_id)
        if self.manifest is not None:
            proto.set_local_manifest_size(len(self.manifest.encoded))
        return Peer(peer, proto, offerer=offerer, now=now)

    def peer_opened(self, peer: str, address: str | None, connection: str | None,
                    now: float, pair: str | None = None, key: str = "", protocol: str = "") -> None:
        """The data channel opened; `address` keys the per-address limit, `pair` is
        reported (local -> remote candidate), `key` names the connection the same way at
        both ends (see `_on_handshake`), `protocol` lists the offerer's extensions."""
        p = self.peers.get(peer)
        if p is None:
            return
        p.opened_at = p.last_data = now
        p.connection = connection or "unknown"
        p.pair = pair
        p.link_key = key
        if self.admission.opened(p, address, now, REFUSE_GRACE):
            self.out.send(p, p.proto.handshake())
            self.pex.opened(p, protocol)

    @property
    def wanting(self) -> bool:
        """We still want something from peers: the manifest, or pieces."""
        return self.manifest is None or (self.picker is not None and not self.picker.complete)

    def peer_closed(self, peer: str, now: float) -> None:
        """`peer`'s link closed. Still ours here: it ended without a CLOSE and without our
        deciding (we forget a peer as we close its link)."""
        p = self.peers.get(peer)
        if p is not None:
            p.closed = True
            if p.opened_at is not None and p.dropped is None:
                self.admission.connection_lost(p, now, wanting=self.wanting,
                                               has_everything=self.pieces.has_everything(p))
            self._drop(p, p.dropped, now)

    def data_received(self, peer: str, data: bytes | str, now: float) -> None:
        p = self.peers.get(peer)
        if p is None or p.refusing_until is not None:
            return
        try:
            event = p.proto.receive(data)
            self._handlers[type(event)](p, event, now)
        except wire.ProtocolError as e:
            self._drop(p, f"protocol error: {e}", now, ban=True)

    # -- messages --------------------------------------------------------------------------

    def _on_handshake(self, p: Peer, e: wire.Handshake, now: float) -> None:
        if e.peer_id == self.peer_id or e.peer_id in self.admission.banned_ids:
            raise wire.ProtocolError("connected to ourselves or to a dropped peer")
        if (dup := second_connection(p, self.peers.values())) is not None:
            self._drop(dup, "already connected to this peer", now)
            if dup is p:
                return
        self.pex.handshook(p, now)  # raises for a peer that is not the one introduced
        self.admission.reconnected(p.id)
        self.connections[p.id] = p.connection or "unknown"
        self.out.emit(ev.PeerJoined(peer=p.id, connection=self.connections[p.id], pair=p.pair))
        if self.manifest is not None:
            self.pieces.start(p)
        else:
            self._request_manifest(p, now)

    def _on_block(self, p: Peer, e: wire.BlockReceived, now: float) -> None:
        n = len(e.data)
        p.bytes_down += n
        p.rate.add(n)
        self.bytes_down += n
        self.down_rate.add(n)
        self.received_from[p.id] = self.received_from.get(p.id, 0) + n
        p.last_data = now
        self.slots.useful(p.id, now)
        self.patience.helped(p, now)
        self.pieces.on_block(p, e, now)

    def _on_request(self, p: Peer, e: wire.BlockRequested, now: float) -> None:
        if not self.pieces.can_serve(e.piece):
            self.out.send(p, p.proto.send_reject(e.piece, e.offset, e.length))
            return
        self.slots.useful(p.id, now)
        self.out.push(act.Upload(p.id))

    def _on_availability(self, p: Peer, e: wire.Event, now: float) -> None:
        if isinstance(e, wire.HaveAllReceived):
            p.has_all = True
        else:
            assert isinstance(e, wire.BitfieldReceived)
            p.pending_bitfield = e.bits
        if self.manifest is not None:
            self.pieces.attach(p, now)
        elif p.manifest.unavailable or not p.manifest.buf:
            self._request_manifest(p, now)

    def _request_manifest(self, p: Peer, now: float) -> None:
        if self.manifest is None and p.proto.manifest_wanted is None:
            self.out.send(p, p.manifest.request(p.proto, now))

    def _on_manifest_request(self, p: Peer, e: wire.ManifestRequested, now: float) -> None:
        # Answered like a block: behind the upload limit and the link's back-pressure,
        # one at a time, within the request budget `proto` holds the peer to.
        if self.manifest is not None:
            self.slots.useful(p.id, now)
        self.out.push(act.AnswerManifest(p.id))

    def _on_manifest_data(self, p: Peer, e: wire.ManifestData, now: float) -> None:
        try:
            if self.manifest is not None:
                p.manifest.asked_at = None
                check_late_answer(self.manifest, e)
                return
            if self._opening:
                p.manifest.asked_at = None
                return  # a verified manifest is already being set up
            m = p.manifest.received(e, self.content_hash)
        except ManifestRejected as err:
            self.bad_manifests += 1
            self.out.emit(ev.ManifestRejected(peer=p.id, reason=str(err)))
            raise wire.ProtocolError(f"sent a bad manifest: {err}") from None
        if e.total:
            self.patience.helped(p, now)  # manifest bytes; "none yet" is no help
        if m is not None:
            # `manifest` is set only once the store and picker exist (`store_opened`):
            # until then every peer is treated as before the manifest.
            self._opening = True
            self.out.emit(ev.Manifest(peer=p.id, name=m.name, size=m.size,
                                      piece_size=m.piece_size, pieces=m.piece_count))
            self.out.push(act.OpenStore(m))
        elif not p.manifest.unavailable:
            self._request_manifest(p, now)

    def _on_close(self, p: Peer, e: wire.Closed, now: float) -> None:
        p.dropped = p.dropped or f"peer closed: {e.reason}"
        self.admission.forget_redials(p.id)  # it hung up on purpose
        if e.reason.startswith(BUSY):
            self.admission.refused_busy(p, now)
        self._drop(p, None, now)

    # -- the content -----------------------------------------------------------------------

    def store_opened(self, manifest: Manifest, picker: Picker | None, *, offers_pieces: bool,
                     now: float) -> None:
        """The store for `manifest` is open: start exchanging pieces with every peer."""
        x = self.pieces
        x.manifest, x.picker, x.offers_pieces = manifest, picker, offers_pieces
        for p in list(self.peers.values()):
            p.proto.set_local_manifest_size(len(manifest.encoded))
            if p.ready:
                x.start(p)
                if p.proto.remote_bitfield_seen:
                    x.attach(p, now)
        x.refill_all(now)

    def piece_checked(self, piece: int, ok: bool, now: float) -> None:
        """The adapter checked (and, if `ok`, stored) a piece from a `Verify` action."""
        self.pieces.piece_checked(piece, ok, now)

    def set_priority(self, pieces: list[int], now: float) -> None:
        """Put these pieces first (streaming); cancel requests nobody needs any more."""
        self.pieces.set_priority(pieces, now)

    def set_cursor(self, piece: int, now: float) -> None:
        """A pipe's reader took every piece before `piece`: the window moves on."""
        self.pieces.set_cursor(piece, now)

    # -- uploading (`serving` answers; the adapter reads, rate-limits and sends) ---------

    def block_sent(self, peer: str, n: int) -> None:
        self.bytes_up += n
        self.up_rate.add(n)
        p = self.peers.get(peer)
        if p is not None:
            p.bytes_up += n

    # -- leaving ---------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        self.admission.accepting = False

    def close_all(self, now: float) -> None:
        for p in list(self.peers.values()):
            self._drop(p, None, now)

    def _drop(self, p: Peer, reason: str | None, now: float, *, ban: bool = False,
              warn: bool = False) -> None:
        """Forget a peer. `ban`: it misbehaved, never talk to it again; `warn`: tell the user."""
        if self.peers.get(p.id) is not p:
            return
        del self.peers[p.id]
        self.slots.remove(p.id)
        if p.id not in self.received_from:
            # The summary lists peers that gave us data; any other entry would outlive its
            # peer, and a seeder meets new peers for as long as it runs.
            self.connections.pop(p.id, None)
        if reason and p.dropped is None:
            p.dropped = reason
        if ban:
            self.admission.ban(p)
        if reason:
            self.out.send(p, p.proto.send_close(reason))
        self.pieces.detach(p)
        self.patience.left(p)
        self.pex.forget(p, reason, now)
        self.out.push(act.Close(p.id, linger=bool(reason)))
        if p.proto.remote is not None or ban or warn:
            self.out.emit(ev.PeerLeft(peer=p.id, received=p.bytes_down, sent=p.bytes_up,
                                   reason=reason or None))
        if reason and (ban or warn):
            self.out.emit(ev.Warning(message=f"dropped peer {p.id}: {reason}"))
        self.pieces.refill_all(now)

    # -- time ------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        if now < self._next_tick:
            return
        self._next_tick = now + TICK
        self.up_rate.update(now)
        self.down_rate.update(now)
        self._pace(now)
        self.patience.watch(bool(self.helpful_peers()), now)
        for p in list(self.peers.values()):
            self._check_deadlines(p, now)
        self.admission.handle_timer(now, wanting=self.wanting)
        self.pex.tick(now)
        self.pieces.expire(now)

    def _pace(self, now: float) -> None:
        k = self.picker
        for p in self.peers.values():
            if p.proto.requests or p.proto.serving or (k is not None and k.in_flight(p.id)):
                self.slots.useful(p.id, now)  # we serve it, or it serves us
            self.pieces.pace(p, p.rate.update(now))

    def _check_deadlines(self, p: Peer, now: float) -> None:
        if p.refusing_until is not None:
            if now >= p.refusing_until:
                self._drop(p, None, now)
        elif (p.opened_at is not None and p.proto.remote is None
              and now - p.opened_at >= self.handshake_timeout):
            if p.left_room:  # it left the room meanwhile (its process died): gone, not hostile
                self._drop(p, None, now)
            else:
                self._drop(p, f"no handshake within {self.handshake_timeout:g} s", now, ban=True)
        elif self.manifest is None and p.manifest.overdue(now, self.manifest_timeout):
            self._drop(p, "did not answer the manifest request", now, warn=True)
