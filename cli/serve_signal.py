"""`p2p serve-signal`: run the signaling server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from cli.common import JsonOpt, QuietOpt
from p2pcli.errors import UsageError


class _ServerLog:
    """Render the server's lifecycle events: a line of text, NDJSON, or nothing."""

    def __init__(self, *, quiet: bool, json: bool) -> None:
        self.quiet = quiet
        self.json = json
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.json:
            ev = {"t": round(time.monotonic() - self.started, 3), **ev}
            sys.stderr.buffer.write(orjson.dumps(ev) + b"\n")
            sys.stderr.buffer.flush()
            return
        if self.quiet:
            return
        kind = ev["event"]
        if kind == "listening":
            self.console.print(
                f"signaling server listening on [bold]{ev['url']}[/] "
                f"(bound to {ev['host']}:{ev['port']}); Ctrl-C to stop"
            )
        elif kind == "stopping":
            s = ev["stats"]
            self.console.print(
                f"stopping: {s['peers']} peers connected, {s['relayed']} messages relayed "
                f"in {s['uptime']:.0f}s"
            )
        elif kind == "library-error":
            self.console.print(f"[yellow]warning:[/] {ev['source']}: {ev['message']}")


def register(app: typer.Typer) -> None:
    @app.command(
        "serve-signal",
        help=(
            "Run a signaling server that peers use to find each other by content hash.\n\n"
            "Speaks Socket.IO at /socket.io/ (p2p, and socket.io-client v4 over WebSocket or "
            "HTTP long-polling) and plain WebSocket JSON at /ws; GET /stats and GET /healthz "
            "report on it. The protocol is in docs/SIGNALING.md. Logs go to stderr. "
            "Stops cleanly on Ctrl-C or SIGTERM."
        ),
    )
    def serve_signal(
        host: Annotated[
            str,
            typer.Option(
                "--host",
                envvar="P2P_SIGNAL_HOST",
                help="Address to listen on; 0.0.0.0 is every IPv4 interface, :: every IPv6 one.",
            ),
        ] = "0.0.0.0",
        port: Annotated[
            int,
            typer.Option(
                "--port",
                envvar="PORT",
                min=0,
                max=65535,
                help="TCP port to listen on (0: any free port, printed at start).",
            ),
        ] = 8080,
        cors_origin: Annotated[
            list[str] | None,
            typer.Option(
                "--cors-origin",
                envvar="P2P_CORS_ORIGINS",
                help="Web page origin allowed to connect, like https://example.org. "
                "Repeatable (space-separated in the variable). Default: any origin.",
                show_default=False,
            ),
        ] = None,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
    ) -> None:
        from p2pcli.signaling.server import run_signal_server

        log = _ServerLog(quiet=quiet, json=json)
        try:
            run_signal_server(host, port, cors_origins=cors_origin or None, log=log)
        except OSError as e:
            raise UsageError(
                f"cannot listen on {host}:{port} ({e.strerror or e}); "
                "choose another --port or --host"
            ) from None
