"""The signaling hub on aiohttp without the FastSocket transport (stock engine.io I/O).

Only for benchmarks/signal_load.py (--server aiohttp-plain): shows what eio_websocket.py
buys, everything else equal (orjson, inline handlers, direct engine.io sends, uvloop).

    python benchmarks/signal_plain_server.py PORT
"""

from __future__ import annotations

import sys

from p2pcli.signaling.server import SignalHub, make_app, run_event_loop, start_signal_server


async def _serve(port: int) -> None:
    import asyncio

    app = make_app(SignalHub(fast_websocket=False))
    server = await start_signal_server("127.0.0.1", port, app=app)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    run_event_loop(_serve(int(sys.argv[1])))
