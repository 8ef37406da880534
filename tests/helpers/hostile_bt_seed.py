"""A hostile BitTorrent seeder over aiortc for tests/test_webtorrent_fetch.py.

    hostile_bt_seed.py MODE FILE TRACKER_URL [OTHER_FILE]

Announces on TRACKER_URL like `p2p seed --torrent`, and prints the magnet link, but:
- `bad-piece`: serves zeros for every block (each piece fails its SHA-1);
- `bad-metadata`: announces under FILE's info hash and serves OTHER_FILE's info dict;
- `oversized`: answers the first REQUEST with a message longer than btwire allows.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from p2pcli import btwire as bt
from p2pcli import patches
from p2pcli.btfetch import Send
from p2pcli.btseed import BtUpload, Serve
from p2pcli.btsession import BtPeers, torrent_for
from p2pcli.btstore import TorrentFiles
from p2pcli.magnet import MagnetLink


class Hostile(BtUpload):
    def __init__(self, mode: str, *args) -> None:
        super().__init__(*args)
        self.mode = mode

    def received(self, peer: str, data: bytes, now: float) -> list:
        out = super().received(peer, data, now)
        if self.mode == "oversized":
            return [Send(peer, (bt.MAX_MESSAGE + 1).to_bytes(4, "big") + b"\x07" + bytes(1000))
                    if isinstance(a, Serve) else a for a in out]
        return out


async def main(mode: str, path: Path, url: str, other: Path | None) -> None:
    info, paths = torrent_for(path)
    files = TorrentFiles(info, paths)
    served = info
    if mode == "bad-metadata":
        assert other is not None
        served, _ = torrent_for(other)
        # Serve the other torrent's info dict under this one's info hash.
        served = type(served)(**{**served.__dict__, "info_hash": info.info_hash})
    up = Hostile(mode, served, b"-XX0000-" + bytes(12))
    read = (lambda i, b, n: bytes(n)) if mode == "bad-piece" else files.read
    peers = BtPeers(up, info.info_hash, [url], lambda ev: None, wanting=False,
                    left=lambda: 0, read=read)
    await peers.start()
    print(MagnetLink(info.info_hash, (url,)).uri(), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await peers.close()


if __name__ == "__main__":
    patches.apply(host_addresses=["127.0.0.1"])
    other = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], other))
