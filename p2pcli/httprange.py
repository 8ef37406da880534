"""HTTP Range requests (RFC 9110 section 14), single range, sans-IO."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class MalformedRange(ValueError):
    """The Range header is not valid syntax: answer 400."""


class RangeNotSatisfiable(ValueError):
    """No byte of the range exists: answer 416 with `Content-Range: bytes */size`."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    "First byte."
    end: int
    "One past the last byte."

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to serve, or None for the whole body (no header, or several ranges).

    Several ranges would need a multipart/byteranges body; RFC 9110 lets a server ignore
    Range instead, and players never ask for more than one.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or not spec.strip():
        raise MalformedRange(f"unsupported Range header {header!r}")
    if "," in spec:
        parts = [p for p in spec.split(",") if p.strip()]
        for p in parts:
            if not _SPEC.match(p):
                raise MalformedRange(f"malformed Range header {header!r}")
        return None
    m = _SPEC.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        raise MalformedRange(f"malformed Range header {header!r}")
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range")
        return ByteRange(max(0, size - n), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        raise MalformedRange(f"Range header {header!r} ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, file has {size} bytes")
    return ByteRange(start, min(end, size))
