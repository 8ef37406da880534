"""A misbehaving peer for tests: speaks the wire protocol, then lies.

Not a product feature. Usage: python hostile_peer.py SIGNAL_URL FILE MODE
Modes: corrupt (flips a byte in every block it sends). It prints its signaling id on
stdout once announced, and serves until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from p2pcli import wire
from p2pcli.hashing import hash_file
from p2pcli.ice import set_host_addresses
from p2pcli.rtc import PeerLink
from p2pcli.signaling.client import SignalHandlers, SignalingClient


async def main(url: str, path: str, mode: str) -> None:
    set_host_addresses(["127.0.0.1"])
    m = hash_file(path, use_cache=False)
    content_id = m.content_id
    peer_id = os.urandom(16)
    links: dict[str, PeerLink] = {}
    tasks: set[asyncio.Task] = set()  # keep references so tasks are not collected
    fd = os.open(path, os.O_RDONLY)

    async def serve(link: PeerLink) -> None:
        if not await link.wait_open(15):
            return
        proto = wire.PeerProtocol(m.content_hash, peer_id)
        proto.set_geometry(wire.Geometry(m.piece_count, m.piece_size, m.size))
        link.send_nowait(proto.handshake())
        queue: asyncio.Queue = asyncio.Queue()
        link.on_message = queue.put_nowait
        while not link.closed.is_set():
            try:
                data = await asyncio.wait_for(queue.get(), 1)
            except TimeoutError:
                continue
            try:
                ev = proto.receive(data)
            except wire.ProtocolError:
                return
            if isinstance(ev, wire.Handshake):
                link.send_nowait(wire.encode_have_all())
            elif isinstance(ev, wire.ManifestRequested):
                enc = m.encoded
                chunk = enc[ev.offset : ev.offset + ev.length]
                link.send_nowait(wire.encode_manifest_data(len(enc), ev.offset, chunk))
            elif isinstance(ev, wire.BlockRequested):
                block = bytearray(os.pread(fd, ev.length, ev.piece * m.piece_size + ev.offset))
                if mode == "corrupt":
                    block[0] ^= 0xFF
                await link.send(wire.encode_piece_header(ev.piece, ev.offset) + bytes(block))

    async def on_signal(kind: str, peer: str, data: dict) -> None:
        if kind == "offer":
            link = links[peer] = PeerLink.create([])
            answer = await link.answer_offer(data["offer"])
            await client.send("answer", peer, {"hash": content_id, "answer": answer})
            tasks.add(asyncio.ensure_future(serve(link)))
        elif kind == "answer" and peer in links:
            await links[peer].accept_answer(data["answer"])

    async def on_peer_list(peers: list[str]) -> None:
        for peer in peers:
            link = links[peer] = PeerLink.create([])
            offer = await link.make_offer()
            await client.send("offer", peer, {"hash": content_id, "offer": offer})
            tasks.add(asyncio.ensure_future(serve(link)))

    client = SignalingClient([url], SignalHandlers(peer_list=on_peer_list, signal=on_signal))
    await client.connect()
    await client.announce(content_id, peer_id.hex())
    print(client.sid, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
