"""`p2p fetch`: coming with its own issue."""

from __future__ import annotations

import typer

from p2pcli.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("fetch", help="Not available yet in this version.")
    def _fetch() -> None:
        raise UsageError("'p2p fetch' is not implemented yet in this version")
