"""`p2p send FILE|DIR` / `p2p receive CODE`: private shares with a short code (issue 18)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import (
    ForceOpt,
    IceHostOpt,
    IceServerOpt,
    JsonOpt,
    QuietOpt,
    RetriesOpt,
    SignalOpt,
    TimeoutOpt,
    TokenOpt,
    VerboseOpt,
    finite,
    from_config,
    parse_ice_hosts,
    setup_logging,
    split_urls,
    swarm_config,
)

CodeTrackerOpt = Annotated[list[str] | None, typer.Option(
    "--tracker", help="Meet through this WebTorrent tracker (ws:// or wss://) instead of a "
    "signaling server; both sides give the same one.", show_default=False)]
CodePeerJSOpt = Annotated[list[str] | None, typer.Option(
    "--peerjs", help="Meet through this PeerJS server instead of a signaling server; both "
    "sides give the same one.", show_default=False)]


def _complete_code(incomplete: str) -> list[str]:
    from p2pcli.wormhole.code import complete

    return complete(incomplete)


def _reporter(quiet: bool, json: bool, wait: float | None):
    """cli/output.py's Reporter, with the code events rendered."""
    from p2pcli.wormhole import events as wev

    from .output import Reporter, size

    class CodeReporter(Reporter):
        def handlers(self):
            return {**super().handlers(), wev.CodeReady: self.on_code,
                    wev.CodeOffer: self.on_offer, wev.CodeVerified: self.on_verified,
                    wev.Sent: self.on_sent, wev.CodeSeeding: self.on_code_seeding}

        def on_code(self, e: wev.CodeReady) -> None:
            self.say("code: ", (e.code, "bold green"))
            self.say("on the other machine: p2p receive ", e.code)

        def on_offer(self, e: wev.CodeOffer) -> None:
            self.say((e.sender, "bold"), " offers ", (e.name, "bold"), f" {size(e.size)}")

        def on_verified(self, e: wev.CodeVerified) -> None:
            self.say("code verified; connecting")

        def on_sent(self, e: wev.Sent) -> None:
            self.say(f"sent {size(e.bytes)}; done")

        def on_code_seeding(self, e: wev.CodeSeeding) -> None:
            tries = "1 wrong try closes it" if e.tries == 1 else f"{e.tries} wrong tries close it"
            self.say("serving it on to whoever proves code ", (e.code, "bold"),
                     f" ({tries}); Ctrl-C stops")
            if e.link is None:
                self.line("private: the content hash is announced nowhere")
            else:
                self.say("also public (--public-seed): p2p fetch '", (e.link, "bold green"), "'")

    return CodeReporter(quiet=quiet, json=json, wait=wait)


def _confirmer(yes: bool, reporter):
    """Asks on the terminal whether to accept an offer (the reporter's status line is
    closed first, so the question stands alone); --yes accepts."""

    async def confirm(offer) -> bool:
        if yes:
            return True
        import asyncio

        reporter.close()
        answer = await asyncio.to_thread(
            typer.confirm, f"accept {offer.name} from {offer.sender}?", err=True)
        return bool(answer)

    return confirm


def seed_after_options(seed_after: bool, tries: int | None, public_seed: bool):
    """`receive --seed-after [--tries N] [--public-seed]`: its options, or None. The
    two others mean nothing without it: said before any traffic."""
    from p2pcli.errors import UsageError
    from p2pcli.wormhole.transfer import SeedAfter

    if not seed_after:
        for flag, given in (("--tries", tries is not None), ("--public-seed", public_seed)):
            if given:
                raise UsageError(f"{flag} applies to --seed-after only (the receiver then "
                                 "serves the share on under the same code)")
        return None
    return SeedAfter(tries=1 if tries is None else tries, public=public_seed)


def parse_code(code: str):
    """`receive`'s CODE; a local file or a share link given instead is told where it goes."""
    import os
    import shlex

    from p2pcli.errors import UsageError
    from p2pcli.wormhole.code import CodeError, parse

    try:
        return parse(code)
    except CodeError as e:
        if os.path.exists(code):
            kind = "folder" if os.path.isdir(code) else "file"
            raise UsageError(f"{code} is a local {kind}, not a code; to send it run "
                             f"`p2p send {shlex.quote(code)}`") from None
        from p2pcli.link import parse_target

        try:
            parse_target(code)
        except UsageError:
            if not code.lower().startswith("magnet:?"):
                raise e from None
        raise UsageError(f"{code!r} is a share link, not a code from `p2p send`: run "
                         f"`p2p fetch {shlex.quote(code)}`") from None


def need_yes(yes: bool) -> None:
    from p2pcli.errors import UsageError

    if not yes and not sys.stdin.isatty():
        raise UsageError("a code's offer is confirmed before anything is written, and stdin "
                         "is not a terminal: add --yes to accept what the code offers")


def stream_code(code: str, *, yes: bool, signal, tracker, peerjs, token, ice_server,
                ice_host, timeout, retries, quiet: bool, json: bool, verbose: bool, opts,
                emit_for) -> None:
    """`p2p stream CODE` (cli/stream.py hands over here): the code exchange, then the
    stream. `opts` is the StreamOptions stream built; `emit_for(reporter)` its sink."""
    from p2pcli import runner
    from p2pcli.wormhole.code import parse

    parsed = parse(code)  # a typo is said before any traffic
    need_yes(yes)
    from p2pcli.stream import preflight
    from p2pcli.wormhole.transfer import stream_code as run

    setup_logging(verbose)
    from p2pcli.link import Target

    preflight(Target(b"\0" * 32), opts)  # no player, a bad -o: said before the exchange
    from p2pcli import patches

    # The exchange runs before the stream's own swarm: the client needs these first.
    patches.load_socketio_client()
    patches.apply(host_addresses=parse_ice_hosts(ice_host))
    config = _config(signal, tracker, peerjs, token, ice_server, timeout, retries)
    reporter = _reporter(quiet, json, timeout)
    emit = emit_for(reporter)
    try:
        runner.run(lambda: run(parsed, config, opts, emit, _confirmer(yes, reporter)),
                   "interrupted; the partial download is kept")
    finally:
        reporter.close()


def _config(signal, tracker, peerjs, token, ice_server, timeout, retries):
    """One rendezvous for a code (PROTOCOL.md 4.5): the one flag given among --signal,
    --tracker and --peerjs; with none, the config file's signaling server or the default."""
    from p2pcli.errors import UsageError
    from p2pcli.link import DEFAULT_SIGNAL

    from .common import parse_peerjs, parse_trackers

    given = [flag for flag, value in (("--signal", signal), ("--tracker", tracker),
                                      ("--peerjs", peerjs)) if value]
    if len(given) > 1:
        raise UsageError(f"a code meets through one rendezvous: give one of {', '.join(given)}")
    _, _, token = from_config(None, None, token)
    if tracker or peerjs:
        return swarm_config([], ice_server, token, trackers=parse_trackers(tracker)[:1],
                            peerjs=parse_peerjs(peerjs)[:1], timeout=timeout, retries=retries)
    signal, _, _ = from_config(signal, None, None)
    return swarm_config(split_urls(signal) or [DEFAULT_SIGNAL], ice_server, token,
                        timeout=timeout, retries=retries)


def register(app: typer.Typer) -> None:
    @app.command("send")
    def send_cmd(
        paths: Annotated[list[str], typer.Argument(
            help="The file or folder (or several) to send.", metavar="FILE|DIR")],
        signal: SignalOpt = None,
        tracker: CodeTrackerOpt = None,
        peerjs: CodePeerJSOpt = None,
        tries: Annotated[int, typer.Option(
            "--tries", min=1,
            help="Wrong codes allowed before the code is closed. Each try is one guess for "
            "someone who does not know the code (two words: 1 in 65536).")] = 1,
        words: Annotated[int, typer.Option(
            "--words", min=2, max=3, help="Words in the code: 2, or 3 for a longer secret.")] = 2,
        expire: Annotated[float | None, typer.Option(
            "--expire", min=0.0, callback=finite,
            help="Seconds after which nobody new may use the code.", show_default=False)] = None,
        sender: Annotated[str | None, typer.Option(
            "--from", help="The name the receiver sees (default: your user name).",
            show_default=False)] = None,
        timeout: TimeoutOpt = 10.0,
        retries: RetriesOpt = 3,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Send FILE or DIR to one person: prints a short code and waits for them to run
        `p2p receive CODE`. Only a peer that proves the code is served; the signaling
        server sees neither the code's words nor what is shared."""
        from p2pcli import patches, runner

        patches.load_socketio_client()
        from p2pcli.wormhole.transfer import SendOptions, send

        setup_logging(verbose)
        patches.apply(host_addresses=parse_ice_hosts(ice_host))
        config = _config(signal, tracker, peerjs, token, ice_server, timeout, retries)
        reporter = _reporter(quiet, json, None)
        try:
            runner.run(lambda: send(SendOptions(paths=paths, tries=tries, words=words,
                                                expire=expire, sender=sender or ""),
                                    config, reporter, reporter.hashing))
        finally:
            reporter.close()

    @app.command("receive")
    def receive_cmd(
        code: Annotated[str, typer.Argument(
            metavar="CODE", show_default=False,
            help="The code the sender printed, like 7-guitarist-revenge.",
            autocompletion=_complete_code)],
        output: Annotated[str | None, typer.Option(
            "--output", "-o",
            help="Where to write: a file path, a folder, or - for stdout. Default: stdout "
            "when it is a pipe, else the current directory.", show_default=False)] = None,
        yes: Annotated[bool, typer.Option(
            "--yes", "-y", help="Accept without asking (needed when stdin is not a terminal).")
        ] = False,
        seed_after: Annotated[bool, typer.Option(
            "--seed-after", help="Once complete, keep serving it under the same code (needs "
            "-o FILE or DIR), privately: only to peers that prove the code, the content hash "
            "announced nowhere. Until Ctrl-C.")] = False,
        tries: Annotated[int | None, typer.Option(
            "--tries", min=1, help="With --seed-after: wrong codes allowed before it closes "
            "the code (default 1). Each serving peer gives a guesser this many more tries.",
            show_default=False)] = None,
        public_seed: Annotated[bool, typer.Option(
            "--public-seed", help="With --seed-after: also announce the content hash on the "
            "rendezvous and print its link, as fetch --seed-after does (anyone with the "
            "link may fetch it).")] = False,
        signal: SignalOpt = None,
        tracker: CodeTrackerOpt = None,
        peerjs: CodePeerJSOpt = None,
        timeout: TimeoutOpt = 10.0,
        retries: RetriesOpt = 3,
        force: ForceOpt = False,
        ice_server: IceServerOpt = None,
        ice_host: IceHostOpt = None,
        token: TokenOpt = None,
        quiet: QuietOpt = False,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Receive what `p2p send` offers under CODE: shows the name, size and sender and
        asks before anything is written. Pipe it like fetch: p2p receive CODE | mpv -

        With --seed-after it then serves the share on under the same code, to peers that
        prove it only, until Ctrl-C (docs/SECURITY.md: each serving receiver gives a
        guesser its --tries more guesses)."""
        seed = seed_after_options(seed_after, tries, public_seed)
        parsed = parse_code(code)  # a typo is said before any traffic
        need_yes(yes)
        from p2pcli import patches, runner

        patches.load_socketio_client()
        from p2pcli.download import check_output_args
        from p2pcli.fetch import FetchOptions
        from p2pcli.wormhole.transfer import receive

        setup_logging(verbose)
        patches.apply(host_addresses=parse_ice_hosts(ice_host))
        config = _config(signal, tracker, peerjs, token, ice_server, timeout, retries)
        opts = FetchOptions(output=output, force=force, seed_after=seed_after,
                            stdout_is_tty=sys.stdout.isatty(), stdout_fd=sys.stdout.fileno(),
                            select=())
        check_output_args(opts)
        reporter = _reporter(quiet, json, timeout)

        confirm = _confirmer(yes, reporter)

        try:
            runner.run(lambda: receive(parsed, config, opts, reporter, confirm, seed),
                       "interrupted; the partial download is kept" if seed is None else
                       "stopped (a partial download is kept; a complete one stays)")
        finally:
            reporter.close()
