"""Serving our pieces to one peer: read from the page cache on the loop or else in a thread
(never a disk wait on the loop), under the upload limit, with the link's back-pressure, in
the order the peer asked (the core decides what is served)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from ..rtc import LinkClosed, PeerLink
from ..store import PartFile, SeedFile, SourceChanged
from .core import SwarmCore
from .limiter import RateLimiter

log = logging.getLogger(__name__)


class HasSource(Protocol):
    source: SeedFile | PartFile | None


class Uploader:
    """Carries out the core's `Upload` and `AnswerManifest` actions."""

    def __init__(self, core: SwarmCore, limiter: RateLimiter, owner: HasSource) -> None:
        self.core = core
        self.limiter = limiter
        self.owner = owner  # whose `source` we read: it is set once a download's store opens

    async def serve(self, peer: str, link: PeerLink, wake: asyncio.Event) -> None:
        """Serve the peer's requests in order: read, then the upload limit, then the
        link's back-pressure."""
        core = self.core
        while True:
            block = core.serving.next_upload(peer)
            if block is None:
                wake.clear()
                await wake.wait()
                continue
            data = await self._read(block)
            if data is None:
                reject = core.serving.cannot_serve(peer, block)
                if reject is None:
                    return
                with contextlib.suppress(LinkClosed):
                    link.send_nowait(reject)
                continue
            await self.limiter.take(len(data))
            msg = core.serving.piece_message(peer, block, data)
            if msg is None:
                return
            try:
                await link.send(msg)
            except LinkClosed:
                return
            core.block_sent(peer, len(data))
            # Yield once a block: a read from memory or the page cache, an unlimited upload
            # and a send under the high-water mark never suspend, and a run of queued
            # requests would hold up the loop (other peers, SACKs). It also keeps requests
            # that arrive faster than we answer piling up into the flood limit (wire.py).
            await asyncio.sleep(0)

    async def _read(self, block: tuple[int, int, int]) -> bytes | bytearray | None:
        piece, offset, length = block
        src = self.owner.source
        if src is None or not src.has(piece):  # e.g. a pipe download's spool moved past it
            return None
        try:
            cached = src.cache.get(piece) if isinstance(src, SeedFile) else None
            if cached is not None:
                return cached[offset : offset + length]
            # In the page cache (the usual case while serving): read here. A thread trip
            # per block, for 64 KiB that takes microseconds to copy, cost a third of the
            # seeder's CPU and slowed its answers (benchmarks/README.md, sixth pass).
            data = src.read_block_nowait(piece, offset, length)
            if data is not None:
                return data
            return await asyncio.to_thread(src.read_block, piece, offset, length)
        except SourceChanged:
            raise  # the file changed under a verified piece: the command stops
        except OSError as e:
            log.warning("read failed: %s", e)
            return None

    async def send_manifest(self, peer: str, link: PeerLink) -> None:
        answer = self.core.serving.manifest_answer(peer)
        if answer is None:
            return
        await self.limiter.take(len(answer))
        with contextlib.suppress(LinkClosed):
            await link.send(answer)
            self.core.serving.manifest_answered(peer)
