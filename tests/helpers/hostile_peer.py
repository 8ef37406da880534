"""A misbehaving peer for tests: joins a swarm, speaks the wire protocol, then misbehaves.

Not a product feature. Usage: python hostile_peer.py SIGNAL_URL FILE MODE
It prints its signaling id on stdout once announced, then runs until killed. On stderr, a
JSON line per connection that ends: {"peer", "received"} (bytes received on that link).

As a source (what a downloader sees):
  corrupt      serves blocks with one byte flipped
  silent       says it has everything, never answers a request
  liar         says it has everything, rejects every request
  badmanifest  answers manifest requests with another file's manifest
  crafted      FILE holds raw manifest bytes: announces their hash and serves them as the
               manifest (a hostile folder share: `../`, absolute paths...)
  wronghash    handshakes for different content
  mute         says it has everything, never answers a manifest request
  vanish       serves honestly, but its first link to each peer ends after VANISH_AFTER
               bytes of blocks without a CLOSE (the peer connection closes, as when a
               network blips or an SCTP association gives up); it stays in the room and
               serves in full whoever connects again
As a requester (what a seeder sees):
  garbage      sends random bytes after the handshake
  oversized    sends one 300 KiB message
  outside      requests a piece beyond the end of the file
  flood        sends 2000 requests at once
  nohandshake  opens the channel and says nothing
  idle         handshakes, then says nothing: has nothing, asks for nothing
  idle-rejoin  idle, and offers again a second after each time it is dropped
  manifestflood  sends 3000 manifest requests at once
  manifestloop   asks for the manifest again each time it arrives, 3000 times
  leech        has nothing, downloads from peers that have everything, block after block,
               forever (a useful peer to a seeder); hangs up on peers that lack the manifest
Peer exchange (it offers "p2p/1 pex", docs/PROTOCOL.md 3.5; prints each RELAY it is sent):
  pexnames     lists 50 made-up peer ids in a PEX, relays nothing
  pexflood     sends PEX after PEX
  relayflood   sends 100 RELAYs at once
  forgedrelay  relays offers (unparsable SDP) from made-up peers, and answers to offers
               nobody made, within the signal budget
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys

from p2pcli import patches, wire
from p2pcli.hashing import hash_file
from p2pcli.manifest import Manifest
from p2pcli.rtc import PeerLink
from p2pcli.signaling.client import SignalHandlers, SignalingClient

VANISH_AFTER = 200 * 1024


async def main(url: str, path: str, mode: str) -> None:
    patches.apply(host_addresses=["127.0.0.1"])  # the tuned stack, as the CLI runs it
    m = hash_file(path, use_cache=False)
    # Another file's manifest, same shape: one byte of the name differs.
    other = Manifest.create("x" + m.name[1:], m.size, m.piece_size, list(m.piece_hashes))
    crafted = open(path, "rb").read() if mode == "crafted" else None
    content_id = hashlib.sha256(crafted).hexdigest() if crafted else m.content_id
    peer_id = os.urandom(16)
    links: dict[str, PeerLink] = {}
    tasks: set[asyncio.Task] = set()  # keep references so tasks are not collected
    fd = os.open(path, os.O_RDONLY)
    rng = random.Random(1)
    vanished: set[str] = set()  # peers whose first link we ended ("vanish")

    async def attack(link: PeerLink) -> None:
        if mode == "garbage":
            for _ in range(20):
                link.send_nowait(bytes([0xEE]) + rng.randbytes(rng.randrange(1, 200)))
        elif mode == "oversized":
            # Lift aiortc's own guard so the oversized message really goes out.
            link.pc.sctp._remote_max_message_size = None  # type: ignore[union-attr]
            link.send_nowait(wire.encode_request(0, 0, 16) + bytes(300 * 1024))
        elif mode == "outside":
            link.send_nowait(wire.encode_request(m.piece_count + 5, 0, 1024))
        elif mode == "flood":
            for i in range(2000):
                link.send_nowait(wire.encode_request(i % m.piece_count, 0, 1024))
        elif mode == "manifestflood":
            for _ in range(3000):
                link.send_nowait(wire.encode_manifest_request(0, wire.MANIFEST_CHUNK))
        elif mode == "manifestloop":
            link.send_nowait(wire.encode_manifest_request(0, wire.MANIFEST_CHUNK))
        elif mode == "pexnames":
            link.send_nowait(wire.encode_pex([os.urandom(16) for _ in range(50)]))
        elif mode == "pexflood":
            for _ in range(20):
                link.send_nowait(wire.encode_pex([os.urandom(16)]))
        elif mode == "relayflood":
            for _ in range(100):
                link.send_nowait(wire.encode_relay(os.urandom(16), wire.Signal.OFFER, "v=0"))
        elif mode == "forgedrelay":
            for i in range(wire.SIGNAL_BURST):
                kind = wire.Signal.OFFER if i % 2 else wire.Signal.ANSWER
                link.send_nowait(wire.encode_relayed(os.urandom(16), kind, "v=0 forged"))

    def next_block(proto: wire.PeerProtocol, n: int) -> bytes:
        block = min(m.piece_size, proto.max_block)
        blocks = [(p, o) for p in range(m.piece_count)
                  for o in range(0, m.piece_length(p), block)]
        piece, offset = blocks[n % len(blocks)]
        return proto.send_request(piece, offset, min(block, m.piece_length(piece) - offset))

    async def serve(link: PeerLink, peer: str) -> None:
        try:
            await converse(link, peer)
            await link.closed.wait()
        finally:
            print(json.dumps({"peer": peer, "received": link.bytes_received}), file=sys.stderr,
                  flush=True)
            await link.close()
        if mode == "idle-rejoin" and links.get(peer) is link:
            await asyncio.sleep(1)
            await offer(peer)

    async def converse(link: PeerLink, peer: str) -> None:
        if not await link.wait_open(15):
            print("hostile: the data channel did not open within 15 s", file=sys.stderr,
                  flush=True)
            return
        if mode == "nohandshake":
            return
        idle = mode.startswith("idle")
        loops = 0
        chash = os.urandom(32) if mode == "wronghash" else bytes.fromhex(content_id)
        proto = wire.PeerProtocol(chash, peer_id)
        if PEX_MODE:
            proto.offer_extensions(frozenset({wire.PEX}))
        proto.set_geometry(wire.Geometry(m.piece_count, m.piece_size, m.size))
        link.send_nowait(proto.handshake())
        queue: asyncio.Queue = asyncio.Queue()
        link.on_message = queue.put_nowait
        received = 0
        while not link.closed.is_set():
            try:
                data = await asyncio.wait_for(queue.get(), 1)
            except TimeoutError:
                continue
            received += 1
            try:
                # Our own requests are not recorded in `proto` (we break the rules on
                # purpose): read the answers without it.
                ev = wire.decode(data) if mode.startswith("manifest") and proto.remote \
                    else proto.receive(data)
            except wire.ProtocolError as e:
                # Said on stderr: a run where the attack never started (seen once in CI: the
                # tab never dropped us) then shows why in the failed test's report.
                what = data[:16].hex() if isinstance(data, bytes) else repr(data[:16])
                print(f"hostile: protocol error, attack stopped: {e} (message {received} of "
                      f"this link: {len(data)} bytes, {what})", file=sys.stderr, flush=True)
                return
            if idle:
                continue  # it has nothing and wants nothing
            if mode == "leech":
                if isinstance(ev, wire.ManifestRequested):
                    await link.close()  # a fetcher: nothing to take from it
                    return
                if isinstance(ev, wire.HaveAllReceived | wire.BlockReceived):
                    loops += 1
                    link.send_nowait(next_block(proto, loops))
                continue
            if isinstance(ev, wire.RelayRequested):
                print(f"hostile: asked to relay to {ev.target.hex()}", file=sys.stderr,
                      flush=True)
                continue
            if PEX_MODE and isinstance(ev, wire.ExtensionsAccepted):
                print(f"hostile: {peer} speaks pex, attacking ({mode})", file=sys.stderr,
                      flush=True)
                await attack(link)  # it speaks pex: now the attack is in the protocol
                continue
            if isinstance(ev, wire.Handshake):
                print(f"hostile: handshake received, attacking ({mode})", file=sys.stderr,
                      flush=True)
                link.send_nowait(wire.encode_have_all())
                if not PEX_MODE:
                    await attack(link)
            elif isinstance(ev, wire.ManifestData) and mode == "manifestloop":
                loops += 1
                if loops < 3000:
                    link.send_nowait(wire.encode_manifest_request(0, wire.MANIFEST_CHUNK))
            elif isinstance(ev, wire.ManifestRequested) and mode == "mute":
                continue
            elif isinstance(ev, wire.ManifestRequested):
                enc = other.encoded if mode == "badmanifest" else crafted or m.encoded
                chunk = enc[ev.offset : ev.offset + ev.length]
                link.send_nowait(wire.encode_manifest_data(len(enc), ev.offset, chunk))
            elif isinstance(ev, wire.BlockRequested):
                if mode == "silent":
                    continue
                if mode == "liar":
                    link.send_nowait(wire.encode_reject(ev.piece, ev.offset, ev.length))
                    continue
                block = bytearray(os.pread(fd, ev.length, ev.piece * m.piece_size + ev.offset))
                if mode == "corrupt":
                    block[0] ^= 0xFF
                await link.send(wire.encode_piece_header(ev.piece, ev.offset) + bytes(block))
                if mode == "vanish" and peer not in vanished and link.bytes_sent > VANISH_AFTER:
                    vanished.add(peer)
                    print(f"hostile: vanishing from {peer} after {link.bytes_sent} bytes",
                          file=sys.stderr, flush=True)
                    await link.close()  # no CLOSE message: the connection just ends
                    return

    async def on_signal(kind: str, peer: str, data: dict) -> None:
        if kind == "offer":
            link = links[peer] = PeerLink.create([])
            answer = await link.answer_offer(data["offer"])
            await client.send("answer", peer, {"hash": content_id, "answer": answer})
            tasks.add(asyncio.ensure_future(serve(link, peer)))
        elif kind == "answer" and peer in links and isinstance(data.get("answer"), dict):
            await links[peer].accept_answer(data["answer"])
        elif kind == "answer" and peer in links:
            await links[peer].close()  # busy: no slot for us

    async def offer(peer: str) -> None:
        link = links[peer] = PeerLink.create([])
        sdp = await link.make_offer("p2p/1 pex" if PEX_MODE else wire.CHANNEL_PROTOCOL)
        await client.send("offer", peer, {"hash": content_id, "offer": sdp})
        tasks.add(asyncio.ensure_future(serve(link, peer)))

    async def on_peer_list(peers: list[str]) -> None:
        for peer in peers:
            await offer(peer)

    client = SignalingClient([url], SignalHandlers(peer_list=on_peer_list, signal=on_signal))
    await client.connect()
    await client.announce(content_id, peer_id.hex())
    print(client.sid, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    PEX_MODE = sys.argv[3].startswith(("pex", "relay", "forged"))
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
