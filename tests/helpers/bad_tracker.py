"""A WebTorrent tracker that misbehaves, for tests/test_tracker_meet.py.

    python bad_tracker.py MODE PORT

MODE: `silent` (takes the WebSocket, never answers), `garbage` (answers every message
with text that is not a tracker message), `refuse` (answers with a failure reason),
`blackhole` (a TCP port that never answers the HTTP upgrade). Prints "ready" when
listening on 127.0.0.1:PORT.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from aiohttp import web


async def main(mode: str, port: int) -> None:
    if mode == "blackhole":
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.listen(16)  # the kernel completes TCP handshakes; nobody reads
        print("ready", flush=True)
        await asyncio.Event().wait()

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for _ in sock:
            if mode == "garbage":
                await sock.send_str("<html>502 Bad Gateway</html>")
            elif mode == "refuse":
                await sock.send_str('{"failure reason": "info_hash is not allowed here"}')
        return sock

    app = web.Application()
    app.router.add_get("/{tail:.*}", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
