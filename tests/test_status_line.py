"""The seeder's status line logs changes, not ticks, when stderr is no terminal (issue 16,
rough edge 8); on a terminal it is redrawn in place."""

from __future__ import annotations

import pytest

from p2p_cli.output import Reporter
from p2p_cli.statusline import IDLE_EVERY, StatusLine
from p2pcli import events


def run(line: StatusLine, ticks: list[tuple[int, float]]) -> list[int]:
    """Indices of the ticks (peers, rate), one a second, that print."""
    return [i for i, (peers, rate) in enumerate(ticks) if line.should_print(float(i), peers, rate)]


IDLE = [(0, 0.0)] * 30
BUSY = [(1, 0.0)] * 3 + [(1, 5e5)] * 10 + [(1, 0.0)] * 5 + [(0, 0.0)] * 5


def test_into_a_file_only_changes_are_logged() -> None:
    assert run(StatusLine(terminal=False), IDLE) == []
    # a peer came (0), uploading started (3) and stopped (13), the peer left (18)
    assert run(StatusLine(terminal=False), BUSY) == [0, 3, 13, 18]


def test_on_a_terminal_the_line_moves_with_the_upload_and_idles_slowly() -> None:
    assert run(StatusLine(terminal=True), IDLE) == list(range(0, 30, int(IDLE_EVERY)))
    shown = run(StatusLine(terminal=True), BUSY)
    assert set(range(3, 14)) <= set(shown) and 18 in shown


@pytest.mark.parametrize("mode", ["human", "json"])
def test_a_seeder_logging_to_a_file_writes_one_line_per_change(
        mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = Reporter(json=mode == "json")
    for peers, rate in BUSY:
        r(events.Status(peers=peers, sent=1000, rate=int(rate)))
    lines = capsys.readouterr().err.splitlines()
    if mode == "json":  # every tick is data for a script
        assert len(lines) == len(BUSY)
    else:
        assert lines == ["1 peer  sent 1.0 kB  upload 0 bytes/s",
                         "1 peer  sent 1.0 kB  upload 500.0 kB/s",
                         "1 peer  sent 1.0 kB  upload 0 bytes/s",
                         "0 peers  sent 1.0 kB  upload 0 bytes/s"]
