"""`fetch`: download one content hash from the swarm, verified, to a file or in order to a pipe.

The download itself (store, wait, end) is `download.Download`, shared with `stream`.
"""

from __future__ import annotations

import asyncio

from . import events as ev
from .download import Download, FetchOptions, ReaderGone
from .events import EventSink
from .link import Target
from .swarm import SwarmConfig

__all__ = ["FetchOptions", "fetch"]


async def fetch(
    target: Target, config: SwarmConfig, opts: FetchOptions, emit: EventSink
) -> ev.Event:
    """Download `target`; returns the summary event. Raises P2PError subclasses."""
    dl = Download(target.content_hash, config, opts, emit)
    swarm = dl.swarm
    dl.check_output_early()
    reporter = asyncio.ensure_future(dl.report())
    try:
        await dl.start()
        while dl.done is None:
            await dl.step()
        if opts.seed_after:
            dl.serve_from_final()
            emit(ev.Seeding(hash=swarm.content_id))
            while swarm.fatal is None:
                await swarm.fatal_event.wait()
            raise swarm.fatal
        return dl.done
    except ReaderGone:
        emit(ev.ReaderGone(written_pieces=dl.written))
        return ev.ReaderGone(written_pieces=dl.written)
    finally:
        reporter.cancel()
        await dl.close()
