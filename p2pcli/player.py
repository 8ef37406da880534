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


def player_command(name: str, path: str, url: str, ipc: str | None, extra: list[str]) -> list[str]:
    if name == "mpv":
        args = [path]
        if ipc:
            args.append(f"--input-ipc-server={ipc}")
        return [*args, *extra, url]
    if name == "vlc":
        return [path, "--play-and-exit", *extra, url]
    return [path, "-autoexit", *extra, url]  # ffplay


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


def ipc_path() -> str:
    d = tempfile.mkdtemp(prefix="p2p-mpv-")
    return os.path.join(d, "ipc.sock")
