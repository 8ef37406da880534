"""`p2p seed PATH...`: share a file, a folder or several files; prints the link on stdout
and serves until Ctrl-C."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import (
    IceHostOpt,
    IceServerOpt,
    JsonOpt,
    LanOpt,
    MaxPeersOpt,
    MaxPeersPerAddressOpt,
    PeerJSOpt,
    PublicOpt,
    QuietOpt,
    SignalOpt,
    TokenOpt,
    TrackerOpt,
    VerboseOpt,
    config_value,
    from_config,
    parse_ice_hosts,
    parse_peerjs,
    parse_public_host,
    parse_rate,
    parse_trackers,
    setup_logging,
    split_urls,
    swarm_config,
    with_public,
)

# p2pcli.seed.DEFAULT_EMBEDDED_PORT, repeated so that --help does not import the swarm
# (tests/test_lazy_imports.py checks that they agree).
DEFAULT_EMBEDDED_PORT = 8080


def register(app: typer.Typer) -> None:
    @app.command("seed")
    def seed_cmd(
        files: Annotated[list[str], typer.Argument(
            help="The file to share; or a folder, or several files and folders: one link "
            "for them all.", show_default=False, metavar="PATH...")],
        signal: SignalOpt = None,
        tracker: TrackerOpt = None,
        peerjs: PeerJSOpt = None,
        public: PublicOpt = False,
        max_upload_rate: Annotated[
            str | None,
            typer.Option(
                "--max-upload-rate",
                envvar="P2P_MAX_UPLOAD_RATE",
                help="Upload limit over all peers, bytes/s with k/M/G suffixes (e.g. 500k).",
                show_default=False,
            ),
        ] = None,
        port: Annotated[
            int,
            typer.Option(
                "--port",
                envvar="P2P_SIGNAL_PORT",
                min=0,
                max=65535,
                help="Port of the embedded signaling server (used when no --signal is given); "
                "the next free port is taken if it is busy.",
            ),
        ] = DEFAULT_EMBEDDED_PORT,
        public_host: Annotated[
            str | None,
            typer.Option(
                "--public-host",
                envvar="P2P_PUBLIC_HOST",
                help="Address put in the link for the embedded signaling server. "
                "Default: the first --ice-host, else this machine's first LAN address.",
                show_default=False,
            ),
        ] = None,
        max_peers: MaxPeersOpt = 128,
        max_peers_per_address: MaxPeersPerAddressOpt = None,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        lan: LanOpt = True,
        qr: Annotated[bool, typer.Option(
            "--qr", help="Also draw QR codes of the link and of the watch page's URL on stderr, "
            "for a phone's camera (not with --json or --quiet).")] = False,
        torrent: Annotated[bool, typer.Option(
            "--torrent", help="Also seed PATH as a BitTorrent v1 torrent to WebTorrent peers "
            "through --tracker: its magnet link is printed first, then the p2p link; "
            "--max-upload-rate bounds both together.")] = False,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Share PATH (a file, a folder, or several): hash it, print a link, and serve its
        pieces to every peer until Ctrl-C.

        With no --signal (or P2P_SIGNAL), a signaling server starts inside this process and
        the link points at it, so this command alone shares a file on your network. The
        share is also announced on the LAN over mDNS (unless --no-lan), so there the bare
        hash is enough: p2p fetch HASH.
        """
        from p2pcli import patches, runner
        from p2pcli.errors import Interrupted
        from p2pcli.events import Event, Seeding
        from p2pcli.seed import SeedOptions, seed, seed_with_torrent

        from .output import Reporter

        setup_logging(verbose)
        hosts = parse_ice_hosts(ice_host)
        link_host = parse_public_host(public_host)
        patches.apply(host_addresses=hosts)
        signal, tracker, token = from_config(signal, tracker, token)
        if torrent:
            _check_torrent_paths(files)
        max_upload_rate = config_value("max_upload_rate", max_upload_rate)
        urls = split_urls(signal)
        tracker, ice_server = with_public(public, tracker, ice_server)
        config = swarm_config(
            urls,
            ice_server,
            token,
            max_upload_rate=parse_rate(max_upload_rate),
            max_peers=max_peers,
            max_peers_per_address=max_peers_per_address,
            trackers=parse_trackers(tracker),
            peerjs=parse_peerjs(peerjs),
        )
        reporter = Reporter(quiet=quiet, json=json, qr=qr)

        def emit(ev: Event) -> None:
            if isinstance(ev, Seeding) and ev.link is not None:
                # The link is this command's output: one line on stdout for scripts.
                sys.stdout.write(ev.link + "\n")
                sys.stdout.flush()
            reporter(ev)

        opts = SeedOptions(
            path=files[0],
            more=tuple(files[1:]),
            embedded_signal=not urls,
            signal_port=port,
            public_host=link_host or (hosts[0] if hosts else None),
            lan=lan,
            lan_hosts=hosts,
        )
        def magnet(uri: str) -> None:  # --torrent: the magnet link is line 1 of stdout
            sys.stdout.write(uri + "\n")
            sys.stdout.flush()

        try:
            if torrent:  # and a WebTorrent swarm: p2pcli/btsession.py
                runner.run(lambda: seed_with_torrent(opts, config, emit, magnet,
                                                     reporter.hashing))
            else:
                runner.run(lambda: seed(opts, config, emit, reporter.hashing))
        except Interrupted:
            # Ctrl-C / SIGTERM is how seeding ends: not an error.
            reporter.close()
            reporter.line("stopped seeding")
        finally:
            reporter.close()


def _check_torrent_paths(files: list[str]) -> None:
    from pathlib import Path

    from p2pcli.errors import UsageError

    if len(files) != 1 or not Path(files[0]).exists():
        raise UsageError("seed --torrent takes one existing file or folder")
