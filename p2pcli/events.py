"""What the client tells its user: one frozen dataclass per event kind, and its `to_json`.

The core (swarm, fetch, stream, seed, doctor) hands these to an `EventSink`; cli/output.py
renders them for people, and `--json` prints each `to_json()` as one NDJSON line. That JSON
is a published interface (the README's `--json` lists, tests, users' scripts), so
`to_json` gives `{"event": kind, **fields}` with the keys in field order, and leaves out a
field declared `OPTIONAL` while it is None: those keys appear only when they apply.

The signaling server's own log lines are not here: they are the server's, not a client's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar

#: Metadata of a field whose key `to_json` leaves out while it is None (it does not apply
#: to this event, or not yet): `x: int | None = field(default=None, metadata=OPTIONAL)`.
OPTIONAL = {"omit_none": True}


@cache
def _layout(cls: type[Event]) -> tuple[tuple[str, bool], ...]:
    # Computed once per class: progress and piece events come many times a second.
    return tuple((f.name, bool(f.metadata.get("omit_none"))) for f in fields(cls))


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every client event; `kind` is its `event` name in JSON."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The event as today's NDJSON object: `event` first, then the fields in order."""
        out: dict[str, Any] = {"event": self.kind}
        for name, omit_none in _layout(type(self)):
            value = getattr(self, name)
            if value is None and omit_none:
                continue
            out[name] = value
        return out


EventSink = Callable[[Event], None]
"""Where the core sends its events (cli/output.py's `Reporter`, or a test's list.append)."""


# -- the swarm: signaling, peers, pieces ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SignalingConnected(Event):
    kind: ClassVar[str] = "signaling-connected"
    url: str
    "The signaling server we reached (the first that answered, of those configured)."
    peer: str | None
    "Our id on that server, as other peers see it."


@dataclass(frozen=True, kw_only=True)
class Announced(Event):
    kind: ClassVar[str] = "announced"
    via: str
    "The kind of rendezvous: tracker (a WebTorrent tracker) or peerjs."
    url: str
    "The rendezvous we announced the share to (our signaling server: `signaling-connected`)."


@dataclass(frozen=True, kw_only=True)
class IceConfig(Event):
    kind: ClassVar[str] = "ice-config"
    servers: list[Any]
    "The STUN/TURN servers kept (each RTCIceServer's `urls`: a URL or a list of them)."


@dataclass(frozen=True, kw_only=True)
class Warning(Event):  # named for its kind; use it as `events.Warning`, not bare
    kind: ClassVar[str] = "warning"
    message: str
    "What went wrong, in words for the user (a dropped peer, an unusable ICE server)."


@dataclass(frozen=True, kw_only=True)
class PeerJoined(Event):
    kind: ClassVar[str] = "peer-joined"
    peer: str
    "The peer's signaling id."
    connection: str
    "ICE candidate pair kind: host, srflx, relay (TURN) or unknown."
    pair: str | None = field(default=None, metadata=OPTIONAL)
    "The pair itself, local -> remote: 'srflx 203.0.113.5:40000 -> srflx 198.51.100.7:51000'."


@dataclass(frozen=True, kw_only=True)
class PeerRefused(Event):
    kind: ClassVar[str] = "peer-refused"
    peer: str
    "The peer's signaling id."
    reason: str
    "Why it got no slot (\"busy: ...\"), as the peer is told."


@dataclass(frozen=True, kw_only=True)
class PeerLeft(Event):
    kind: ClassVar[str] = "peer-left"
    peer: str
    "The peer's signaling id."
    received: int
    "Bytes of piece data it sent us."
    sent: int
    "Bytes of piece data we sent it."
    reason: str | None = field(default=None, metadata=OPTIONAL)
    "Why we dropped it; absent when it simply went away."


@dataclass(frozen=True, kw_only=True)
class LanSearched(Event):
    kind: ClassVar[str] = "lan-searched"
    seconds: float
    "How long the LAN was searched (a bare hash only: links and --signal skip it)."
    url: str | None = field(default=None, metadata=OPTIONAL)
    "The signaling server of the seeder found; absent when none answered."
    service: str | None = field(default=None, metadata=OPTIONAL)
    "Its DNS-SD instance name (with `url`)."


@dataclass(frozen=True, kw_only=True)
class Manifest(Event):
    kind: ClassVar[str] = "manifest"
    peer: str
    "The peer whose manifest matched the content hash."
    name: str
    "The sender's file name."
    size: int
    "Content size in bytes."
    piece_size: int
    "Bytes per piece (the last may be shorter)."
    pieces: int
    "Number of pieces."


@dataclass(frozen=True, kw_only=True)
class ManifestRejected(Event):
    kind: ClassVar[str] = "manifest-rejected"
    peer: str
    "The peer that sent it (it is dropped)."
    reason: str
    "What was wrong with it (hash mismatch, bad field)."


@dataclass(frozen=True, kw_only=True)
class PieceVerified(Event):
    kind: ClassVar[str] = "piece-verified"
    piece: int
    "Index of the piece whose SHA-256 matched."
    peers: list[str]
    "Signaling ids of the peers that sent its blocks, sorted."


@dataclass(frozen=True, kw_only=True)
class PieceRejected(Event):
    kind: ClassVar[str] = "piece-rejected"
    piece: int
    "Index of the piece that failed verification (it is fetched again)."
    peers: list[str]
    "Signaling ids of the peers that sent its blocks, sorted (they share the blame)."


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    peers: int
    "Peers connected and past the handshake."
    received: int
    "Piece bytes received from all peers."
    rate: int
    "Download rate, bytes/s (smoothed)."
    sent: int
    "Piece bytes sent to all peers."
    size: int | None = field(default=None, metadata=OPTIONAL)
    "Content size; from here to `verified`, present once the manifest is known."
    have: int | None = field(default=None, metadata=OPTIONAL)
    "Bytes in verified pieces."
    pieces: int | None = field(default=None, metadata=OPTIONAL)
    "Number of pieces."
    verified: int | None = field(default=None, metadata=OPTIONAL)
    "Pieces verified."
    written: int | None = field(default=None, metadata=OPTIONAL)
    "Pieces written to stdout (fetch to a pipe)."
    hashed: int | None = field(default=None, metadata=OPTIONAL)
    "Bytes SHA-256'd to check what we serve, comparable with `sent` (fetch)."
    served: int | None = field(default=None, metadata=OPTIONAL)
    "Bytes served to the player over local HTTP (stream)."
    buffer_ahead: int | None = field(default=None, metadata=OPTIONAL)
    "Verified bytes in a row from the play position (stream)."
    play_pos: int | None = field(default=None, metadata=OPTIONAL)
    "The player's position as a byte offset (stream, once mpv reports it)."
    paused: bool | None = field(default=None, metadata=OPTIONAL)
    "Whether the player is paused (with `play_pos`)."


# -- fetch and stream ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Resume(Event):
    kind: ClassVar[str] = "resume"
    pieces: int
    "Verified pieces found in the part file (not fetched again)."
    path: str
    "The part file."


@dataclass(frozen=True, kw_only=True)
class Done(Event):
    kind: ClassVar[str] = "done"
    name: str
    "The sender's file name."
    size: int
    "Content size in bytes, all verified."
    path: str
    "Where the content is, or \"-\" for stdout."
    seconds: float
    "Seconds since the command started."
    received: int
    "Piece bytes received."
    peers: dict[str, int]
    "Bytes received from each peer that gave us data, by signaling id."
    connections: dict[str, str]
    "ICE candidate pair kind of each of those peers (host, srflx, relay)."
    sent: int
    "Piece bytes sent to other peers meanwhile."


@dataclass(frozen=True, kw_only=True)
class Seeding(Event):
    kind: ClassVar[str] = "seeding"
    hash: str
    "The content id being served."
    link: str | None = field(default=None, metadata=OPTIONAL)
    "The p2p:// link (seed only; fetch --seed-after has none)."
    command: str | None = field(default=None, metadata=OPTIONAL)
    "The fetch command to run on another machine (with `link`)."
    watch: str | None = field(default=None, metadata=OPTIONAL)
    "The browser player's URL (with `link`)."


@dataclass(frozen=True, kw_only=True)
class ReaderGone(Event):
    kind: ClassVar[str] = "reader-gone"
    written_pieces: int
    "Pieces written to stdout before the reader closed it."


@dataclass(frozen=True, kw_only=True)
class Serving(Event):
    kind: ClassVar[str] = "serving"
    url: str
    "Local HTTP URL of the content (secret included)."
    name: str
    "The file name in the URL: the link's when it names the file, else the manifest's."
    size: int | None = field(default=None, metadata=OPTIONAL)
    """Content size in bytes; left out when the URL is published before the manifest is
    known (a link that names the file: the player starts while peers are found)."""


@dataclass(frozen=True, kw_only=True)
class Http(Event):
    kind: ClassVar[str] = "http"
    method: str
    "GET or HEAD."
    status: int
    "Response status."
    range: list[int] | None = field(default=None, metadata=OPTIONAL)
    "[start, end) bytes answered (absent for a refused request)."
    verified: int | None = field(default=None, metadata=OPTIONAL)
    "Pieces verified when the request came (with `range`)."
    error: str | None = field(default=None, metadata=OPTIONAL)
    "Why the request was refused (instead of `range`)."


@dataclass(frozen=True, kw_only=True)
class FirstByte(Event):
    kind: ClassVar[str] = "first-byte"
    seconds: float
    "From the start of the command to the first content byte served to the player."


@dataclass(frozen=True, kw_only=True)
class PlayerStarted(Event):
    kind: ClassVar[str] = "player-started"
    player: str
    "mpv, vlc or ffplay."
    pid: int
    "Its process id."


@dataclass(frozen=True, kw_only=True)
class PlayerExited(Event):
    kind: ClassVar[str] = "player-exited"
    code: int
    "Its exit status."


@dataclass(frozen=True, kw_only=True)
class StreamEnded(Event):
    kind: ClassVar[str] = "stream-ended"
    served: int
    "Bytes served to the player over local HTTP."


# -- seed ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Hashed(Event):
    kind: ClassVar[str] = "hashed"
    name: str
    "The file name being shared."
    size: int
    "File size in bytes."
    pieces: int
    "Number of pieces."
    piece_size: int
    "Bytes per piece."
    hash: str
    "The content id."
    seconds: float
    "How long hashing took (near zero from the cache)."


@dataclass(frozen=True, kw_only=True)
class SignalServer(Event):
    kind: ClassVar[str] = "signal-server"
    url: str
    "Address of the embedded signaling server, as put in the link."
    port: int
    "The port it listens on."
    busy: int | None = field(default=None, metadata=OPTIONAL)
    "The port asked for (--port), when it was taken by another program; absent otherwise."


@dataclass(frozen=True, kw_only=True)
class LanAnnounced(Event):
    kind: ClassVar[str] = "lan-announced"
    service: str
    "The DNS-SD instance announced over mDNS (docs/PROTOCOL.md), withdrawn on exit."
    port: int
    "The port announced in its SRV record (the signaling server's)."
    addresses: list[str]
    "The addresses announced (A/AAAA records)."
    signal: str | None = field(default=None, metadata=OPTIONAL)
    "The signaling URL put in TXT `s`: only for a server other than the embedded one."


@dataclass(frozen=True, kw_only=True)
class Status(Event):
    kind: ClassVar[str] = "status"
    peers: int
    "Peers connected and past the handshake."
    sent: int
    "Piece bytes sent to all peers."
    rate: int
    "Upload rate, bytes/s (smoothed)."


@dataclass(frozen=True, kw_only=True)
class UploadLimit(Event):
    """Every second while `seed --torrent --max-upload-rate` runs: the one limit over both
    protocols, as the process counts it (tokens granted, not bytes seen on the wire)."""

    kind: ClassVar[str] = "upload-limit"
    rate: int
    "The limit, bytes/s."
    seconds: float
    "Since the limit started."
    granted: dict[str, int]
    "Bytes let through so far by protocol (p2p, bittorrent); their sum is at most rate × seconds."


# -- doctor --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Check(Event):
    kind: ClassVar[str] = "check"
    check: str
    "Which check: signaling, ice-config, stun, turn or connection."
    status: str
    "ok, warn or fail."
    message: str
    "What was found, in words for the user."
    urls: list[str] | None = field(default=None, metadata=OPTIONAL)
    "Signaling servers tried (signaling, when none answered)."
    url: str | None = field(default=None, metadata=OPTIONAL)
    "The server checked (signaling that answered, stun, turn)."
    servers: list[str] | None = field(default=None, metadata=OPTIONAL)
    "ICE server URLs on offer (ice-config)."
    problem: str | None = field(default=None, metadata=OPTIONAL)
    "Why a STUN/TURN server failed: credentials, refused, timeout... (stun, turn)."
    address: str | None = field(default=None, metadata=OPTIONAL)
    "HOST:PORT the server gave: our public address (stun) or the relay's (turn)."
    connection: str | None = field(default=None, metadata=OPTIONAL)
    "Candidate pair kind of the test connection (connection)."
    policy: str | None = field(default=None, metadata=OPTIONAL)
    "ICE transport policy of the test connection: all or relay (connection)."


@dataclass(frozen=True, kw_only=True)
class Doctor(Event):
    kind: ClassVar[str] = "doctor"
    ok: bool
    "No check failed."
    failed: list[str]
    "Names of the checks that failed."


# -- info ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Info(Event):
    kind: ClassVar[str] = "info"
    hash: str
    "The content hash."
    name: str
    "The share's name: its file, its folder, or its first file and how many more."
    size: int
    "Total bytes."
    piece_size: int
    "Bytes per piece (the last may be shorter)."
    pieces: int
    "How many pieces."
    version: int
    "Manifest format: 1 a single file, 2 a folder or several files."
    files: list[dict[str, Any]]
    "Each file: {index, path, size}; index is what --select takes."
    folders: list[str]
    "Empty folders in the share."
    peers: int
    "Peers that answered (connected and handshook) while we looked."
    seeders: int
    "Of those, peers that have every piece."
