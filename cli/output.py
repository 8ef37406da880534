"""How commands talk to people: rich progress on stderr, NDJSON events, or nothing.

The core emits typed events (p2pcli/events.py); this module is the only place that turns
them into text. stdout is never touched here: it belongs to content (`fetch`) and links (`seed`).

Event fields are data, often chosen by a peer (file names, peer ids, reasons): they are
printed with `say`, which never parses rich markup and shows control characters as escapes,
so `[b]x` prints as typed and `[@a=(]` cannot crash the command. Markup is for our own text.
"""

from __future__ import annotations

import os
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from p2pcli import events
from p2pcli.events import Event

from .peernames import PeerNames
from .statusline import StatusLine

#: A piece of a `say` line: text as it is, or (text, rich style) for our own emphasis.
Part = str | tuple[str, str]

# Bidirectional marks, overrides and isolates (as in p2pcli/manifest.py's name rule).
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def visible(text: object) -> str:
    """`text` safe to put on a terminal line: controls, line breaks and bidi marks as escapes.

    An escape sequence in a peer's string could otherwise retitle or clear the terminal, a
    line separator could forge a line of output, and a bidi override could make `gpj.exe`
    read as `exe.jpg`. Other format characters (the joiners inside emoji) stay as they are.
    """
    s = str(text)
    if s.isprintable():  # the common case
        return s
    return "".join(
        ascii(ch)[1:-1] if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
        else ch
        for ch in s
    )


def size(n: float) -> str:
    """Every byte count people see, in one unit system: rich's decimal one, the progress bar's
    own (`984.2 kB`), so the seeder's status, the bar and the piece size agree."""
    from rich.filesize import decimal

    return decimal(int(n))


def rate(n: float) -> str:
    """Every transfer rate people see: `984.2 kB/s`, as the progress bar says it."""
    return f"{size(n)}/s"


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 peer`, `2 peers`, `0 peers`: a count with its noun agreeing."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def info_lines(ev: events.Info) -> list[str]:
    """`p2p info`'s answer for people (stdout). Names come from the manifest: `visible`."""
    lines = [
        f"name   {visible(ev.name)}",
        f"hash   {ev.hash}",
        f"size   {size(ev.size)} ({plural(ev.size, 'byte')}), {plural(ev.pieces, 'piece')} "
        f"of {size(ev.piece_size)}",  # as `seed` says it
        f"peers  {ev.peers} answering, {ev.seeders} with every piece",
    ]
    if ev.version != 1:
        lines.append(f"files  {len(ev.files)} (index, size, path: --select takes either)")
        lines += [f"{f['index']:>7}  {size(f['size']):>9}  {visible(f['path'])}"
                  for f in ev.files]
        lines += [f"{'-':>7}  {'folder':>9}  {visible(d)}/" for d in ev.folders]
    return lines


#: Renders one event; keyed by the event's class in `Reporter.handlers`.
Handler = Callable[[Any], None]

#: Kinds a person is not shown, on purpose: each is either summed up by another line (a
#: peer's pieces by the progress bar, its departure by `done`'s peer count) or detail that
#: only a script reading `--json` wants. A kind neither handled nor listed here fails
#: tests/test_events.py, so a new kind cannot go unseen by accident.
SILENT: frozenset[type[Event]] = frozenset({
    events.IceConfig,
    events.PeerRefused,
    events.PieceVerified,
    events.Http,
    events.FirstByte,
    events.StreamEnded,
    events.Info,  # `p2p info` prints it on stdout itself (cli/info.py)
    events.UploadLimit,  # for scripts (--json); the status line shows the rate already
})


class Reporter:
    """Receives core events; renders them for humans (default), as NDJSON, or not at all."""

    def __init__(self, *, quiet: bool = False, json: bool = False,
                 wait: float | None = None, qr: bool = False) -> None:
        """`wait`: the seconds a command waits for a peer to send something (fetch, stream
        and info's --timeout), said when it starts waiting; None for a command that waits
        forever."""
        self.quiet = quiet
        self.json = json
        self.wait = wait
        self.qr = qr  # seed --qr: QR codes of the link and the watch URL
        self.peer_names = PeerNames()
        self.connected: set[str] = set()  # peers joined and not left
        self._waiting_said = False
        self._finished = False
        self.console = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.hash_task: TaskID | None = None
        self._status: StatusLine | None = None  # made at the first status: knows the tty
        self.started = time.monotonic()
        self._handlers = self.handlers()

    def handlers(self) -> dict[type[Event], Handler]:
        """Which method renders which kind (dispatch by class, exactly: no subclass lookup).

        A command with kinds of its own extends this: `{**super().handlers(), Kind: ...}`.
        """
        return {
            events.Hashed: self.on_hashed,
            events.SignalServer: self.on_signal_server,
            events.LanAnnounced: self.on_lan_announced,
            events.Announced: self.on_announced,
            events.LanSearched: self.on_lan_searched,
            events.Seeding: self.on_seeding,
            events.Status: self.on_status,
            events.SignalingConnected: self.on_signaling_connected,
            events.PeerJoined: self.on_peer_joined,
            events.PeerLeft: self.on_peer_left,
            events.Manifest: self.on_manifest,
            events.Resume: self.on_resume,
            events.Progress: self.on_progress,
            events.Serving: self.on_serving,
            events.PlayerStarted: self.on_player_started,
            events.PlayerExited: self.on_player_exited,
            events.Warning: self.on_warning,
            events.ManifestRejected: self.on_manifest_rejected,
            events.PieceRejected: self.on_piece_rejected,
            events.Done: self.on_done,
            events.ReaderGone: self.on_reader_gone,
        }

    # -- plumbing

    def __call__(self, ev: Event) -> None:
        if self.json:
            obj = {"t": round(time.monotonic() - self.started, 3), **ev.to_json()}
            sys.stderr.buffer.write(orjson.dumps(obj) + b"\n")
            sys.stderr.buffer.flush()
            return
        if self.quiet:
            return
        handler = self._handlers.get(type(ev))
        if handler is not None:
            handler(ev)

    def line(self, text: str) -> None:
        """One line of our own text, with rich markup. Never put event fields in it: `say`."""
        if not self.quiet and not self.json:
            self.console.print(text)

    def say(self, *parts: Part) -> None:
        """One line assembled from parts taken literally (see the module docstring)."""
        if not self.quiet and not self.json:
            self.console.print(Text.assemble(*(
                visible(p) if isinstance(p, str) else (visible(p[0]), p[1]) for p in parts
            )))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _bar(self) -> Progress:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=False),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        return self.progress

    # -- hashing (seed)

    def hashing(self, done: int, total: int) -> None:
        if self.quiet or self.json:
            return
        bar = self._bar()
        if self.hash_task is None:
            self.hash_task = bar.add_task("hashing", total=total, extra="")
        bar.update(self.hash_task, completed=done)

    def on_hashed(self, ev: events.Hashed) -> None:
        self.close()
        self.hash_task = None
        self.say(
            (ev.name, "bold"), f" {size(ev.size)}, {plural(ev.pieces, 'piece')} of "
            f"{size(ev.piece_size)}"
        )

    def on_signal_server(self, ev: events.SignalServer) -> None:
        moved = f"; port {ev.busy} was busy, so {ev.port} was taken" if ev.busy else ""
        self.say(f"signaling server running at {ev.url} (embedded{moved})")

    def on_announced(self, ev: events.Announced) -> None:
        kind = {"tracker": "WebTorrent tracker", "peerjs": "PeerJS server"}.get(ev.via, ev.via)
        self.say(f"announced to the {kind} {ev.url}")
        self.waiting()

    def waiting(self, why: str = "") -> None:
        """Say once, when a rendezvous is up and no peer is yet, that we wait and how long:
        a fetch once said nothing for the 10 s between connecting and timing out."""
        if self.wait is None or self._waiting_said or self.connected or self._finished:
            return
        self._waiting_said = True
        self.say(f"{why}waiting for peers ({self.wait:g} s)")

    def on_lan_announced(self, ev: events.LanAnnounced) -> None:
        where = ev.signal or ", ".join(
            f"[{a}]:{ev.port}" if ":" in a else f"{a}:{ev.port}" for a in ev.addresses)
        self.say(f"announced on the LAN (mDNS) as {ev.service.split('._', 1)[0]} at {where}: "
                 "there, p2p fetch HASH is enough")

    def on_seeding(self, ev: events.Seeding) -> None:
        if ev.link is not None:
            self.say("hash: ", (ev.hash, "bold"))
            self.line("On the other machine run:")
            self.say("  ", (ev.command or "", "bold green"))
            self.say(f"or open {ev.watch} in a browser")
            if self.qr:
                self.qr_codes(("the link (p2p fetch)", ev.link), ("the watch page", ev.watch))
            self.line("Serving; press Ctrl-C to stop.")
        else:
            self.line("download complete; seeding until Ctrl-C")

    def qr_codes(self, *items: tuple[str, str | None]) -> None:
        from .qr import qr_text

        for what, data in items:
            if data:
                self.say(f"QR code of {what}:")
                self.console.print(Text(qr_text(data)), no_wrap=True, overflow="ignore",
                                   crop=False)

    def on_status(self, ev: events.Status) -> None:
        if self._status is None:
            self._status = StatusLine(terminal=self.console.is_terminal)
        if not self._status.should_print(time.monotonic(), ev.peers, ev.rate):
            return
        self.console.print(
            f"{plural(ev.peers, 'peer')}  sent {size(ev.sent)}  upload {rate(ev.rate)}",
            end="\r" if self.console.is_terminal else "\n",
        )

    # -- fetch

    def on_lan_searched(self, ev: events.LanSearched) -> None:
        if ev.url is not None:
            self.say(f"found a seeder on the LAN (mDNS) in {ev.seconds:.2f}s: {ev.url}")
        else:
            self.say(f"no seeder answered on the LAN in {ev.seconds:.1f}s; trying the "
                     "default signaling server")

    def on_signaling_connected(self, ev: events.SignalingConnected) -> None:
        self.say(f"connected to the signaling server at {ev.url}")
        self.waiting()

    def on_peer_joined(self, ev: events.PeerJoined) -> None:
        self.connected.add(ev.peer)
        self.say(f"peer {self.peer_names.joined(ev.peer, ev.connection, ev.pair)}")

    def on_peer_left(self, ev: events.PeerLeft) -> None:
        """Each departure is summed up by the bar's peer count, but the last one, mid-fetch,
        is said at once: what follows is a wait of --timeout seconds, not a stall."""
        if ev.peer not in self.connected:
            return
        self.connected.discard(ev.peer)
        if not self.connected and self.wait is not None and not self._finished:
            self._waiting_said = False
            self.waiting(f"peer {self.peer_names(ev.peer)}, the last one, left; ")

    def on_manifest(self, ev: events.Manifest) -> None:
        self.say((ev.name, "bold"), f" {size(ev.size)} in {plural(ev.pieces, 'piece')}")
        bar = self._bar()
        self.task = bar.add_task("fetch", total=ev.size, extra="")

    def on_resume(self, ev: events.Resume) -> None:
        self.say(f"resuming: {plural(ev.pieces, 'verified piece')} already on disk")

    def on_progress(self, ev: events.Progress) -> None:
        if self.progress is not None and self.task is not None and ev.have is not None:
            extra = plural(ev.peers, "peer")
            if ev.buffer_ahead is not None:
                extra += f", buffer {size(ev.buffer_ahead)} ahead"
            # `--select`: the bar counts the chosen files' pieces, not the whole share.
            self.progress.update(self.task, completed=ev.have, extra=extra,
                                 **({"total": ev.size} if ev.size is not None else {}))

    # -- stream

    def on_serving(self, ev: events.Serving) -> None:
        self.say("streaming at ", (ev.url, "bold"))

    def on_player_started(self, ev: events.PlayerStarted) -> None:
        self.say(f"started {ev.player}")

    def on_player_exited(self, ev: events.PlayerExited) -> None:
        self.say(f"player exited (code {ev.code})")

    def on_warning(self, ev: events.Warning) -> None:
        # The core words warnings with whole peer ids ("dropped peer wt0:<40 hex>: ..."):
        # a peer already shown by its short name is called by it here too.
        self.say(("warning:", "yellow"), f" {self.peer_names.shorten(ev.message)}")

    def on_manifest_rejected(self, ev: events.ManifestRejected) -> None:
        self.say(("warning:", "yellow"),
                 f" peer {self.peer_names(ev.peer)} sent a bad manifest: {ev.reason}")

    def on_piece_rejected(self, ev: events.PieceRejected) -> None:
        self.say(("warning:", "yellow"),
                 f" piece {ev.piece} failed verification; fetching it again")

    def on_done(self, ev: events.Done) -> None:
        self._finished = True
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=ev.size)
        self.close()
        # "done: a.bin -> a.bin" said nothing: the destination only when it is elsewhere.
        elsewhere = ev.path != "-" and os.path.normpath(ev.path) != os.path.normpath(ev.name)
        where = f" -> {ev.path}" if elsewhere else ""
        relayed = sum(ev.connections.get(p) == "relay" for p in ev.peers)
        self.say(
            ("done", "bold green"), f": {ev.name}{where}, {size(ev.size)} verified "
            f"in {ev.seconds:.1f}s from {plural(len(ev.peers), 'peer')}"
            + (f", {relayed} of them through a TURN relay" if relayed else "")
        )

    def on_reader_gone(self, ev: events.ReaderGone) -> None:
        self.close()
        self.line("output closed by the reader; stopping")
