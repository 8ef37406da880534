"""HTTP Range requests (RFC 9110 section 14), sans-IO.

What to answer is decided here from the header text and the size alone:

- no header, a unit other than `bytes` (14.2: MUST be ignored), or a header that is not
  valid syntax (14.2: MAY be ignored): the whole body, 200;
- one satisfiable range: that range, 206;
- valid, but no range starts inside the body: 416;
- several ranges of which one is satisfiable: the whole body, 200 (a server may ignore
  Range; a multipart/byteranges body is not worth it, players never ask for one);
- an `If-Range` that is not our strong ETag (13.1.5): the whole body, 200.

Positions are compared as digit strings and converted only once they are known to be
small, so a position of thousands of digits is just "past the end", never an error
(Python refuses `int()` on 4,300+ digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 9110 14.1.1/14.1.2: range-spec = int-range / suffix-range, ASCII digits only
# (`\d` would also take other scripts' digits, which `int()` then accepts).
_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-([0-9]+)")
_OWS = " \t"


class RangeNotSatisfiable(ValueError):
    """No requested range starts inside the body: answer 416 with `Content-Range: bytes */size`."""


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


@dataclass(frozen=True)
class _Spec:
    """One range-spec, positions as digit strings without leading zeros."""

    first: str | None
    "first-pos, or None for a suffix range."
    last: str | None
    "last-pos (int-range) or suffix-length (suffix range); None when open-ended."


def _digits(s: str) -> str:
    return s.lstrip("0") or "0"


def _less(a: str, b: str) -> bool:
    """a < b for digit strings without leading zeros, however long."""
    return (len(a), a) < (len(b), b)


def _capped(d: str, cap: int) -> int:
    """min(int(d), cap) without converting a number longer than cap."""
    if len(d) > len(str(cap)):
        return cap
    return min(int(d), cap)


def _specs(header: str) -> list[_Spec] | None:
    """The range-specs of a `bytes=` header, or None if the header is not valid syntax
    for the bytes unit (including any other unit)."""
    unit, sep, range_set = header.partition("=")
    # Range units are case-insensitive tokens (14.1); no whitespace around "=".
    if not sep or unit.lower() != "bytes":
        return None
    specs: list[_Spec] = []
    # 1#range-spec: a comma list; empty elements are allowed and ignored (RFC 9110 5.6.1).
    for element in range_set.split(","):
        element = element.strip(_OWS)
        if not element:
            continue
        if m := _INT_RANGE.fullmatch(element):
            first = _digits(m.group(1))
            last = _digits(m.group(2)) if m.group(2) else None
            if last is not None and _less(last, first):
                return None  # 14.1.2: last-pos before first-pos makes the whole header invalid
            specs.append(_Spec(first, last))
        elif m := _SUFFIX_RANGE.fullmatch(element):
            specs.append(_Spec(None, _digits(m.group(1))))
        else:
            return None
    return specs or None


def _resolve(spec: _Spec, size: int) -> ByteRange | None:
    """The bytes one range-spec selects, or None if it is unsatisfiable (14.1.2)."""
    if spec.first is None:  # suffix: the last N bytes; satisfiable when N > 0
        assert spec.last is not None
        n = _capped(spec.last, size)
        if spec.last == "0":
            return None
        return ByteRange(size - n, size)
    start = _capped(spec.first, size)
    if start >= size:
        return None
    end = size if spec.last is None else _capped(spec.last, size - 1) + 1
    return ByteRange(start, end)


def parse_range(
    header: str | None, size: int, *, if_range: str | None = None, etag: str | None = None
) -> ByteRange | None:
    """The range to serve, or None for the whole body with 200.

    Raises RangeNotSatisfiable when the header is valid but selects nothing.
    `if_range`/`etag`: the request's If-Range and our strong ETag; a mismatch (or a date,
    since we send no Last-Modified) means the client's copy is not ours: ignore Range.
    """
    if header is None:
        return None
    if if_range is not None and (etag is None or if_range.strip(_OWS) != etag):
        return None
    specs = _specs(header)
    if specs is None:
        return None
    ranges = [r for r in (_resolve(s, size) for s in specs) if r is not None]
    if not ranges:
        raise RangeNotSatisfiable(f"no range of {header[:80]!r} starts inside {size} bytes")
    if len(specs) > 1:
        return None
    r = ranges[0]
    return None if r.length == 0 else r
