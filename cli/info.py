"""`p2p info HASH_OR_LINK`: what a share holds and who seeds it, without downloading it."""

from __future__ import annotations

import sys

from .common import (
    IceHostOpt,
    IceServerOpt,
    JsonOpt,
    LanOpt,
    PeerJSOpt,
    PublicOpt,
    QuietOpt,
    RetriesOpt,
    SignalOpt,
    TargetArg,
    TimeoutOpt,
    TokenOpt,
    TrackerOpt,
    VerboseOpt,
    from_config,
    lan_first,
    parse_ice_hosts,
    parse_trackers,
    setup_logging,
    target_config,
)


def register(app) -> None:
    @app.command("info")
    def info_cmd(
        target: TargetArg,
        signal: SignalOpt = None,
        tracker: TrackerOpt = None,
        peerjs: PeerJSOpt = None,
        public: PublicOpt = False,
        timeout: TimeoutOpt = 10.0,
        retries: RetriesOpt = 3,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        lan: LanOpt = True,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Show what HASH_OR_LINK holds (names, sizes, piece size) and how many peers seed
        it right now, without downloading any piece. Files are numbered for --select.

        A magnet: link's names and sizes come from its peers (ut_metadata).
        """
        from p2pcli import patches, runner

        patches.load_socketio_client()
        import orjson

        from p2pcli.events import Event, Info, Manifest
        from p2pcli.info import info

        from .output import Reporter, info_lines

        setup_logging(verbose)
        patches.apply(host_addresses=parse_ice_hosts(ice_host))
        signal, tracker, token = from_config(signal, tracker, token)
        from p2pcli.btview import is_bt_target

        bt = is_bt_target(target)  # a magnet link or a .torrent: p2pcli/btinfo.py
        if not bt:
            t, config = target_config(
                target, signal, ice_server, token, tracker, peerjs, public, command="info",
                timeout=timeout, retries=retries, max_peers=32, max_peers_per_address=None,
            )

        class InfoReporter(Reporter):
            def handlers(self):
                # The manifest is the answer, printed on stdout: no "NAME in N pieces" line
                # and no download bar on stderr.
                return {**super().handlers(), Manifest: lambda ev: None}

        reporter = InfoReporter(quiet=quiet, json=json, wait=timeout)

        def emit(ev: Event) -> None:
            if isinstance(ev, Info):
                # The answer is this command's output, on stdout: lines for people, or the
                # event as one JSON object with --json (it is on stderr's stream too).
                text = (orjson.dumps(ev.to_json()).decode() if json
                        else "\n".join(info_lines(ev)))
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            reporter(ev)

        try:
            if bt:
                runner.run(_info_magnet(target, parse_trackers(tracker), emit, timeout))
                return
            runner.run(lan_first(t, signal, lan, config, reporter,
                                 lambda: info(t, config, emit)))
        finally:
            reporter.close()


def _info_magnet(target: str, tracker: list[str], emit, timeout: float):
    """`p2p info magnet:?...` or `p2p info FILE.torrent`: the link's or the file's
    trackers, then --tracker's."""
    from p2pcli.btinfo import info_magnet
    from p2pcli.btview import bt_target

    link, meta, trackers = bt_target(target, tracker)  # UsageError before any network
    return lambda: info_magnet(link, trackers, emit=emit, timeout=timeout, info=meta)
