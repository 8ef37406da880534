"""`p2p info magnet:?...|FILE.torrent`: what a torrent holds and who seeds it, without
downloading any piece.

Joins the torrent's WebSocket trackers like a fetch (btsession.BtPeers); a magnet's info
dict comes from the first peers that offer it (ut_metadata, checked against the info hash
by btfetch.BtDownload), a .torrent's from the file. The download wants no piece (`want`
returns none), so no REQUEST is ever sent. Then, for `info.LOOK_SECONDS` as `p2p info` of a
p2p link does, it counts the peers that answered our handshake and those whose bitfield
says they have every piece. The answer is the same `info` event a p2p link gets, its
`hash` the info hash in hex.
"""

from __future__ import annotations

import asyncio
import time

from . import events as ev
from .btfetch import BtDownload
from .btview import TorrentView
from .events import EventSink
from .magnet import MagnetLink, TorrentInfo

STEP = 0.1


async def info_magnet(link: MagnetLink, trackers: list[str], *, emit: EventSink,
                      timeout: float, info: TorrentInfo | None = None) -> ev.Info:
    """Look `link` up through `trackers`; returns (and emits) the `info` event. NoPeers
    (exit 3) when no peer sent a magnet's metadata within `timeout`; a .torrent whose
    swarm nobody answers is reported with 0 peers (its contents are known)."""
    from .btsession import BtPeers, await_metadata
    from .info import LOOK_SECONDS, info_event
    from .rendezvous.trackerclient import tracker_peer_id

    dl = BtDownload(link, tracker_peer_id(), info=info, want=lambda _: [])
    answered = False

    def sink(e: ev.Event) -> None:
        # Once answered, our own hanging up is no news ("the last peer left; waiting").
        if not (answered and isinstance(e, ev.PeerLeft)):
            emit(e)

    peers = BtPeers(dl, link.info_hash, trackers, sink, wanting=True,
                    left=lambda: dl.info.total_length if dl.info else link.exact_length)
    try:
        await peers.start()
        until = time.monotonic() + timeout
        # A magnet needs a peer for its metadata (each piece of it restarts the wait);
        # a .torrent, only to say who seeds it.
        await await_metadata(dl, timeout)
        while not dl.peers_seen() and time.monotonic() <= until:
            await asyncio.sleep(STEP)
        seen: dict[str, bool] = {}
        look_until = time.monotonic() + LOOK_SECONDS
        while True:
            for peer, full in dl.peers_seen().items():
                seen[peer] = seen.get(peer, False) or full
            if time.monotonic() >= look_until:
                break
            await asyncio.sleep(STEP)
        assert dl.info is not None
        out = info_event(TorrentView(dl.info), len(seen),  # type: ignore[arg-type]
                         sum(seen.values()))
        emit(out)
        answered = True
        return out
    finally:
        await peers.close()
