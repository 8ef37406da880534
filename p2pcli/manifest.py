"""The manifest: what a piece of content is, and the hash that names it (sans-IO).

A file is cut into fixed-size pieces, each hashed with SHA-256. The manifest lists the
file's name, size, piece size and piece hashes in one canonical byte encoding; the
SHA-256 of those bytes is the *content hash* users type and share. docs/PROTOCOL.md is
the normative description; this module is its reference implementation.

Layout (all integers big-endian)::

    offset  size  field
    0       4     magic  b"P2PM"
    4       1     format version (1)
    5       1     log2(piece size), 14..24  (16 KiB .. 16 MiB)
    6       2     name length N in bytes, 1..255
    8       N     file name, UTF-8
    8+N     8     file size in bytes
    16+N    32*P  SHA-256 of each piece, P = ceil(size / piece size)

Version 2 describes a folder or several files (docs/PROTOCOL.md 1.2.1): the pieces run
over the files' bytes concatenated in path order, across file boundaries::

    0       4     magic  b"P2PM"
    4       1     format version (2)
    5       1     log2(piece size), 14..24
    6       2     root name length N, 0..255 (0: the files go straight into the target)
    8       N     root name, UTF-8
    8+N     4     entry count E
    then E times: kind u8 (0 file, 1 empty folder), path length u16, path (UTF-8,
                  components joined by "/"), size u64 (0 for a folder)
    then          32*P  SHA-256 of each piece, P = ceil(total size / piece size)
"""

from __future__ import annotations

import hashlib
import operator
import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from .errors import InvalidHash, ManifestError, ManifestHashMismatch, PieceHashMismatch

MAGIC = b"P2PM"
FORMAT_VERSION = 1
TREE_VERSION = 2  # a folder or several files
MAX_ENTRIES = 1 << 20  # files and empty folders in one share
MAX_PATH_BYTES = 4096  # a path inside a share, "/"-joined
MAX_DEPTH = 64  # components in one path
FILE, FOLDER = 0, 1  # an entry's kind: its `folder` flag as an integer
HASH_LEN = 32
MIN_PIECE_LOG2 = 14  # 16 KiB: small enough that a 1-byte change re-sends little
MAX_PIECE_LOG2 = 24  # 16 MiB: bounds the memory one unverified piece can hold
TARGET_PIECES = 1024  # keeps the piece list (32 KiB of hashes) small until pieces hit 16 MiB
MAX_NAME_BYTES = 255  # the usual file-system limit for one path component
MAX_SIZE = 1 << 50  # 1 PiB: bounds the piece list a manifest can claim
_HEADER = struct.Struct(">4sBBH")
_SIZE = struct.Struct(">Q")
_COUNT = struct.Struct(">I")
_ENTRY = struct.Struct(">BH")
# Bidirectional overrides and isolates can make "gpj.exe" display as "exe.jpg".
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What Windows refuses in a name, refused on every platform: a share must be safe for every
# receiver. `:` also makes `C:evil.exe` drive-relative and `a:b` an alternate data stream.
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Windows opens a device, not a file, for these names, with any extension (`nul.txt`) and
# trailing spaces (`CON .txt`); superscript digits count as digits there. CONIN$ and
# CONOUT$ open the console. ASCII case only: Windows folds no other letter onto these.
_DEVICE = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]"
                     r"|CONIN\$|CONOUT\$)", re.IGNORECASE | re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]*")
_ASCII_SAFE = re.compile(r'[^\x00-\x1f\x7f/\\<>:"|?*]*')  # what the loop lets through
# An ASCII name that passes every rule of check_name, in one match: no refused character,
# 1..255 characters (bytes, being ASCII), not ending with a dot or space (so not "." or
# ".." either), and no device name before the first dot, trailing spaces ignored. Used on
# names already known to be ASCII; anything it does not match takes the full check.
_PLAIN_NAME = re.compile(
    r"(?!(?:CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]|CONIN\$|CONOUT\$)"
    r" *(?:\.|\Z))"
    r'[^\x00-\x1f\x7f/\\<>:"|?*]{0,254}[^\x00-\x1f\x7f/\\<>:"|?*. ]',
    re.IGNORECASE | re.ASCII).fullmatch


def piece_size_for(size: int) -> int:
    """The piece size for a file of `size` bytes.

    The smallest power of two that keeps the file within TARGET_PIECES pieces, clamped to
    16 KiB .. 16 MiB: 64 MiB -> 64 KiB pieces, 1 GiB -> 1 MiB, 16 GiB and up -> 16 MiB.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    wanted = -(-size // TARGET_PIECES)  # ceil
    log2 = max(MIN_PIECE_LOG2, (wanted - 1).bit_length())
    return 1 << min(log2, MAX_PIECE_LOG2)


def piece_count_for(size: int, piece_size: int) -> int:
    return -(-size // piece_size)


def check_name(name: str) -> None:
    """Reject names that are unsafe to create in the current directory on any system.

    One rule, also in p2pcli/web/js/manifest.js (checkName) and docs/PROTOCOL.md 1.2;
    tests/data/names.json holds the table both are tested against.
    """
    if name.isascii() and _PLAIN_NAME(name):  # most names: one match, no loop
        return
    if not name:
        raise ManifestError("manifest has an empty file name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise ManifestError(f"manifest file name is longer than {MAX_NAME_BYTES} bytes")
    if name in (".", ".."):
        raise ManifestError(f"manifest file name {name!r} is not a file name")
    # An ASCII name with none of the refused characters skips the loop below: a folder
    # share checks every name of 100,000 files, and the loop is most of that time.
    safe_ascii = name.isascii() and _ASCII_SAFE.fullmatch(name) is not None
    for ch in () if safe_ascii else name:
        if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI:
            raise ManifestError(
                f"manifest file name {name!r} contains a path separator or control character"
            )
        if ch in _WINDOWS_FORBIDDEN:
            raise ManifestError(
                f"manifest file name {name!r} contains {ch!r}, which Windows refuses in a name"
            )
    # Windows drops trailing dots and spaces: `evil.exe.` would be written as `evil.exe`.
    if name[-1] in ". ":
        raise ManifestError(f"manifest file name {name!r} ends with a dot or a space")
    if _DEVICE.fullmatch(name.split(".", 1)[0].rstrip(" ")):
        raise ManifestError(f"manifest file name {name!r} is a Windows device name")


def check_path(path: str) -> tuple[str, ...]:
    """A path inside a share: "/"-joined components, each a safe name (`check_name`), so
    no `..`, no absolute path, nothing a receiver's system would write elsewhere."""
    if not path or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ManifestError(f"manifest path of {len(path)} characters is empty or too long")
    parts = tuple(path.split("/"))
    if len(parts) > MAX_DEPTH:
        raise ManifestError(f"manifest path {path!r} is more than {MAX_DEPTH} folders deep")
    for part in parts:
        check_name(part)
    return parts


def path_key(path: str) -> list[str]:
    """The canonical order of a share's entries: component by component, by UTF-8 bytes
    (so `a/b` sorts before `a.txt`, and a folder's entries stay together). Python compares
    strings by code point, which is UTF-8 byte order (names hold no surrogates)."""
    return path.split("/")


def _fold(path: str) -> str:
    # What a case-insensitive, normalizing file system (Windows, macOS) sees as one name.
    if path.isascii():
        return path.lower()
    return unicodedata.normalize("NFC", path).casefold()


class Entry(NamedTuple):
    """One file or empty folder of a version-2 manifest (a tuple: a share may list 10^6)."""

    path: str
    "Relative path, components joined by '/'."
    size: int
    offset: int
    "Where the file's bytes start in the share's byte stream (pieces run across files)."
    folder: bool = False

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))

    @property
    def end(self) -> int:
        return self.offset + self.size


def make_entries(items: list[tuple[str, int, bool]]) -> tuple[Entry, ...]:
    """(path, size, folder) in canonical order -> entries with their offsets."""
    out, at = [], 0
    for path, size, folder in items:
        out.append(Entry(path, size, at, folder))
        at += size
    return tuple(out)


def check_entries(entries: tuple[Entry, ...]) -> None:
    if len(entries) > MAX_ENTRIES:
        raise ManifestError(f"manifest lists {len(entries)} entries, more than {MAX_ENTRIES}")
    # Once per entry of a share of up to 10^6: the common case (an ASCII name, the same
    # folder as the entry before) is inlined; every rule is the same for every entry.
    folded: set[str] = set()
    prefixes: set[str] = set()  # folded folders holding entries
    seen: set[str] = set()  # folders (exact) already checked: each is checked once
    last: str | None = None  # the entry before
    last_head: str | None = None  # its folder
    last_name = ""
    at = 0
    plain, add = _PLAIN_NAME, folded.add
    # Module constants as locals: each is read once per entry (~7% of this loop).
    short, max_size = MAX_PATH_BYTES // 4, MAX_SIZE
    for path, size, offset, folder in entries:
        # A character is at most 4 UTF-8 bytes: a short path needs no encoding to measure.
        if (len(path) > short or not path) and (not path or len(path) > MAX_PATH_BYTES or len(
                path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES):
            raise ManifestError(f"manifest path of {len(path)} characters is empty or too long")
        head, _, name = path.rpartition("/")
        ascii = path.isascii()
        if not (ascii and plain(name)):
            check_name(name)
        if head == last_head:
            # The same folder: canonical order (path_key) comes down to the names.
            if name <= last_name:
                raise ManifestError(f"manifest entries are not in canonical order at {path!r}")
        else:
            if head and head not in seen:
                parts = check_path(head)
                if len(parts) >= MAX_DEPTH:
                    raise ManifestError(f"manifest path {path!r} is more than {MAX_DEPTH} "
                                        "folders deep")
                for i in range(1, len(parts) + 1):
                    sub = "/".join(parts[:i])
                    if sub not in seen:
                        seen.add(sub)
                        prefixes.add(_fold(sub))
            if last is not None and path_key(path) <= path_key(last):
                raise ManifestError(f"manifest entries are not in canonical order at {path!r}")
            last_head = head
        last, last_name = path, name
        if folder and size:
            raise ManifestError(f"manifest folder {path!r} has a size")
        if offset != at or not 0 <= size <= max_size:
            raise ManifestError(f"manifest entry {path!r} has a bad size or offset")
        at += size
        f = path.lower() if ascii else _fold(path)
        if f in folded:
            raise ManifestError(f"manifest paths collide on case-insensitive systems at {path!r}")
        add(f)
    if folded & prefixes:
        raise ManifestError("manifest lists a file (or empty folder) that is also a folder "
                            "holding other entries")
    if at > MAX_SIZE:
        raise ManifestError(f"total size {at} out of range")


@dataclass(frozen=True)
class Manifest:
    """The description of one file. Build with `Manifest.create`, parse with `decode`."""

    name: str
    "File name, a single safe path component."
    size: int
    "File size in bytes."
    piece_size: int
    "Piece size in bytes, a power of two in 16 KiB .. 16 MiB."
    piece_hashes: tuple[bytes, ...]
    "SHA-256 digest of each piece, in order."
    version: int = FORMAT_VERSION
    "Manifest format version."
    root: str = ""
    "Version 2: the folder the files go into ('' = straight into the target)."
    entries: tuple[Entry, ...] | None = None
    "Version 2: the files and empty folders; None for a single file (version 1)."

    @classmethod
    def create(cls, name: str, size: int, piece_size: int, piece_hashes: list[bytes]) -> Manifest:
        m = cls(name=name, size=size, piece_size=piece_size, piece_hashes=tuple(piece_hashes))
        m.validate()
        return m

    @classmethod
    def create_tree(cls, root: str, items: list[tuple[str, int, bool]], piece_size: int,
                    piece_hashes: list[bytes], *, checked: bool = False) -> Manifest:
        """A version-2 manifest; `items` (path, size, folder) in `path_key` order.
        `checked`: the caller ran `check_entries` on these items already."""
        entries = make_entries(items)
        m = cls(name=tree_title(root, entries), size=sum(e.size for e in entries),
                piece_size=piece_size, piece_hashes=tuple(piece_hashes),
                version=TREE_VERSION, root=root, entries=entries)
        if checked:
            m.validate_geometry()
        else:
            m.validate()
        return m

    @property
    def is_tree(self) -> bool:
        return self.entries is not None

    @cached_property
    def files(self) -> tuple[Entry, ...]:
        """The files (not folders), in order; a single-file share's one file. Computed once:
        callers index it per file."""
        if self.entries is None:
            return (Entry(self.name, self.size, 0),)
        return tuple(e for e in self.entries if not e.folder)

    def validate(self) -> None:
        if self.version == TREE_VERSION and self.entries is not None:
            if self.root:
                check_name(self.root)
            check_entries(self.entries)
            if self.size != sum(e.size for e in self.entries):
                raise ManifestError("manifest total size differs from its files' sizes")
        elif self.version != FORMAT_VERSION or self.entries is not None:
            raise ManifestError(f"unsupported manifest version {self.version}")
        else:
            check_name(self.name)
        self.validate_geometry()

    def validate_geometry(self) -> None:
        """The piece size, the size and the hash list agree."""
        log2 = self.piece_size.bit_length() - 1
        # Range first: a piece size of 0 gives log2 -1, and 1 << -1 raises ValueError.
        if not MIN_PIECE_LOG2 <= log2 <= MAX_PIECE_LOG2 or self.piece_size != 1 << log2:
            raise ManifestError(f"piece size {self.piece_size} is not a power of two in range")
        if not 0 <= self.size <= MAX_SIZE:
            raise ManifestError(f"file size {self.size} out of range")
        if len(self.piece_hashes) != piece_count_for(self.size, self.piece_size):
            raise ManifestError(
                f"manifest lists {len(self.piece_hashes)} pieces but a file of {self.size} bytes "
                f"has {piece_count_for(self.size, self.piece_size)}"
            )
        if any(len(h) != HASH_LEN for h in self.piece_hashes):
            raise ManifestError("piece hash of wrong length")

    # -- geometry --------------------------------------------------------------------------

    @property
    def piece_count(self) -> int:
        return len(self.piece_hashes)

    def piece_offset(self, index: int) -> int:
        return index * self.piece_size

    def piece_length(self, index: int) -> int:
        if not 0 <= index < self.piece_count:
            raise IndexError(index)
        return min(self.piece_size, self.size - index * self.piece_size)

    def pieces_for_range(self, start: int, end: int) -> range:
        """Indices of the pieces covering bytes [start, end)."""
        if end <= start:
            return range(0)
        return range(start // self.piece_size, (end - 1) // self.piece_size + 1)

    # -- verification ----------------------------------------------------------------------

    def piece_ok(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        return (
            0 <= index < self.piece_count
            and len(data) == self.piece_length(index)
            and hashlib.sha256(data).digest() == self.piece_hashes[index]
        )

    def verify_piece(self, index: int, data: bytes | bytearray | memoryview) -> None:
        if not self.piece_ok(index, data):
            raise PieceHashMismatch(f"piece {index} does not match its SHA-256 in the manifest")

    # -- encoding --------------------------------------------------------------------------

    @cached_property
    def encoded(self) -> bytes:
        log2 = self.piece_size.bit_length() - 1
        if self.entries is not None:
            root = self.root.encode("utf-8")
            out = [_HEADER.pack(MAGIC, self.version, log2, len(root)), root,
                   _COUNT.pack(len(self.entries))]
            out += _encode_entries(self.entries)
            out += self.piece_hashes
            return b"".join(out)
        name = self.name.encode("utf-8")
        return b"".join(
            (
                _HEADER.pack(MAGIC, self.version, log2, len(name)),
                name,
                _SIZE.pack(self.size),
                *self.piece_hashes,
            )
        )

    def encode(self) -> bytes:
        return self.encoded

    @cached_property
    def content_hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    @property
    def content_id(self) -> str:
        """The content hash as users see it: 64 lowercase hex digits."""
        return self.content_hash.hex()


def _encode_entries(entries: tuple[Entry, ...]) -> list[bytes]:
    """Each entry's kind and path length, path, and size, in order: built with map() and
    slice assignment, C loops, since a share may list 10^6 entries."""
    paths = list(map(_PATH_OF, entries))
    joined = "\n".join(paths).encode("utf-8")
    raws = joined.split(b"\n")
    if len(raws) != len(paths):  # a path holding "\n" (a valid manifest has none)
        raws = [p.encode("utf-8") for p in paths]
    out: list[bytes] = [b""] * (3 * len(paths))
    # The kind is the folder flag as an integer: FOLDER is True (1), FILE False (0).
    out[0::3] = map(_ENTRY.pack, map(_FOLDER_OF, entries), map(len, raws))
    out[1::3] = raws
    out[2::3] = map(_SIZE.pack, map(_SIZE_OF, entries))
    return out


_PATH_OF, _SIZE_OF, _FOLDER_OF = (operator.itemgetter(i) for i in (0, 1, 3))  # of an Entry


def decode(data: bytes | bytearray | memoryview) -> Manifest:
    """Parse manifest bytes. Raises only `ManifestError` on bad input."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ManifestError("manifest is truncated")
    magic, version, log2, name_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ManifestError("not a p2p manifest (bad magic)")
    if version not in (FORMAT_VERSION, TREE_VERSION):
        raise ManifestError(f"unsupported manifest version {version}; upgrade p2p")
    if not MIN_PIECE_LOG2 <= log2 <= MAX_PIECE_LOG2:
        raise ManifestError(f"piece size 2^{log2} out of range")
    pos = _HEADER.size
    if version == TREE_VERSION:
        return _decode_tree(data, log2, name_len)
    if not 1 <= name_len <= MAX_NAME_BYTES or len(data) < pos + name_len + _SIZE.size:
        raise ManifestError("manifest is truncated or has a bad name length")
    try:
        name = data[pos : pos + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("manifest file name is not UTF-8") from None
    pos += name_len
    (size,) = _SIZE.unpack_from(data, pos)
    pos += _SIZE.size
    if size > MAX_SIZE:
        raise ManifestError(f"file size {size} out of range")
    piece_size = 1 << log2
    count = piece_count_for(size, piece_size)
    if len(data) - pos != HASH_LEN * count:
        raise ManifestError(
            f"manifest has {len(data) - pos} bytes of piece hashes, expected {HASH_LEN * count}"
        )
    hashes = tuple(data[pos + i * HASH_LEN : pos + (i + 1) * HASH_LEN] for i in range(count))
    m = Manifest(name=name, size=size, piece_size=piece_size, piece_hashes=hashes)
    m.validate()
    return m


def _decode_tree(data: bytes, log2: int, root_len: int) -> Manifest:
    pos = _HEADER.size
    if root_len > MAX_NAME_BYTES or len(data) < pos + root_len + _COUNT.size:
        raise ManifestError("manifest is truncated or has a bad name length")
    root = _utf8(data[pos : pos + root_len])
    pos += root_len
    (count,) = _COUNT.unpack_from(data, pos)
    pos += _COUNT.size
    if count > MAX_ENTRIES:
        raise ManifestError(f"manifest lists {count} entries, more than {MAX_ENTRIES}")
    items: list[tuple[str, int, bool]] = []
    for _ in range(count):
        if len(data) < pos + _ENTRY.size:
            raise ManifestError("manifest is truncated in its file list")
        kind, path_len = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if kind not in (FILE, FOLDER) or len(data) < pos + path_len + _SIZE.size:
            raise ManifestError("manifest has a bad entry in its file list")
        path = _utf8(data[pos : pos + path_len])
        pos += path_len
        (size,) = _SIZE.unpack_from(data, pos)
        pos += _SIZE.size
        if size > MAX_SIZE:
            raise ManifestError(f"file size {size} out of range")
        items.append((path, size, kind == FOLDER))
    total = sum(size for _, size, _ in items)
    if total > MAX_SIZE:
        raise ManifestError(f"total size {total} out of range")
    piece_size = 1 << log2
    count = piece_count_for(total, piece_size)
    if len(data) - pos != HASH_LEN * count:
        raise ManifestError(
            f"manifest has {len(data) - pos} bytes of piece hashes, expected {HASH_LEN * count}"
        )
    hashes = [data[pos + i * HASH_LEN : pos + (i + 1) * HASH_LEN] for i in range(count)]
    return Manifest.create_tree(root, items, piece_size, hashes)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("manifest file name is not UTF-8") from None


def tree_title(root: str, entries: tuple[Entry, ...]) -> str:
    """What a person calls a share: its folder, else its first file "and N more"."""
    if root:
        return root
    files = [e for e in entries if not e.folder] or list(entries)
    if not files:
        return "(empty)"
    first = files[0].path.rsplit("/", 1)[-1]
    return first if len(files) == 1 else f"{first} and {len(files) - 1} more"


def decode_verified(data: bytes | bytearray | memoryview, content_hash: bytes) -> Manifest:
    """Parse manifest bytes received from a peer, checking they name `content_hash`."""
    if hashlib.sha256(data).digest() != content_hash:
        raise ManifestHashMismatch("manifest does not hash to the requested content hash")
    return decode(data)


def parse_content_id(text: str) -> bytes:
    """A content hash typed by a user: 64 hex digits, any case."""
    t = text.strip()
    if len(t) != 2 * HASH_LEN:
        raise InvalidHash(
            f"{text!r} is not a content hash: expected {2 * HASH_LEN} hex digits, got {len(t)}"
        )
    # Not bytes.fromhex alone: it skips inner whitespace, so 64 characters could be 31 bytes.
    if not _HEX.fullmatch(t):
        raise InvalidHash(f"{text!r} is not a content hash: it has non-hex characters")
    return bytes.fromhex(t)
