"""A requester for tests: asks every peer for blocks scattered over the whole file.

Not a product feature. Usage: python scatter_peer.py SIGNAL_URL FILE ROUNDS BLOCK
FILE is a local copy of the shared file (to know the content hash and to check answers).
Each round asks for one BLOCK-byte block of every piece, pieces in a shuffled order and the
offset inside the piece moved on each round, a few requests in flight at a time: the
pattern that defeats a cache of whole pieces. Prints one JSON line on stdout when done:
{"received": bytes, "bad": blocks that differ from FILE, "rejected": requests refused}.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from p2pcli import patches, wire
from p2pcli.hashing import hash_file
from p2pcli.rtc import PeerLink
from p2pcli.signaling.client import SignalHandlers, SignalingClient

IN_FLIGHT = 8


async def main(url: str, path: str, rounds: int, block: int) -> None:
    patches.apply(host_addresses=["127.0.0.1"])  # the tuned stack, as the CLI runs it
    m = hash_file(path, use_cache=False)
    peer_id = os.urandom(16)
    fd = os.open(path, os.O_RDONLY)
    rng = random.Random(3)
    links: dict[str, PeerLink] = {}
    finished: asyncio.Future = asyncio.get_running_loop().create_future()
    tasks: set[asyncio.Task] = set()

    def wanted() -> list[tuple[int, int, int]]:
        out = []
        for r in range(rounds):
            order = list(range(m.piece_count))
            rng.shuffle(order)
            for i in order:
                length = m.piece_length(i)
                n = min(block, length)
                off = ((r * 7919 * block) % max(1, length - n + 1))
                out.append((i, off, n))
        return out

    async def run(link: PeerLink) -> None:
        if not await link.wait_open(15):
            return
        proto = wire.PeerProtocol(m.content_hash, peer_id)
        proto.set_geometry(wire.Geometry(m.piece_count, m.piece_size, m.size))
        link.send_nowait(proto.handshake())
        queue: asyncio.Queue = asyncio.Queue()
        link.on_message = queue.put_nowait
        todo = wanted()
        received = bad = rejected = 0
        started = False
        in_flight = 0
        while not link.closed.is_set() and (todo or in_flight or not started):
            if started:
                while todo and in_flight < IN_FLIGHT:
                    link.send_nowait(proto.send_request(*todo.pop()))
                    in_flight += 1
            try:
                data = await asyncio.wait_for(queue.get(), 1)
            except TimeoutError:
                continue
            try:
                ev = proto.receive(data)
            except wire.ProtocolError as e:
                print(f"protocol error: {e}", file=sys.stderr, flush=True)
                return
            if isinstance(ev, wire.Handshake):
                link.send_nowait(wire.encode_bitfield(bytes(wire.bitfield_bytes(m.piece_count))))
            elif isinstance(ev, wire.HaveAllReceived | wire.BitfieldReceived):
                started = True
            elif isinstance(ev, wire.BlockReceived):
                in_flight -= 1
                received += len(ev.data)
                if ev.data != os.pread(fd, len(ev.data), ev.piece * m.piece_size + ev.offset):
                    bad += 1
            elif isinstance(ev, wire.BlockRejected):
                in_flight -= 1
                rejected += 1
        if started and not finished.done():
            finished.set_result({"received": received, "bad": bad, "rejected": rejected})

    async def on_signal(kind: str, peer: str, data: dict) -> None:
        if kind == "offer":
            link = links[peer] = PeerLink.create([])
            answer = await link.answer_offer(data["offer"])
            await client.send("answer", peer, {"hash": m.content_id, "answer": answer})
            tasks.add(asyncio.ensure_future(run(link)))
        elif kind == "answer" and peer in links:
            await links[peer].accept_answer(data["answer"])

    async def on_peer_list(peers: list[str]) -> None:
        for peer in peers:
            link = links[peer] = PeerLink.create([])
            offer = await link.make_offer()
            await client.send("offer", peer, {"hash": m.content_id, "offer": offer})
            tasks.add(asyncio.ensure_future(run(link)))

    client = SignalingClient([url], SignalHandlers(peer_list=on_peer_list, signal=on_signal))
    await client.connect()
    await client.announce(m.content_id, peer_id.hex())
    result = await finished
    print(json.dumps(result), flush=True)
    for link in links.values():
        await link.close()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
