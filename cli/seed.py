"""`p2p seed`: coming with its own issue."""

from __future__ import annotations

import typer

from p2pcli.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("seed", help="Not available yet in this version.")
    def _seed() -> None:
        raise UsageError("'p2p seed' is not implemented yet in this version")
