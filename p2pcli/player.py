"""Media players: find one, start it on a URL, and (for mpv) listen to where the viewer is.

mpv is started with `--input-ipc-server`; its JSON IPC reports the playback time, the
duration and pause state, so the read-ahead window can follow what is on screen rather
than how far ahead the player's HTTP reads run. Other players fall back to HTTP positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import UsageError

log = logging.getLogger(__name__)

PLAYERS = ("mpv", "vlc", "ffplay")


def find_player(name: str | None) -> tuple[str, str]:
    """(name, path) of the requested player, or the first of PLAYERS found on PATH."""
    found = {p: shutil.which(p) for p in PLAYERS}
    available = [p for p, path in found.items() if path]
    if name is None or name == "auto":
        if not available:
            raise UsageError(
                "no media player found (looked for mpv, vlc, ffplay); install one, "
                "or use --player none and open the printed URL yourself"
            )
        return available[0], found[available[0]]  # type: ignore[return-value]
    if name not in PLAYERS:
        raise UsageError(f"--player {name!r} is not one of mpv, vlc, ffplay, none")
    path = found[name]
    if path is None:
        others = ", ".join(available) if available else "none"
        raise UsageError(
            f"{name} is not installed (players found: {others}); install it or choose "
            "another with --player"
        )
    return name, path


def url_argument(name: str, url: str, private: str) -> list[str]:
    """The player arguments that open `url` without writing it on the command line.

    The URL holds the stream's secret and any local user can read a process's argv, so
    mpv and vlc get a playlist file in `private` (a 0700 directory) instead. ffplay has no
    playlist input: it gets the URL itself (a documented limit).
    """
    if name == "ffplay":
        return [url]
    playlist = os.path.join(private, "stream.m3u")
    fd = os.open(playlist, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(f"#EXTM3U\n{url}\n")
    return [f"--playlist={playlist}"] if name == "mpv" else [playlist]


def player_command(
    name: str, path: str, target: list[str], ipc: str | None, extra: list[str]
) -> list[str]:
    """argv for the player; `target` from url_argument, `extra` from --player-arg."""
    if name == "mpv":
        args = [path]
        if ipc:
            args.append(f"--input-ipc-server={ipc}")
        # youtube-dl has nothing to add to a local URL, and mpv would pass it the URL
        # (secret included) on a command line if opening failed; --player-arg=--ytdl undoes.
        return [*args, "--no-ytdl", *extra, *target]
    if name == "vlc":
        return [path, "--play-and-exit", *extra, *target]
    return [path, "-autoexit", *extra, *target]  # ffplay


@dataclass
class MpvState:
    time_pos: float | None = None
    "Seconds played."
    duration: float | None = None
    "Media duration in seconds."
    paused: bool = False
    "Whether the viewer paused."
    cache_ahead: float | None = None
    "Seconds mpv holds decoded-ready ahead of the play position."
    listeners: list[Callable[[], None]] = field(default_factory=list)
    "Called on every change."


class MpvIpc:
    """Reads mpv's JSON IPC socket and keeps an `MpvState` up to date."""

    PROPS = ("time-pos", "duration", "pause", "demuxer-cache-state")

    def __init__(self, path: str) -> None:
        self.path = path
        self.state = MpvState()
        self.connected = asyncio.Event()

    async def run(self) -> None:
        reader = writer = None
        for _ in range(200):  # mpv creates the socket shortly after it starts
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
                break
            except OSError:
                await asyncio.sleep(0.05)
        if reader is None or writer is None:
            log.info("mpv IPC socket never appeared; falling back to HTTP positions")
            return
        self.connected.set()
        for i, prop in enumerate(self.PROPS, 1):
            writer.write(json.dumps({"command": ["observe_property", i, prop]}).encode() + b"\n")
        await writer.drain()
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    self._on(json.loads(line))
        finally:
            writer.close()

    def _on(self, msg: dict) -> None:
        if msg.get("event") != "property-change":
            return
        name, data = msg["name"], msg.get("data")
        s = self.state
        if name == "time-pos" and isinstance(data, int | float):
            s.time_pos = float(data)
        elif name == "duration" and isinstance(data, int | float) and data > 0:
            s.duration = float(data)
        elif name == "pause":
            s.paused = bool(data)
        elif name == "demuxer-cache-state" and isinstance(data, dict):
            end, reader_pts = data.get("cache-end"), data.get("reader-pts")
            if isinstance(end, int | float) and isinstance(reader_pts, int | float):
                s.cache_ahead = float(end) - float(reader_pts)
        else:
            return
        for fn in s.listeners:
            fn()


def private_dir() -> str:
    """A new directory only we can read (mkdtemp makes it 0700) for the IPC socket and
    the playlist; the caller removes it."""
    return tempfile.mkdtemp(prefix="p2p-stream-")
