"""Fetching the manifest from one peer, chunk by chunk, and checking it (sans-IO).

A downloader knows only the content hash. It asks a peer for the manifest in
`wire.MANIFEST_CHUNK` slices, one request at a time, and verifies the whole against the
hash before anything else of that peer's is believed.
"""

from __future__ import annotations

from .. import wire
from ..errors import P2PError
from ..manifest import Manifest, decode_verified


class ManifestFetch:
    """One peer's answers to our manifest requests."""

    def __init__(self) -> None:
        self.buf = bytearray()
        "The manifest bytes received so far, from offset 0."
        self.unavailable = False
        "The peer answered that it has no manifest yet (its bitfield will say when)."
        self.asked_at: float | None = None
        "When our unanswered request went out (None: nothing outstanding)."

    def request(self, proto: wire.PeerProtocol, now: float) -> bytes:
        """The next MANIFEST_REQUEST: the bytes after those we have."""
        self.unavailable = False
        self.asked_at = now
        return proto.send_manifest_request(len(self.buf), wire.MANIFEST_CHUNK)

    def overdue(self, now: float, timeout: float = wire.MANIFEST_TIMEOUT) -> bool:
        return self.asked_at is not None and now - self.asked_at > timeout

    def received(self, ev: wire.ManifestData, content_hash: bytes) -> Manifest | None:
        """Take one answer: the verified manifest once complete, else None (ask again
        unless `unavailable`). Raises `ManifestRejected` for a manifest that fails its
        hash and `wire.ProtocolError` for one too large to be real."""
        self.asked_at = None
        if ev.total == 0:
            self.unavailable = True
            self.buf.clear()
            return None
        if ev.total > wire.MAX_MANIFEST:
            raise wire.ProtocolError(f"manifest of {ev.total} bytes is too large")
        self.buf += ev.data
        if len(self.buf) < ev.total:
            return None
        try:
            return decode_verified(bytes(self.buf), content_hash)
        except P2PError as e:
            raise ManifestRejected(e.message) from None


class ManifestRejected(wire.ProtocolError):
    """The assembled manifest does not match the content hash."""


def check_late_answer(manifest: Manifest, ev: wire.ManifestData) -> None:
    """An answer to a request sent before we had the manifest must still agree with it."""
    enc = manifest.encoded
    if ev.total and (
        ev.total != len(enc) or enc[ev.offset : ev.offset + len(ev.data)] != ev.data
    ):
        raise ManifestRejected("it differs from the verified one")
