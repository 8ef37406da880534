"""`p2p doctor`: check that peers on different networks can connect through this setup."""

from __future__ import annotations

from typing import Annotated

import typer

from p2pcli import events, runner
from p2pcli.errors import ExitCode

from .common import (
    IceServerOpt,
    JsonOpt,
    SignalOpt,
    TokenOpt,
    VerboseOpt,
    finite,
    setup_logging,
    split_urls,
)
from .output import Handler, Reporter

MARKS = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}
TITLES = {"signaling": "signaling", "ice-config": "ICE servers", "stun": "STUN",
          "turn": "TURN", "connection": "test connection"}


class DoctorReporter(Reporter):
    """One line per check for people; NDJSON with --json (as every command)."""

    def handlers(self) -> dict[type[events.Event], Handler]:
        return {**super().handlers(), events.Check: self.on_check, events.Doctor: self.on_doctor}

    def on_check(self, ev: events.Check) -> None:
        # Messages quote what servers answered: printed as text, never as markup.
        self.say(MARKS[ev.status], f" {TITLES.get(ev.check, ev.check)}: {ev.message}")

    def on_doctor(self, ev: events.Doctor) -> None:
        if ev.ok:
            self.line("[bold green]all checks passed[/]")
        else:
            self.say(("failed:", "bold red"), f" {', '.join(sorted(set(ev.failed)))}")


def register(app: typer.Typer) -> None:
    @app.command(
        "doctor",
        help=(
            "Check that peers on different networks can connect through this setup.\n\n"
            "Asks the signaling server for its STUN/TURN servers, checks that STUN gives "
            "this machine's public address and that a TURN allocation succeeds (or says "
            "why not: credentials refused, server down or unreachable), then connects two "
            "peers inside this process through the TURN relay and reports the candidate "
            "pair ICE chose (host, srflx or relay).\n\n"
            "Exit status: 0 when no check failed, 4 when the signaling server cannot be "
            "reached, 7 when a STUN/TURN server or the test connection failed."
        ),
    )
    def doctor_cmd(
        signal: SignalOpt = None,
        ice_server: IceServerOpt = None,
        token: TokenOpt = None,
        timeout: Annotated[
            float,
            typer.Option("--timeout", min=0.5, callback=finite,
                         help="Seconds to wait for each STUN/TURN server's answer."),
        ] = 3.0,
        json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        from p2pcli import patches
        from p2pcli.doctor import DoctorOptions, doctor
        from p2pcli.iceurls import parse_ice_servers
        from p2pcli.link import DEFAULT_SIGNAL

        setup_logging(verbose)
        # The test connection runs on the stack seed and fetch run on.
        patches.apply()
        opts = DoctorOptions(
            signal_urls=split_urls(signal) or [DEFAULT_SIGNAL],
            token=token,
            ice_servers=parse_ice_servers(ice_server) if ice_server else None,
            timeout=timeout,
        )
        reporter = DoctorReporter(json=json)
        report = runner.run(lambda: doctor(opts, reporter))
        if report.ok:
            return
        # The report said what failed; the exit status says which kind of failure.
        if report.failed == ["signaling"]:
            raise typer.Exit(ExitCode.SIGNAL_UNREACHABLE)
        raise typer.Exit(ExitCode.CHECK_FAILED)
