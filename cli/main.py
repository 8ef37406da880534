"""`p2p` entry point: the Typer app, and the one place errors become exit codes."""

from __future__ import annotations

import sys

import typer

from p2pcli import __version__
from p2pcli.errors import ExitCode, P2PError

app = typer.Typer(
    name="p2p",
    help=(
        "Share files and stream video peer-to-peer over WebRTC data channels.\n\n"
        "p2p seed FILE prints a link; p2p fetch LINK on another machine downloads it, "
        "verified piece by piece, from every peer at once."
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (README)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"p2p {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, metavar="",
        help="Print the version and exit.",
    ),
) -> None:
    pass


def _register() -> None:
    # Imported here so `p2p --help` stays fast and each command lives in its own module.
    from . import config, doctor, fetch, helpformat, info, seed, serve_signal, stream, wormhole

    for module in (serve_signal, seed, fetch, info, stream, wormhole, doctor, config):
        module.register(app)
    helpformat.tidy(app)
    helpformat.arguments()


_register()


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit: the only way the CLI reports a user's error."""
    from .output import visible  # messages quote names and paths: keep them one line

    sys.stderr.write(f"p2p: {visible(message)}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main() -> None:
    from . import fastparams

    fastparams.install()  # typer's option coercion without pydantic, ~60 ms of start-up
    try:
        app()
    except P2PError as e:
        fail(e.message, e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()
