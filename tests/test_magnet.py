"""p2pcli.magnet: magnet URIs, strict bencode, v1 info dicts and .torrent files."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pcli.magnet import (
    MagnetError,
    bdecode,
    bdecode_prefix,
    bencode,
    make_info,
    parse_info,
    parse_magnet,
    parse_torrent,
)

H = bytes(range(20))

values = st.recursive(
    st.integers(min_value=-(10**20), max_value=10**20) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_bencode_round_trips(value):
    assert bdecode(bencode(value)) == value


@given(st.binary(max_size=200))
def test_bdecode_never_crashes_on_junk(data):
    try:
        value = bdecode(data)
    except MagnetError:
        return
    assert bencode(value) == data  # whatever decodes is canonical


@pytest.mark.parametrize(
    "bad",
    [
        b"i03e",
        b"i-0e",
        b"ie",
        b"i1",
        b"03:abc",
        b"5:abc",
        b"d1:bi1e1:ai2ee",
        b"d1:ai1e1:ai2ee",
        b"di1ei2ee",
        b"l",
        b"i1ei2e",
        b"x",
        b"l" * 100 + b"e" * 100,
    ],
)
def test_bdecode_refuses_non_canonical(bad):
    with pytest.raises(MagnetError):
        bdecode(bad)


def test_bdecode_prefix_leaves_the_tail():
    assert bdecode_prefix(b"d1:ai1eeRAW") == ({b"a": 1}, 8)


def test_magnet_hex_and_base32_name_the_same_hash():
    b32 = base64.b32encode(H).decode()
    a = parse_magnet(f"magnet:?xt=urn:btih:{H.hex()}")
    b = parse_magnet(f"magnet:?xt=urn:btih:{b32.lower()}")
    assert a.info_hash == b.info_hash == H


def test_magnet_fields():
    link = parse_magnet(
        f"magnet:?xt=urn:btih:{H.hex().upper()}&dn=My%20File.bin&xl=1234"
        "&tr=ws%3A%2F%2F127.0.0.1%3A8000&tr.2=wss://t.example/a&tr=ws%3A%2F%2F127.0.0.1%3A8000"
        "&ws=http://seed.example/file&x.pe=1.2.3.4:5"
    )
    assert link.info_hash == H
    assert link.display_name == "My File.bin"
    assert link.exact_length == 1234
    assert link.trackers == ("ws://127.0.0.1:8000", "wss://t.example/a")
    assert parse_magnet(link.uri()) == link


@pytest.mark.parametrize(
    "uri",
    [
        "http://x",
        "magnet:?dn=x",
        "magnet:?xt=urn:btih:1234",
        f"magnet:?xt=urn:btih:{'z' * 40}",
        f"magnet:?xt=urn:btih:{H.hex()}&xl=-1",
        f"magnet:?xt=urn:btih:{H.hex()}&xt=urn:btih:{bytes(20).hex()}",
        "magnet:?xt=urn:btmh:1220" + "00" * 32,
    ],
)
def test_bad_magnets_say_why(uri):
    with pytest.raises(MagnetError):
        parse_magnet(uri)


def test_v2_only_link_says_v1_is_needed():
    with pytest.raises(MagnetError, match="v2"):
        parse_magnet("magnet:?xt=urn:btmh:1220" + "00" * 32)


@given(st.binary(max_size=100_000), st.sampled_from([16384, 32768]))
def test_single_file_info_round_trips(data, plen):
    raw = make_info("f.bin", data, plen)
    info = parse_info(raw, hashlib.sha1(raw).digest())
    assert info.total_length == len(data)
    assert not info.multi_file and info.files[0].path == ()
    assert len(info.pieces) == -(-len(data) // plen)
    for i, h in enumerate(info.pieces):
        chunk = data[i * plen : i * plen + info.piece_size(i)]
        assert hashlib.sha1(chunk).digest() == h
    assert info.raw == raw


def test_multi_file_info():
    raw = make_info("dir", [(("a.txt",), b"x" * 20000), (("sub", "b.bin"), b"y" * 30000)], 16384)
    info = parse_info(raw)
    assert info.multi_file and info.name == "dir"
    assert [(f.path, f.length, f.offset) for f in info.files] == [
        (("a.txt",), 20000, 0),
        (("sub", "b.bin"), 30000, 20000),
    ]
    assert info.total_length == 50000 and len(info.pieces) == 4


def test_info_hash_mismatch_is_refused():
    raw = make_info("f", b"abc", 16384)
    with pytest.raises(MagnetError, match="info hash"):
        parse_info(raw, bytes(20))


@pytest.mark.parametrize(
    "info",
    [
        {"name": "..", "piece length": 16384, "pieces": b"", "length": 0},
        {"name": "a/b", "piece length": 16384, "pieces": b"", "length": 0},
        {"name": "f", "piece length": 100, "pieces": b"", "length": 0},
        {"name": "f", "piece length": 16384, "pieces": b"x" * 19, "length": 1},
        {"name": "f", "piece length": 16384, "pieces": b"x" * 40, "length": 1},
        {"name": "f", "piece length": 16384, "pieces": b"", "length": -1},
        {
            "name": "d",
            "piece length": 16384,
            "pieces": b"x" * 20,
            "files": [{"length": 1, "path": ["..", "etc"]}],
        },
        {
            "name": "d",
            "piece length": 16384,
            "pieces": b"x" * 20,
            "files": [{"length": 1, "path": ["a"]}, {"length": 0, "path": ["a", "b"]}],
        },
        {
            "name": "d",
            "piece length": 16384,
            "pieces": b"x" * 20,
            "files": [{"length": 1, "path": ["a"]}, {"length": 0, "path": ["a"]}],
        },
    ],
)
def test_unsafe_or_inconsistent_info_is_refused(info):
    with pytest.raises(MagnetError):
        parse_info(bencode(info))


def test_torrent_file_hashes_the_exact_info_bytes():
    raw = make_info("f.bin", b"hello" * 5000, 16384)
    data = (
        b"d8:announce14:ws://t.example13:announce-listll14:ws://t.example7:wss://xee"
        b"10:created by3:now4:info" + raw + b"e"
    )
    torrent = parse_torrent(data)
    assert torrent.info.info_hash == hashlib.sha1(raw).digest()
    assert torrent.trackers == ("ws://t.example", "wss://x")
    link = torrent.magnet()
    assert link.exact_length == 25000 and link.display_name == "f.bin"
