"""`p2p stream`: coming with its own issue."""

from __future__ import annotations

import typer

from p2pcli.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("stream", help="Not available yet in this version.")
    def _stream() -> None:
        raise UsageError("'p2p stream' is not implemented yet in this version")
