"""`p2p serve-signal`: placeholder until the signaling server lands."""

from __future__ import annotations

import typer

from p2pcli.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("serve-signal", help="Run a signaling server (not available yet).")
    def _serve() -> None:
        raise UsageError("'p2p serve-signal' is not implemented yet in this version")
