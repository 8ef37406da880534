"""Signaling: how peers that want the same content find each other and trade WebRTC offers.

- `schema`: validation of event payloads (sans-IO).
- `rooms`: room membership, the relay rule and the counters (sans-IO).
- `server`: the Socket.IO + plain-WebSocket server on aiohttp (`p2p serve-signal`, and
  the seeder's embedded server).
- `client`: the Socket.IO client our peers use.

docs/SIGNALING.md specifies the protocol. Nothing is imported here, so a client does not
pay for loading the server and the other way round.
"""
