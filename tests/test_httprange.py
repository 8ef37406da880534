"""Range headers (RFC 9110 section 14), sans-IO: what `p2p stream` answers to each.

The answer is one of three: the whole body (200), one range (206), or 416. Malformed,
unknown-unit and inverted headers are ignored (200), never an error; positions of any
length are just numbers.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pcli.httprange import ByteRange, RangeNotSatisfiable, parse_range

WHOLE, UNSAT = 200, 416
BIG = "9" * 5000  # past Python's 4,300-digit int() limit
ZEROS = "0" * 5000

# (header, size, expected): expected is WHOLE, UNSAT or (start, end) with end exclusive.
TABLE: list[tuple[str | None, int, object]] = [
    (None, 100, WHOLE),
    # one int-range
    ("bytes=0-", 100, (0, 100)),
    ("bytes=0-0", 100, (0, 1)),
    ("bytes=10-19", 100, (10, 20)),
    ("bytes=10-1000", 100, (10, 100)),
    ("bytes=99-", 100, (99, 100)),
    ("bytes=100-", 100, UNSAT),
    ("bytes=100-200", 100, UNSAT),
    ("BYTES=1-2", 100, (1, 3)),  # range units are case-insensitive
    ("Bytes=1-2", 100, (1, 3)),
    ("bytes=0001-0002", 100, (1, 3)),
    # suffix ranges
    ("bytes=-1", 100, (99, 100)),
    ("bytes=-100", 100, (0, 100)),
    ("bytes=-1000", 100, (0, 100)),
    ("bytes=-0", 100, UNSAT),
    # an empty body: only a non-zero suffix is satisfiable, and it selects nothing
    ("bytes=0-", 0, UNSAT),
    ("bytes=-5", 0, WHOLE),
    # thousands of digits: positions, not errors
    (f"bytes={BIG}-", 100, UNSAT),
    (f"bytes=0-{BIG}", 100, (0, 100)),
    (f"bytes=-{BIG}", 100, (0, 100)),
    (f"bytes={ZEROS}5-{ZEROS}9", 100, (5, 10)),
    (f"bytes={BIG}-{BIG}", 100, UNSAT),
    (f"bytes={BIG}9-{BIG}", 100, WHOLE),  # inverted, however long
    (f"bytes={ZEROS}-", 100, (0, 100)),
    # other units: MUST be ignored
    ("items=0-1", 100, WHOLE),
    ("none", 100, WHOLE),
    ("=0-1", 100, WHOLE),
    ("bytes 0-1", 100, WHOLE),
    ("bytes0-1", 100, WHOLE),
    # invalid for bytes: ignored
    ("bytes=9-3", 100, WHOLE),
    ("bytes=abc", 100, WHOLE),
    ("bytes=", 100, WHOLE),
    ("bytes=-", 100, WHOLE),
    ("bytes=,", 100, WHOLE),
    ("bytes=1-2-3", 100, WHOLE),
    ("bytes=0x10-", 100, WHOLE),
    ("bytes=+1-2", 100, WHOLE),
    ("bytes=1.5-2", 100, WHOLE),
    ("bytes=\u0661-\u0662", 100, WHOLE),  # Arabic-Indic digits: int() takes them, HTTP does not
    ("bytes=1 - 2", 100, WHOLE),
    ("bytes=0-1,9-3", 100, WHOLE),  # one invalid spec invalidates the header
    ("bytes=0-1,abc", 100, WHOLE),
    # list syntax: optional whitespace around commas, empty elements ignored
    ("bytes= 0-1", 100, (0, 2)),
    ("bytes=0-1 ,", 100, (0, 2)),
    ("bytes=,,0-1,,", 100, (0, 2)),
    # several ranges: the whole body, or 416 if none is satisfiable
    ("bytes=0-1,5-6", 100, WHOLE),
    ("bytes=0-1, -5", 100, WHOLE),
    ("bytes=0-1,200-300", 100, WHOLE),
    ("bytes=200-,300-", 100, UNSAT),
    ("bytes=-0,-0", 100, UNSAT),
]


def outcome(header: str | None, size: int, **kw: str | None) -> object:
    try:
        r = parse_range(header, size, **kw)  # type: ignore[arg-type]
    except RangeNotSatisfiable:
        return UNSAT
    return WHOLE if r is None else (r.start, r.end)


@pytest.mark.parametrize(("header", "size", "expected"), TABLE,
                         ids=[str(h)[:40] for h, _, _ in TABLE])
def test_range_table(header: str | None, size: int, expected: object) -> None:
    assert outcome(header, size) == expected


ETAG = '"abc123"'


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, (0, 10)),
        (ETAG, (0, 10)),  # our strong validator: honour Range
        ('"other"', WHOLE),  # someone else's copy: send it all
        (f"W/{ETAG}", WHOLE),  # weak validators never match (RFC 9110 13.1.5)
        ("Tue, 15 Nov 1994 08:12:31 GMT", WHOLE),  # we send no Last-Modified
        ("", WHOLE),
    ],
)
def test_if_range_that_is_not_our_etag_means_the_whole_body(
    if_range: str | None, expected: object
) -> None:
    assert outcome("bytes=0-9", 100, if_range=if_range, etag=ETAG) == expected


# -- properties over every header --------------------------------------------------------------

range_chars = st.sampled_from([*"bytesBYTES=0123456789-, \t;x\u0661", "9" * 50])
headers = st.one_of(
    st.text(),
    st.lists(range_chars, max_size=40).map("".join),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.text("0123456789", max_size=6000),
              st.text("0123456789", max_size=6000)),
)


@given(headers, st.integers(0, 10**12))
def test_any_header_gives_a_range_inside_the_body_or_whole_or_416(header: str, size: int) -> None:
    """Nothing a client sends makes the parser fail: no ValueError from int(), no 400."""
    try:
        r = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if r is not None:
        assert isinstance(r, ByteRange)
        assert 0 <= r.start < r.end <= size


def reference(header: str, size: int) -> object:
    """A single int-range or suffix range by the RFC's words, with unbounded ints."""
    spec = header.removeprefix("bytes=")
    first, _, last = spec.partition("-")
    if not first:
        n = int(last)
        if n == 0:
            return UNSAT
        return (max(0, size - n), size) if size else WHOLE
    a = int(first)
    if last and int(last) < a:
        return WHOLE
    if a >= size:
        return UNSAT
    return (a, size if not last else min(int(last) + 1, size))


digits = st.one_of(st.integers(0, 10**6).map(str), st.text("0123456789", min_size=1,
                                                               max_size=5000))


@given(st.one_of(st.builds(lambda a, b: f"bytes={a}-{b}", digits, st.one_of(st.just(""), digits)),
                 st.builds(lambda n: f"bytes=-{n}", digits)),
       st.integers(0, 2 * 10**6))
def test_single_ranges_match_the_rfc_with_unbounded_integers(header: str, size: int) -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the reference may convert anything
    try:
        expected = reference(header, size)
    finally:
        sys.set_int_max_str_digits(old)
    assert outcome(header, size) == expected
