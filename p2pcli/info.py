"""`info`: what a link holds and who seeds it, without downloading any piece.

Joins the swarm like a fetch, takes the manifest from the first peer that has it
(verified against the content hash), then watches for `LOOK_SECONDS` which peers answer
and which have every piece. The store it opens wants nothing (every piece skipped) and
offers nothing, so no REQUEST is ever sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from . import events as ev
from .events import EventSink
from .link import Target
from .manifest import Manifest
from .picker import Picker
from .store import PartFile
from .swarm import Swarm, SwarmConfig, no_peers_error

LOOK_SECONDS = 1.0  # after the manifest: long enough for the other peers' handshakes
STEP = 0.1


class NoStore(PartFile):
    """A store that holds nothing and wants nothing: `info` never downloads a piece."""

    keeps_pieces = False

    def __init__(self, manifest: Manifest) -> None:  # no file at all
        self.path = Path("-")
        self.manifest = manifest
        self.present = bytearray(0)
        self.finished = True
        self._init_checks(None, None)

    def scan(self) -> list[int]:
        return []

    def has(self, piece: int) -> bool:
        return False

    def close(self) -> None:
        pass


def info_event(m: Manifest, peers: int = 0, seeders: int = 0) -> ev.Info:
    return ev.Info(
        hash=m.content_id, name=m.name, size=m.size, piece_size=m.piece_size,
        pieces=m.piece_count, version=m.version,
        files=[{"index": i, "path": f.path, "size": f.size} for i, f in enumerate(m.files)],
        folders=[e.path for e in m.entries or () if e.folder],
        peers=peers, seeders=seeders,
    )


async def info(target: Target, config: SwarmConfig, emit: EventSink) -> ev.Info:
    """Look up `target`; returns (and emits) the `info` event. Raises P2PError subclasses."""
    async def open_store(m: Manifest) -> tuple[PartFile, Picker]:
        picker = Picker([m.piece_length(i) for i in range(m.piece_count)], m.piece_size)
        picker.skip(range(m.piece_count))
        return NoStore(m), picker

    swarm = Swarm(target.content_hash, config, emit, open_store=open_store)
    try:
        await swarm.start()
        core = swarm.core
        while not swarm.manifest_ready.is_set():
            if swarm.fatal is not None:
                raise swarm.fatal
            # As a fetch's: a peer that only handshook (or said busy) holds nothing off.
            if core.idle_for(time.monotonic()) > config.timeout:
                raise no_peers_error(core, config.timeout, swarm.turn_urls())
            await asyncio.sleep(STEP)
        seen: dict[str, bool] = {}
        until = time.monotonic() + LOOK_SECONDS
        while True:
            for p in core.usable_peers():
                seen[p.id] = seen.get(p.id, False) or core.pieces.has_everything(p)
            if time.monotonic() >= until:
                break
            await asyncio.sleep(STEP)
        m = swarm.manifest
        assert m is not None
        out = info_event(m, len(seen), sum(seen.values()))
        emit(out)
        return out
    finally:
        swarm.core.stop_accepting()
        await swarm.close()
