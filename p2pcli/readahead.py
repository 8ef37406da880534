"""Which pieces a stream needs first (sans-IO): open HTTP reads, then the read-ahead window.

Inputs are positions in bytes: where each open HTTP response is reading, and, when the
player tells us (mpv IPC), where the viewer actually is. Output is an ordered piece list
for `Picker.priority`. The window is sized from the bitrate seen so far, so a 4K film gets
a deeper buffer than a podcast.
"""

from __future__ import annotations

from dataclasses import dataclass

URGENT_BYTES = 512 * 1024  # right under a reader's position: needed now
WINDOW_SECONDS = 20.0  # read-ahead as playing time
MIN_WINDOW = 2 * 1024 * 1024
MAX_WINDOW = 64 * 1024 * 1024
DEFAULT_WINDOW = 4 * 1024 * 1024
# The end of the file, fetched right after what readers need now: a player opening an MP4
# whose index (moov) is at the end reads the head, then seeks there before it can decode a
# frame (Matroska's cues and AVI's index sit there too). The index of a 2-hour film is a
# few MB; TAIL_SHARE of the size, within these bounds, covers it.
# Only while the stream starts: once a reader has gone START_BYTES in, the player has what
# it opens a file with (a slow link's read-ahead must not wait behind 8 MiB nobody asked for;
# a later seek to the end is a reader like any other).
TAIL_SHARE = 1 / 200
START_BYTES = 2 * URGENT_BYTES
MIN_TAIL = 512 * 1024
MAX_TAIL = 8 * 1024 * 1024


@dataclass(eq=False)  # identity: two reads at the same position are still two reads
class Reader:
    """One open HTTP response."""

    pos: int
    "Next byte it will send."
    end: int
    "One past its last byte."
    serial: int
    "Higher is newer: the newest read (a seek) is served first."


@dataclass
class PlayerState:
    """What the player reports about itself (mpv IPC), all optional."""

    play_pos: int | None = None
    "Byte position the viewer is at (player read position minus its cache)."
    duration: float | None = None
    "Media duration in seconds."
    paused: bool = False
    "Whether playback is paused."


class ReadAhead:
    def __init__(self, size: int, piece_size: int, offset: int = 0) -> None:
        self.size = size
        self.piece_size = piece_size
        self.offset = offset
        "Where the file starts in the share's bytes (a folder share's file; pieces run on)."
        self.piece_count = -(-size // piece_size)
        self.bitrate: float | None = None  # bytes per second of media
        self.started = False  # a reader went START_BYTES in: the tail is no longer early

    @property
    def tail(self) -> int:
        """Bytes at the end of the file fetched early (a container's index)."""
        return int(min(MAX_TAIL, max(MIN_TAIL, self.size * TAIL_SHARE)))

    def observe_bitrate(self, bytes_per_second: float) -> None:
        if bytes_per_second > 0:
            self.bitrate = bytes_per_second

    @property
    def window(self) -> int:
        if self.bitrate is None:
            return DEFAULT_WINDOW
        return int(min(MAX_WINDOW, max(MIN_WINDOW, self.bitrate * WINDOW_SECONDS)))

    def _pieces(self, start: int, end: int) -> range:
        end = min(end, self.size)
        if end <= start:
            return range(0)
        start, end = start + self.offset, end + self.offset
        return range(start // self.piece_size, (end - 1) // self.piece_size + 1)

    def priority(self, readers: list[Reader], player: PlayerState | None = None) -> list[int]:
        out: list[int] = []
        seen: set[int] = set()

        def add(r: range) -> None:
            for p in r:
                if p not in seen:
                    seen.add(p)
                    out.append(p)

        newest_first = sorted(readers, key=lambda r: -r.serial)
        for r in newest_first:
            add(self._pieces(r.pos, min(r.end, r.pos + URGENT_BYTES)))
        if not readers:
            add(self._pieces(0, URGENT_BYTES))  # a player's first read is at the start
        self.started = self.started or any(r.pos > START_BYTES for r in readers)
        if not self.started:
            add(self._pieces(max(0, self.size - self.tail), self.size))
        anchor = player.play_pos if player and player.play_pos is not None else None
        for r in newest_first:
            # The window follows the viewer when we know where they are and this read is
            # the one feeding them (it is at or just ahead of the play position).
            base = r.pos
            if anchor is not None and anchor <= r.pos <= anchor + self.window:
                base = anchor
            add(self._pieces(r.pos, min(r.end, base + self.window)))
        return out
