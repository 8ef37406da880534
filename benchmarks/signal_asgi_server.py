"""The signaling hub served by uvicorn through python-socketio's ASGI app.

Only for benchmarks/signal_load.py (--server asgi / asgi-plain), to compare uvicorn with
aiohttp under the same load; `p2p serve-signal` keeps whichever measured faster
(docs/SIGNALING.md, "Performance"). Serves Socket.IO and GET /stats, not /ws.

    python benchmarks/signal_asgi_server.py PORT
"""

from __future__ import annotations

import sys

import orjson
import socketio
import uvicorn

from p2pcli.signaling.server import SignalHub


def main() -> None:
    port = int(sys.argv[1])
    hub = SignalHub(async_mode="asgi")

    async def stats_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = orjson.dumps(hub.stats())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app = socketio.ASGIApp(hub.sio, other_asgi_app=stats_app)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="websockets",
        # The same choice as on aiohttp: compressing ~200-byte messages costs more CPU
        # than it saves bytes.
        ws_per_message_deflate=False, log_level="warning", access_log=False,
    )


if __name__ == "__main__":
    main()
