"""When the seeder's status line is printed (sans-IO: time and the terminal come in).

On a terminal the line is redrawn in place ("\\r"), so each tick may show; throttled to one
redraw every IDLE_EVERY seconds while nothing moves. Into a file or a pipe every printed
line stays, and a seeder runs for hours: there the line is logged when something changed,
not every tick — a peer came or went, an upload started, or it stopped (with what it
sent). A `seed 2>log` once wrote the same "peers 0  sent 0 B" line every 5 s, forever.
"""

from __future__ import annotations

#: Seconds between redraws of an unchanged line on a terminal.
IDLE_EVERY = 5.0


class StatusLine:
    def __init__(self, *, terminal: bool) -> None:
        self.terminal = terminal
        self._last_print = float("-inf")
        self._peers = 0
        self._active = False

    def should_print(self, now: float, peers: int, rate: float) -> bool:
        active = rate > 0
        changed = peers != self._peers or active != self._active
        self._peers, self._active = peers, active
        if self.terminal:
            show = changed or active or now - self._last_print >= IDLE_EVERY
        else:
            show = changed
        if show:
            self._last_print = now
        return show
