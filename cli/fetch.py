"""`p2p fetch HASH_OR_LINK`: download from every peer at once, verified, in order."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.common import (
    IceHostOpt,
    IceServerOpt,
    JsonOpt,
    MaxPeersOpt,
    QuietOpt,
    SignalOpt,
    TokenOpt,
    VerboseOpt,
    setup_logging,
    split_urls,
    swarm_config,
)
from cli.output import Reporter
from p2pcli import runner
from p2pcli.fetch import FetchOptions, fetch
from p2pcli.link import parse_target
from p2pcli.signaling.client import DEFAULT_SIGNAL


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch_cmd(
        target: Annotated[
            str,
            typer.Argument(
                metavar="HASH_OR_LINK",
                help="A p2p:// link printed by 'p2p seed', or a bare 64-hex-digit content hash.",
                show_default=False,
            ),
        ],
        output: Annotated[
            str | None,
            typer.Option(
                "--output",
                "-o",
                help="Where to write: a file path, or - for stdout. Default: stdout when it is "
                "a pipe, else a file named as the sender's file in the current directory.",
                show_default=False,
            ),
        ] = None,
        signal: SignalOpt = None,
        timeout: Annotated[
            float,
            typer.Option(
                "--timeout",
                envvar="P2P_TIMEOUT",
                help="Seconds to wait for a usable peer (at start, or after all peers left).",
            ),
        ] = 10.0,
        retries: Annotated[
            int,
            typer.Option(
                "--retries", envvar="P2P_RETRIES", help="Attempts to reach the signaling server."
            ),
        ] = 3,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")
        ] = False,
        seed_after: Annotated[
            bool,
            typer.Option("--seed-after", help="Keep seeding after the download completes."),
        ] = False,
        max_peers: MaxPeersOpt = 32,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Download HASH_OR_LINK from every peer at once, verifying each piece.

        Pipe it to a player to watch while it downloads: p2p fetch LINK | mpv -
        """
        setup_logging(verbose)
        t = parse_target(target)
        urls = split_urls(signal) or list(t.signals) or [DEFAULT_SIGNAL]
        config = swarm_config(
            urls,
            ice_server,
            ice_host,
            token or t.token,
            timeout=timeout,
            retries=retries,
            max_peers=max_peers,
        )
        opts = FetchOptions(
            output=output,
            force=force,
            seed_after=seed_after,
            stdout_is_tty=sys.stdout.isatty(),
            stdout_fd=sys.stdout.fileno(),
        )
        reporter = Reporter(quiet=quiet, json=json)
        try:
            runner.run(
                lambda: fetch(t, config, opts, reporter),
                "interrupted; the partial download is kept: run the same command to resume",
            )
        finally:
            reporter.close()
