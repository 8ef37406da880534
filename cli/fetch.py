"""`p2p fetch HASH_OR_LINK`: download from every peer at once, verified, in order."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import (
    ForceOpt,
    IceHostOpt,
    IceServerOpt,
    JsonOpt,
    LanOpt,
    MaxPeersOpt,
    MaxPeersPerAddressOpt,
    PeerJSOpt,
    PublicOpt,
    QuietOpt,
    RetriesOpt,
    SelectOpt,
    SignalOpt,
    TargetArg,
    TimeoutOpt,
    TokenOpt,
    TrackerOpt,
    VerboseOpt,
    download_dir,
    from_config,
    lan_first,
    parse_ice_hosts,
    parse_trackers,
    setup_logging,
    target_config,
)


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch_cmd(
        target: TargetArg,
        output: Annotated[
            str | None,
            typer.Option(
                "--output",
                "-o",
                help="Where to write: a file path, a folder (the share goes inside it), or - "
                "for stdout. Default: stdout when it is a pipe, else the current directory.",
                show_default=False,
            ),
        ] = None,
        signal: SignalOpt = None,
        tracker: TrackerOpt = None,
        peerjs: PeerJSOpt = None,
        public: PublicOpt = False,
        timeout: TimeoutOpt = 10.0,
        retries: RetriesOpt = 3,
        force: ForceOpt = False,
        select: SelectOpt = None,
        seed_after: Annotated[
            bool,
            typer.Option(
                "--seed-after",
                help="Keep seeding after the download completes (needs -o FILE: a download "
                "to a pipe keeps only its read-ahead window).",
            ),
        ] = False,
        max_peers: MaxPeersOpt = 32,
        max_peers_per_address: MaxPeersPerAddressOpt = None,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        lan: LanOpt = True,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Download HASH_OR_LINK from every peer at once, verifying each piece.

        Pipe it to a player to watch while it downloads: p2p fetch LINK | mpv -

        A magnet: link or a .torrent file fetches from a WebTorrent swarm through its
        WebSocket trackers (tr=, announce, --tracker).
        """
        # Here, not at the top: `p2p --help` imports every command module (cli/common.py).
        from p2pcli import patches, runner

        patches.load_socketio_client()  # before p2pcli.fetch imports socketio
        from p2pcli.download import check_output_args, writes_stdout
        from p2pcli.fetch import FetchOptions, fetch

        from .output import Reporter

        setup_logging(verbose)
        patches.apply(host_addresses=parse_ice_hosts(ice_host))
        signal, tracker, token = from_config(signal, tracker, token)
        from p2pcli.btview import is_bt_target

        if is_bt_target(target):
            # A WebTorrent swarm: p2pcli/btsession.py
            _fetch_magnet(target, parse_trackers(tracker), output, timeout=timeout, force=force,
                          quiet=quiet, json=json, select=tuple(select or ()))
            return
        t, config = target_config(
            target, signal, ice_server, token, tracker, peerjs, public, command="fetch",
            timeout=timeout, retries=retries, max_peers=max_peers,
            max_peers_per_address=max_peers_per_address,
        )
        if output is None and sys.stdout.isatty():
            # Not to a pipe: the config file's download_dir, when it names one.
            output = download_dir()
        opts = FetchOptions(
            output=output,
            force=force,
            seed_after=seed_after,
            stdout_is_tty=sys.stdout.isatty(),
            stdout_fd=sys.stdout.fileno(),
            select=tuple(select or ()),
        )
        check_output_args(opts)  # at once, not after a LAN search or the server's retries
        reporter = Reporter(quiet=quiet, json=json, wait=timeout)
        try:
            runner.run(
                lan_first(t, signal, lan, config, reporter,
                        lambda: fetch(t, config, opts, reporter)),
                _interrupted(writes_stdout(opts)),
            )
        finally:
            reporter.close()


def _fetch_magnet(target: str, tracker: list[str], output: str | None, *, timeout: float,
                  force: bool, quiet: bool, json: bool, select: tuple[str, ...] = ()) -> None:
    """`p2p fetch magnet:?...` or `p2p fetch FILE.torrent`: the link's or the file's
    trackers, then --tracker's."""
    from p2pcli import runner
    from p2pcli.btsession import fetch_magnet
    from p2pcli.btview import bt_target

    from .output import Reporter

    link, info, trackers = bt_target(target, tracker)
    if output is None:
        output = "-" if not sys.stdout.isatty() else "."
    reporter = Reporter(quiet=quiet, json=json, wait=timeout)
    try:
        runner.run(lambda: fetch_magnet(link, trackers, output, emit=reporter, timeout=timeout,
                                        force=force, stdout_fd=sys.stdout.fileno(), info=info,
                                        select=select),
                   _interrupted(output == "-"))
    finally:
        reporter.close()


def _interrupted(to_stdout: bool) -> str:
    """The Ctrl-C line: a file's .part is kept; a download to stdout keeps nothing."""
    if to_stdout:
        return ("interrupted; nothing is kept of a download to stdout: run the same command "
                "to start over")
    return "interrupted; the partial download is kept: run the same command to resume"
