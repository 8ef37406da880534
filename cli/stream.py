"""`p2p stream HASH_OR_LINK`: play while downloading, with seeking, through local HTTP."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

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
    from_config,
    lan_first,
    parse_ice_hosts,
    setup_logging,
    target_config,
)

if TYPE_CHECKING:
    from p2pcli.events import Event

    from .output import Reporter


def register(app: typer.Typer) -> None:
    @app.command("stream")
    def stream_cmd(
        target: TargetArg,
        player: Annotated[
            str | None,
            typer.Option(
                "--player",
                envvar="P2P_PLAYER",
                help="mpv, vlc, ffplay, or none (print the URL for any player or browser). "
                "Default: the first of mpv, vlc, ffplay installed.",
                show_default=False,
            ),
        ] = None,
        player_arg: Annotated[
            list[str] | None,
            typer.Option(
                "--player-arg",
                help="Extra argument for the player (repeatable), e.g. --player-arg=--fs.",
                show_default=False,
            ),
        ] = None,
        port: Annotated[
            int,
            typer.Option("--port", envvar="P2P_STREAM_PORT", min=0, max=65535,
                         help="Local HTTP port on 127.0.0.1 (0: any free port)."),
        ] = 0,
        output: Annotated[
            str | None,
            typer.Option(
                "--output", "-o",
                help="Where the download is kept (default: the sender's file name here).",
                show_default=False,
            ),
        ] = None,
        keep_seeding: Annotated[
            bool,
            typer.Option("--keep-seeding",
                         help="Keep downloading and seeding after the player exits."),
        ] = False,
        force: ForceOpt = False,
        select: SelectOpt = None,
        signal: SignalOpt = None,
        tracker: TrackerOpt = None,
        peerjs: PeerJSOpt = None,
        public: PublicOpt = False,
        timeout: TimeoutOpt = 10.0,
        retries: RetriesOpt = 3,
        max_peers: MaxPeersOpt = 32,
        max_peers_per_address: MaxPeersPerAddressOpt = None,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        lan: LanOpt = True,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
        yes: Annotated[bool, typer.Option(
            "--yes", "-y", help="With a code from `p2p send`: accept its offer without asking.")
        ] = False,
    ) -> None:
        """Play HASH_OR_LINK while it downloads; seeking re-orders the download.

        Serves the content on http://127.0.0.1:PORT/SECRET/NAME as it arrives (byte
        ranges, verified bytes only) and starts a player on it. SECRET is random per run:
        other local users and web pages cannot read the stream. mpv is followed through
        its IPC socket, so the read-ahead tracks what is on screen. Stops when the player
        exits. A code from `p2p send` works too: p2p stream 7-guitarist-revenge
        """
        # Here, not at the top: `p2p --help` imports every command module (cli/common.py).
        from p2pcli import runner
        from p2pcli.stream import StreamOptions, preflight, stream

        from .output import Reporter

        hosts = parse_ice_hosts(ice_host)
        if _stream_code(target, locals()):
            return
        setup_logging(verbose)
        signal, tracker, token = from_config(signal, tracker, token)
        from p2pcli.btview import is_bt_target

        if is_bt_target(target):  # a WebTorrent swarm: p2pcli/btstream.py
            _stream_magnet(target, tracker, StreamOptions(
                player=player, port=port, output=output, force=force,
                select=tuple(select or ()), keep_seeding=keep_seeding,
                player_args=list(player_arg or []), show_player_output=not (quiet or json),
                before_swarm=lambda: _apply_patches(hosts),
            ), timeout=timeout, quiet=quiet, json=json)
            return
        t, config = target_config(
            target, signal, ice_server, token, tracker, peerjs, public, command="stream",
            timeout=timeout, retries=retries, max_peers=max_peers,
            max_peers_per_address=max_peers_per_address,
        )
        opts = StreamOptions(
            player=player,
            port=port,
            output=output,
            force=force,
            select=tuple(select or ()),
            keep_seeding=keep_seeding,
            player_args=list(player_arg or []),
            show_player_output=not (quiet or json),
            # Not here: patching loads aiortc, and the player can start before that.
            before_swarm=lambda: _apply_patches(hosts),
        )
        preflight(t, opts)  # at once, not after a LAN search or the server's retries
        reporter = Reporter(quiet=quiet, json=json, wait=timeout)
        emit = _print_url(reporter) if player == "none" else reporter
        try:
            runner.run(
                lan_first(t, signal, lan, config, emit,
                        lambda: stream(t, config, opts, emit)),
                "interrupted; the partial download is kept: run the same command to resume",
            )
        finally:
            reporter.close()


def _stream_magnet(target: str, tracker: list[str] | None, opts, *, timeout: float,
                   quiet: bool, json: bool) -> None:
    """`p2p stream magnet:?...` or `p2p stream FILE.torrent`: the link's or the file's
    trackers, then --tracker's."""
    from p2pcli import runner
    from p2pcli.btstream import stream_magnet
    from p2pcli.btview import bt_target

    from .common import parse_trackers
    from .output import Reporter

    link, info, trackers = bt_target(target, parse_trackers(tracker))
    reporter = Reporter(quiet=quiet, json=json, wait=timeout)
    emit = _print_url(reporter) if opts.player == "none" else reporter
    try:
        runner.run(lambda: stream_magnet(link, trackers, opts, emit, timeout=timeout,
                                         info=info))
    finally:
        reporter.close()


def _stream_code(target: str, args: dict) -> bool:
    """`p2p stream CODE` (issue 18): handled by cli/wormhole.py; False for anything else."""
    from p2pcli.wormhole.code import looks_like_code

    if not looks_like_code(target):
        return False
    from p2pcli.errors import UsageError
    from p2pcli.stream import StreamOptions

    from . import wormhole

    if args["public"] or args["select"]:
        raise UsageError("a code's share is private and whole: drop --public and --select")
    player = args["player"]
    opts = StreamOptions(
        player=player, port=args["port"], output=args["output"], force=args["force"],
        keep_seeding=args["keep_seeding"], player_args=list(args["player_arg"] or []),
        show_player_output=not (args["quiet"] or args["json"]))
    wormhole.stream_code(
        target, yes=args["yes"], signal=args["signal"], tracker=args["tracker"],
        peerjs=args["peerjs"], token=args["token"],
        ice_server=args["ice_server"], ice_host=args["ice_host"], timeout=args["timeout"],
        retries=args["retries"], quiet=args["quiet"], json=args["json"],
        verbose=args["verbose"], opts=opts,
        emit_for=lambda r: _print_url(r) if player == "none" else r)
    return True


def _apply_patches(hosts: tuple[str, ...]) -> None:
    from p2pcli import patches  # imports aiortc: see StreamOptions.before_swarm

    patches.apply(host_addresses=hosts)
    patches.load_socketio_client()


def _print_url(reporter: Reporter) -> Callable[[Event], None]:
    """With no player, the URL is this command's output: one line on stdout."""
    from p2pcli.events import Serving

    def emit(ev: Event) -> None:
        reporter(ev)
        if isinstance(ev, Serving):
            sys.stdout.write(ev.url + "\n")
            sys.stdout.flush()

    return emit
