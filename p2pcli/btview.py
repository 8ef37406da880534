"""A torrent's info dict seen as a p2p manifest (sans-IO), so that `--select`
(selection.py), `p2p info`'s output and the stream server (stream.py) take a torrent as
they take a p2p share, without a second copy of any of them.

Also what p2p's store (store.PartFile, SpoolRing, treestore.TreePart) verifies against:
`piece_ok` checks a piece's SHA-1 (a p2p manifest's checks SHA-256), and `content_hash` is
the info hash, which the `.part` trailer carries, so a `.part` of another torrent (or of a
p2p share) under the same name is never resumed into. A multi-file torrent's files keep
the torrent's order (BEP 3 does not sort them), and a file's path is its path under the
torrent's folder, as a p2p folder share's paths are under its root.
"""

from __future__ import annotations

import hashlib

from .errors import NoPeers, UsageError
from .magnet import MagnetError, MagnetLink, TorrentInfo, parse_magnet, parse_torrent
from .manifest import Entry


class TorrentView:
    """The parts of `manifest.Manifest` that selection, info and streaming read."""

    def __init__(self, info: TorrentInfo) -> None:
        self.info = info
        self.name = info.name
        self.size = info.total_length
        self.piece_size = info.piece_length
        self.piece_count = len(info.pieces)
        self.files: tuple[Entry, ...] = tuple(
            Entry("/".join(f.path) if info.multi_file else info.name, f.length, f.offset)
            for f in info.files)
        self.entries: tuple[Entry, ...] | None = self.files if info.multi_file else None
        self.version = 2 if info.multi_file else 1
        "As a p2p manifest's: 1 a single file, 2 a folder (what `p2p info` reports)."
        self.content_id = info.info_hash.hex()
        self.content_hash = info.info_hash
        "What a `.part` trailer names (store._trailer): 20 bytes, never a p2p share's 32."
        self.piece_hashes = tuple(info.pieces)
        "SHA-1 of each piece."
        self.root = info.name if info.multi_file else ""
        "A multi-file torrent's files go into a folder named after it (treestore.TreePart)."

    @property
    def is_tree(self) -> bool:
        return self.info.multi_file

    def piece_offset(self, index: int) -> int:
        return index * self.piece_size

    def piece_length(self, index: int) -> int:
        return self.info.piece_size(index)

    def piece_ok(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        return (0 <= index < self.piece_count and len(data) == self.piece_length(index)
                and hashlib.sha1(data).digest() == self.piece_hashes[index])

    def pieces_for_range(self, start: int, end: int) -> range:
        if end <= start:
            return range(0)
        return range(start // self.piece_size, (end - 1) // self.piece_size + 1)


def is_bt_target(target: str) -> bool:
    """A magnet link or a .torrent file: the BitTorrent commands, not a p2p share. Only a
    path is a .torrent file: `p2p seed movie.torrent` prints `p2p://HASH?name=movie.torrent`,
    a p2p link whose name merely ends so."""
    if target[:8].lower() == "magnet:?":
        return True
    return target.endswith(".torrent") and "://" not in target


def bt_target(target: str, extra_trackers: list[str]) -> tuple[MagnetLink, TorrentInfo | None,
                                                                list[str]]:
    """Read a magnet link or a .torrent file: its link, its info dict when the file gave
    one, and its trackers followed by `extra_trackers` (--tracker). UsageError (exit 2)
    for a link or file that is not one."""
    from pathlib import Path

    info = None
    try:
        if target[:8].lower() == "magnet:?":
            link = parse_magnet(target)
        else:
            torrent = parse_torrent(Path(target).read_bytes())
            link, info = torrent.magnet(), torrent.info
    except MagnetError as e:
        what = "magnet link" if target[:8].lower() == "magnet:?" else "torrent file"
        raise UsageError(f"bad {what}: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot read {target}: {e.strerror}") from None
    trackers = [*link.trackers, *(t for t in extra_trackers if t not in link.trackers)]
    if not trackers:
        raise UsageError("the magnet link names no tracker (tr=): give --tracker ws://...")
    return link, info, trackers


def selected_pieces(view: TorrentView, specs: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """`--select` on a torrent: the chosen files' indices and the pieces they need.
    UsageError (exit 2) when a spec matches nothing (selection.select)."""
    from .selection import pieces_for, select

    chosen = select(view, specs)  # type: ignore[arg-type]  # a TorrentView reads as one
    return chosen, pieces_for(view, chosen)  # type: ignore[arg-type]


class Selector:
    """`--select` of a fetch, asked by the core once the metadata is known: the pieces the
    chosen files need (None: no --select, everything). To stdout it must be one file."""

    def __init__(self, specs: tuple[str, ...], to_stdout: bool) -> None:
        self.specs, self.to_stdout = specs, to_stdout
        self.chosen: list[int] | None = None
        "The chosen files' indices, once known (None: every file)."

    def __call__(self, info: TorrentInfo) -> list[int] | None:
        if self.to_stdout and info.multi_file and not self.specs:
            # As for a p2p folder share (download.Download.open_store): files are not
            # run together on stdout.
            raise UsageError(f"this torrent holds {len(info.files)} files: give -o DIR to "
                             "write them, or --select one of them to write it to stdout")
        if not self.specs:
            return None
        from .selection import one_file

        view = TorrentView(info)
        if self.to_stdout:
            one_file(view, self.specs, "stdout")  # type: ignore[arg-type]
        self.chosen, pieces = selected_pieces(view, self.specs)
        return pieces

    def size(self, info: TorrentInfo) -> int:
        """The bytes the chosen files hold."""
        if self.chosen is None:
            return info.total_length
        return sum(info.files[k].length for k in self.chosen)


def no_metadata(timeout: float) -> NoPeers:
    """The error of every torrent command (fetch, stream, info) whose magnet got no info
    dict from any peer within `timeout`."""
    return NoPeers(f"no BitTorrent peer sent the torrent's metadata within {timeout:g} s "
                   "(is a WebTorrent seeder announcing to that tracker?)")


def no_help(connected: int, timeout: float, what: str, *, have: int = 0,
            pipe: bool = False) -> NoPeers:
    """The error of a torrent fetch or stream (`what`: "download", "stream") that got no
    block for `timeout` once the metadata was known (btfetch.BtDownload.idle_for), with
    `connected` peers still connected, `have` pieces verified, `pipe`: to stdout (where
    nothing is kept: a .part is only claimed when there is one with something in it)."""
    if pipe:
        again = "nothing is kept of a download to stdout: run the same command again{} to " \
                "start over"
    elif have:
        again = "its .part is kept: run the same command again{} to resume"
    else:
        again = "run the same command again{} to retry"
    if not connected:
        return NoPeers(f"every BitTorrent peer left and none came back within {timeout:g} s; "
                       f"the {what} is incomplete ({again.format('')})")
    who = "the connected peer" if connected == 1 else f"the {connected} connected peers"
    return NoPeers(f"{who} sent no piece for {timeout:g} s (they lack the missing "
                   f"pieces); the {what} is incomplete ({again.format(' later')}, or with a "
                   "longer --timeout)")
