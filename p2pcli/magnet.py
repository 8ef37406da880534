"""BitTorrent names (sans-IO): magnet URIs, bencode and v1 .torrent metadata.

A magnet link names content by the SHA-1 of its bencoded info dictionary (BEP 9); the
info dictionary itself comes from a .torrent file or from peers (ut_metadata, see
`p2pcli.btwire`). Either way `parse_info` checks it against that hash before anything is
read from it, so a peer cannot describe other content than the link names.

Supported: `xt=urn:btih:` in hex (40 digits) or base32 (32 letters), `tr=` (trackers, in
order, duplicates dropped), `dn=` (display name), `xl=` (exact length). Ignored on
purpose: `ws=` (BEP 19 web seeds: fetching over plain HTTP is not this tool's job),
`x.pe=`, `so=`, `kt=`, `as=`/`xs=` (no second transport). BitTorrent v2 (`urn:btmh:`) is
not supported; a link with only a v2 hash is refused with a message saying so.

The bencode decoder is strict (BEP 3 canonical form: no leading zeros, no "-0", byte-string
keys in sorted order, nothing after the end) because the info hash is taken over the exact
bytes: a non-canonical info dict would hash one way and re-encode another.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

# A .torrent or info dict bigger than this is refused: 16 MiB of piece hashes describe
# 800k pieces, terabytes at any sane piece size. ut_metadata uses the same cap.
MAX_METADATA = 16 * 1024 * 1024
MAX_DEPTH = 64  # nesting of lists/dicts; deeper is an attack on the decoder's stack
MAX_FILES = 100_000
MIN_PIECE_LENGTH = 16 * 1024  # BEP 3 says a power of two; BEP 52 says at least 16 KiB
MAX_PIECE_LENGTH = 64 * 1024 * 1024


class MagnetError(ValueError):
    """A magnet link, .torrent or info dict we cannot use; the message says why."""


# -- bencode --------------------------------------------------------------------------------


def bdecode(data: bytes) -> object:
    """Decode one canonical bencoded value that spans all of `data`."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise MagnetError(f"bencode: {len(data) - end} bytes after the end of the value")
    return value


def bdecode_prefix(data: bytes) -> tuple[object, int]:
    """Decode one bencoded value at the start of `data`; return it and where it ends.

    ut_metadata messages are a bencoded dict followed by raw bytes, hence this form.
    """
    return _decode(data, 0, 0)


def info_span(data: bytes) -> tuple[int, int]:
    """Where the value of the top-level "info" key lies in a .torrent (start, end).

    The info hash is taken over those exact bytes, not over a re-encoding.
    """
    if data[:1] != b"d":
        raise MagnetError("a .torrent must be a bencoded dictionary")
    pos = 1
    while data[pos : pos + 1] != b"e":
        key, pos = _decode(data, pos, 1)
        start = pos
        _, pos = _decode(data, pos, 1)
        if key == b"info":
            return start, pos
    raise MagnetError("the .torrent has no info dictionary")


def _decode(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise MagnetError("bencode: nested too deep")
    if pos >= len(data):
        raise MagnetError("bencode: truncated")
    c = data[pos : pos + 1]
    if c == b"i":
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise MagnetError("bencode: unterminated integer")
        digits = data[pos + 1 : end]
        if not _canonical_int(digits):
            raise MagnetError(f"bencode: bad integer {digits[:24]!r}")
        return int(digits), end + 1
    if c == b"l":
        out: list[object] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            out.append(item)
        return out, pos + 1
    if c == b"d":
        d: dict[bytes, object] = {}
        pos += 1
        last: bytes | None = None
        while data[pos : pos + 1] != b"e":
            if pos >= len(data):
                raise MagnetError("bencode: truncated")
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, bytes):
                raise MagnetError("bencode: a dictionary key is not a string")
            if last is not None and key <= last:
                raise MagnetError("bencode: dictionary keys unsorted or repeated")
            last = key
            d[key], pos = _decode(data, pos, depth + 1)
        return d, pos + 1
    if c.isdigit():
        colon = data.find(b":", pos, pos + 12)
        if colon < 0:
            raise MagnetError("bencode: bad string length")
        digits = data[pos:colon]
        if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
            raise MagnetError(f"bencode: bad string length {digits!r}")
        n = int(digits)
        end = colon + 1 + n
        if end > len(data):
            raise MagnetError("bencode: truncated string")
        return data[colon + 1 : end], end
    raise MagnetError(f"bencode: unexpected byte {c!r} at {pos}")


def _canonical_int(digits: bytes) -> bool:
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit() or len(body) > 32:
        return False
    # "03" and "-0" are not canonical
    return not (body[:1] == b"0" and (len(body) > 1 or digits[:1] == b"-"))


def bencode(value: object) -> bytes:
    """Encode ints, bytes/str, lists and dicts (keys sorted) canonically."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str):
        _encode(value.encode(), out)
    elif isinstance(value, (bytes, bytearray)):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        items = [(k.encode() if isinstance(k, str) else k, v) for k, v in value.items()]
        for k, v in sorted(items):
            _encode(k, out)
            _encode(v, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


# -- magnet links ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MagnetLink:
    info_hash: bytes
    "SHA-1 of the bencoded info dictionary (20 bytes)."
    trackers: tuple[str, ...] = ()
    "Tracker URLs (tr=), in the link's order, without duplicates."
    display_name: str | None = None
    "The dn= name, only a hint: the info dict's name is what gets written."
    exact_length: int | None = None
    "The xl= total size in bytes, a hint for progress before metadata arrives."

    @property
    def hex(self) -> str:
        return self.info_hash.hex()

    def uri(self) -> str:
        """The link again, in hex form, with its trackers and name."""
        from urllib.parse import quote

        parts = [f"xt=urn:btih:{self.hex}"]
        if self.display_name is not None:
            parts.append("dn=" + quote(self.display_name, safe=""))
        if self.exact_length is not None:
            parts.append(f"xl={self.exact_length}")
        parts += ["tr=" + quote(t, safe="") for t in self.trackers]
        return "magnet:?" + "&".join(parts)


def is_magnet(text: str) -> bool:
    return text[:8].lower() == "magnet:?"


def parse_btih(text: str) -> bytes:
    """A BitTorrent v1 info hash in hex (40 digits) or base32 (32 letters)."""
    if len(text) == 40:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    elif len(text) == 32:
        try:
            return base64.b32decode(text.upper())
        except ValueError:
            pass
    raise MagnetError(f"not a BitTorrent info hash (40 hex digits or 32 base32 letters): {text!r}")


def parse_magnet(uri: str) -> MagnetLink:
    """Parse a magnet URI; raise MagnetError saying what is wrong with it."""
    if not is_magnet(uri):
        raise MagnetError("a magnet link starts with 'magnet:?'")
    query = urlsplit(uri).query
    info_hash: bytes | None = None
    trackers: list[str] = []
    name: str | None = None
    length: int | None = None
    saw_v2 = False
    for key, value in parse_qsl(query, keep_blank_values=True):
        key = key.lower()
        # Clients number repeated keys: xt.1=, tr.2=. The number carries no meaning here.
        base = key.split(".", 1)[0] if key.split(".", 1)[-1].isdigit() else key
        if base == "xt":
            if value.lower().startswith("urn:btih:"):
                h = parse_btih(value[9:])
                if info_hash is not None and h != info_hash:
                    raise MagnetError("the magnet link names two different v1 info hashes")
                info_hash = h
            elif value.lower().startswith("urn:btmh:"):
                saw_v2 = True
        elif base == "tr":
            if value and value not in trackers:
                trackers.append(value)
        elif base == "dn":
            name = value
        elif base == "xl":
            if not value.isdigit():
                raise MagnetError(f"xl= is not a length in bytes: {value!r}")
            length = int(value)
        # ws=, as=, xs=, x.pe=, so=, kt= and unknown keys: ignored (see the module docstring).
    if info_hash is None:
        if saw_v2:
            raise MagnetError("only BitTorrent v2 (urn:btmh:) is named; p2p reads v1 (urn:btih:)")
        raise MagnetError("the magnet link has no xt=urn:btih: info hash")
    return MagnetLink(info_hash, tuple(trackers), name, length)


# -- v1 info dictionaries and .torrent files -----------------------------------------------


@dataclass(frozen=True)
class TorrentFile:
    path: tuple[str, ...]
    "Path components under the torrent's name (empty for a single-file torrent)."
    length: int
    "Size in bytes."
    offset: int
    "Where the file starts in the torrent's concatenated bytes."


@dataclass(frozen=True)
class TorrentInfo:
    info_hash: bytes
    "SHA-1 of the info dict's bytes."
    name: str
    "The file name (single file) or folder name (multi-file)."
    piece_length: int
    "Bytes per piece; the last piece may be shorter."
    pieces: tuple[bytes, ...] = field(repr=False)
    "SHA-1 of each piece."
    files: tuple[TorrentFile, ...]
    "The files in torrent order; one with path () for a single-file torrent."
    multi_file: bool
    "True when the info dict has `files` (written as a folder)."
    raw: bytes = field(repr=False)
    "The info dict's bytes exactly as hashed (what ut_metadata serves)."

    @property
    def total_length(self) -> int:
        return sum(f.length for f in self.files)

    def piece_size(self, index: int) -> int:
        if index == len(self.pieces) - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length


def parse_info(raw: bytes, expected_hash: bytes | None = None) -> TorrentInfo:
    """Check and read a v1 info dictionary; `expected_hash` is the magnet link's."""
    if len(raw) > MAX_METADATA:
        raise MagnetError(f"the info dictionary is {len(raw)} bytes, over {MAX_METADATA}")
    info_hash = hashlib.sha1(raw).digest()
    if expected_hash is not None and info_hash != expected_hash:
        raise MagnetError("the metadata does not match the magnet link's info hash")
    info = bdecode(raw)
    if not isinstance(info, dict):
        raise MagnetError("the info dictionary is not a dictionary")
    name = _text(info.get(b"name.utf-8", info.get(b"name")), "name")
    _check_component(name)
    plen = info.get(b"piece length")
    if not isinstance(plen, int) or not MIN_PIECE_LENGTH <= plen <= MAX_PIECE_LENGTH:
        raise MagnetError(
            f"piece length {plen!r} is outside {MIN_PIECE_LENGTH}..{MAX_PIECE_LENGTH}"
        )
    blob = info.get(b"pieces")
    if not isinstance(blob, bytes) or len(blob) % 20:
        raise MagnetError("pieces is not a list of 20-byte SHA-1 hashes")
    pieces = tuple(blob[i : i + 20] for i in range(0, len(blob), 20))
    files: list[TorrentFile] = []
    offset = 0
    if b"files" in info:
        if b"length" in info:
            raise MagnetError("the info dictionary has both length and files")
        entries = info[b"files"]
        if not isinstance(entries, list) or not entries or len(entries) > MAX_FILES:
            raise MagnetError("files is not a list of 1..100000 entries")
        seen: set[tuple[str, ...]] = set()
        for entry in entries:
            if not isinstance(entry, dict):
                raise MagnetError("a files entry is not a dictionary")
            length = _length(entry.get(b"length"))
            parts = entry.get(b"path.utf-8", entry.get(b"path"))
            if not isinstance(parts, list) or not parts:
                raise MagnetError("a files entry has no path")
            path = tuple(_text(p, "path") for p in parts)
            for p in path:
                _check_component(p)
            if path in seen:
                raise MagnetError(f"the file {'/'.join(path)} is listed twice")
            seen.add(path)
            # BEP 47 padding files (attr "p") are bytes of the torrent too; written as is.
            files.append(TorrentFile(path, length, offset))
            offset += length
        _check_prefixes(seen)
        multi = True
    else:
        length = _length(info.get(b"length"))
        files.append(TorrentFile((), length, 0))
        offset = length
        multi = False
    need = -(-offset // plen) if offset else 0
    if len(pieces) != need:
        raise MagnetError(f"{len(pieces)} piece hashes for {offset} bytes; expected {need}")
    return TorrentInfo(info_hash, name, plen, pieces, tuple(files), multi, raw)


@dataclass(frozen=True)
class Torrent:
    info: TorrentInfo
    "The checked info dictionary."
    trackers: tuple[str, ...]
    "announce, then announce-list (BEP 12) flattened, without duplicates."

    def magnet(self) -> MagnetLink:
        return MagnetLink(
            self.info.info_hash, self.trackers, self.info.name, self.info.total_length
        )


def parse_torrent(data: bytes) -> Torrent:
    """Read a .torrent file's bytes."""
    if len(data) > MAX_METADATA + 1024 * 1024:
        raise MagnetError("the .torrent file is too large")
    meta = bdecode(data)
    if not isinstance(meta, dict):
        raise MagnetError("a .torrent must be a bencoded dictionary")
    start, end = info_span(data)
    info = parse_info(data[start:end])
    trackers: list[str] = []
    candidates: list[object] = [meta.get(b"announce")]
    tiers = meta.get(b"announce-list")
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, list):
                candidates.extend(tier)
    for url in candidates:
        if isinstance(url, bytes):
            text = url.decode("utf-8", "replace")
            if text and text not in trackers:
                trackers.append(text)
    return Torrent(info, tuple(trackers))


def make_info(
    name: str, data: bytes | list[tuple[tuple[str, ...], bytes]], piece_length: int
) -> bytes:
    """Build a v1 info dict's bytes (single file from bytes, or a list of (path, bytes)).

    Used by `p2p seed --torrent` and by tests to make torrents WebTorrent agrees with.
    """
    if isinstance(data, (bytes, bytearray)):
        blob = bytes(data)
        info: dict[str, object] = {"length": len(blob)}
    else:
        blob = b"".join(b for _, b in data)
        info = {"files": [{"length": len(b), "path": list(p)} for p, b in data]}
    info["name"] = name
    info["piece length"] = piece_length
    info["pieces"] = b"".join(
        hashlib.sha1(blob[i : i + piece_length]).digest() for i in range(0, len(blob), piece_length)
    )
    return bencode(info)


def _text(value: object, what: str) -> str:
    if not isinstance(value, bytes):
        raise MagnetError(f"{what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MagnetError(f"{what} is not UTF-8: {value[:40]!r}") from None


def _length(value: object) -> int:
    if not isinstance(value, int) or value < 0 or value > 1 << 50:
        raise MagnetError(f"bad file length {value!r}")
    return value


def _check_component(part: str) -> None:
    # A name from a peer becomes a path on disk: no traversal, no separators, no NULs.
    if part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part:
        raise MagnetError(f"unsafe file name in the torrent: {part!r}")


def _check_prefixes(paths: set[tuple[str, ...]]) -> None:
    # "a" as a file and "a/b" as a file cannot both be written.
    for path in paths:
        for i in range(1, len(path)):
            if path[:i] in paths:
                raise MagnetError(f"{'/'.join(path[:i])} is both a file and a folder")
