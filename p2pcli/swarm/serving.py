"""What we answer a peer's requests with (sans-IO). The adapter's uploader asks for the
next request, reads it, and turns the bytes into the message through here, so that
`PeerProtocol` checks every PIECE and REJECT answers a request the peer really made."""

from __future__ import annotations

from .. import wire
from .exchange import PieceExchange
from .peer import Peer


class Serving:
    """Requests and manifest requests of our peers, answered in order."""

    def __init__(self, peers: dict[str, Peer], pieces: PieceExchange) -> None:
        self.peers = peers
        self.pieces = pieces

    def next_upload(self, peer: str) -> wire.Block | None:
        """The peer's oldest request to serve now, or None."""
        p = self.peers.get(peer)
        return None if p is None else p.proto.next_request()

    def piece_message(self, peer: str, block: wire.Block, data: bytes | bytearray
                      ) -> bytes | None:
        """The PIECE answering `block` (None: the peer is gone)."""
        p = self.peers.get(peer)
        return None if p is None else p.proto.send_piece(block[0], block[1], data)

    def cannot_serve(self, peer: str, block: wire.Block) -> bytes | None:
        """The REJECT for a block we cannot read after all (None: the peer is gone)."""
        p = self.peers.get(peer)
        return None if p is None else p.proto.send_reject(*block)

    def manifest_answer(self, peer: str) -> bytes | None:
        """The answer to the peer's pending manifest request (None: nothing to answer)."""
        p = self.peers.get(peer)
        if p is None or p.proto.manifest_asked is None:
            return None
        m = self.pieces.manifest
        return p.proto.manifest_answer(m.encoded if m else None)

    def manifest_answered(self, peer: str) -> None:
        """Until now a second request would have been a protocol error: a peer cannot make
        us queue more than one answer."""
        p = self.peers.get(peer)
        if p is not None:
            p.proto.manifest_answered()
