"""Share links, watch URLs and bare hashes: what `p2p fetch <target>` accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import P2P
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.errors import ExitCode, InvalidHash, InvalidLink, UsageError
from p2pcli.link import ACCEPTED, Target, make_link, parse_target

HASH = bytes(range(32))
HEX = HASH.hex()  # 000102...1f
NOT_ONE = "not a link or a content hash; expected a p2p:// link"


# -- the link format -----------------------------------------------------------------------


def test_link_format_is_percent_encoded_query() -> None:
    link = make_link(HASH, ["https://sig.example/socket.io"], "my file.mkv", "t0k")
    assert link == (
        f"p2p://{HEX}?signal=https%3A%2F%2Fsig.example%2Fsocket.io&name=my%20file.mkv&token=t0k"
    )


def test_link_without_signals_name_or_token_is_just_the_hash() -> None:
    assert make_link(HASH, []) == f"p2p://{HEX}"
    assert make_link(HASH, [], name="", token="") == f"p2p://{HEX}"  # empty means absent
    assert parse_target(f"p2p://{HEX}") == Target(HASH)


def test_round_trip_with_several_signals_unicode_name_and_token() -> None:
    signals = (
        "https://signal.example.com:8443/socket.io?room=a&x=1",
        "ws://127.0.0.1:8080/ws",
        "wss://[::1]:9000",
        "http://localhost",
    )
    name = "Holiday vidéo 🎬 #1 (final) + more & less=50% ?.mkv"
    token = "s3cr3t/+&=?#% é"
    link = make_link(HASH, signals, name, token)
    assert link.isascii() and " " not in link
    t = parse_target(link)
    assert t == Target(HASH, signals, name, token)
    assert t.content_id == HEX


def test_signals_keep_their_order() -> None:
    a, b = "http://a.example", "http://b.example"
    assert parse_target(make_link(HASH, [b, a])).signals == (b, a)


def test_uppercase_hash_and_scheme_and_surrounding_whitespace_are_accepted() -> None:
    t = parse_target(f"  P2P://{HEX.upper()}?signal=http%3A%2F%2Fh\n")
    assert t == Target(HASH, ("http://h",))


def test_unencoded_query_values_are_tolerated() -> None:
    # People paste links into chats that decode them; be lenient where it is unambiguous.
    t = parse_target(f"p2p://{HEX}?signal=http://h:1/x&name=a b")
    assert t.signals == ("http://h:1/x",)
    assert t.name == "a b"


def test_empty_query_values_mean_absent() -> None:
    assert parse_target(f"p2p://{HEX}?signal=&name=&token=") == Target(HASH)


# -- watch URLs and bare hashes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"http://host:8080/watch/{HEX}", Target(HASH, ("http://host:8080",))),
        (f"https://p2p.example/watch/{HEX}/", Target(HASH, ("https://p2p.example",))),
        (
            f"https://p2p.example/watch/{HEX.upper()}?token=abc",
            Target(HASH, ("https://p2p.example",), None, "abc"),
        ),
    ],
)
def test_watch_url_names_its_origin_as_the_signaling_server(url: str, expected: Target) -> None:
    assert parse_target(url) == expected


@pytest.mark.parametrize("text", [HEX, HEX.upper(), f" {HEX}\n"])
def test_bare_hash(text: str) -> None:
    assert parse_target(text) == Target(HASH)


# -- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", InvalidLink, NOT_ONE),
        ("   ", InvalidLink, NOT_ONE),
        (HEX[:63], InvalidHash, "got 63"),
        ("abc123", InvalidHash, "got 6"),
        (HEX[:63] + "z", InvalidHash, "non-hex"),
        (HEX[:30] + "  " + HEX[:32], InvalidHash, "non-hex"),  # would be 31 bytes
        ("hello world", InvalidLink, NOT_ONE),
        ("not-a-hash", InvalidLink, NOT_ONE),
        (f"magnet:?xt=urn:btih:{HEX}", InvalidLink, NOT_ONE),
        (f"ftp://{HEX}", InvalidLink, "not a p2p link"),
        (f"p2p:/{HEX}", InvalidLink, NOT_ONE),
        (f"p2p://{HEX[:63]}", InvalidLink, "64-hex-digit"),
        (f"p2p://{HEX}0", InvalidLink, "64-hex-digit"),
        (f"p2p://{HEX[:63]}g", InvalidLink, "64-hex-digit"),
        ("p2p://", InvalidLink, "64-hex-digit"),
        (f"p2p://user@{HEX}", InvalidLink, "64-hex-digit"),
        (f"p2p://{HEX}?signal=ftp%3A%2F%2Fh", InvalidLink, "expected http"),
        (f"p2p://{HEX}?signal=javascript:alert(1)", InvalidLink, "expected http"),
        (f"p2p://{HEX}?signal=http%3A%2F%2F", InvalidLink, "expected http"),  # no host
        (f"p2p://{HEX}?signal=sig.example", InvalidLink, "expected http"),  # no scheme
        (f"p2p://{HEX}?signal=http://%5B", InvalidLink, "signaling URL"),  # bad IPv6 host
        (f"p2p://{HEX}?signal=http://h&signal=file:///etc", InvalidLink, "expected http"),
        ("p2p://[", InvalidLink, "not a valid link"),
        (f"http://host/watch/{HEX[:63]}", InvalidLink, "not a p2p link"),
        (f"http://host/files/{HEX}", InvalidLink, "not a p2p link"),
        (f"http:///watch/{HEX}", InvalidLink, "not a p2p link"),  # no host
        (f"https://host/watch/{HEX}/extra", InvalidLink, "not a p2p link"),
        ("://", InvalidLink, "not a p2p link"),
    ],
)
def test_malformed_targets_are_rejected(text: str, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)) as e:
        parse_target(text)
    assert isinstance(e.value, UsageError)
    assert e.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("text", ["movie.mp4", "abc123", f"ftp://{HEX}", f"http://h/x/{HEX}"])
def test_a_text_that_is_no_target_ends_with_what_the_command_takes(text: str) -> None:
    # Each command passes what it takes (cli/common.py: magnet links, codes...).
    with pytest.raises(UsageError) as e:
        parse_target(text, "p2p fetch takes X, Y or Z")
    assert e.value.message.endswith("; p2p fetch takes X, Y or Z"), e.value.message
    with pytest.raises(UsageError) as e:
        parse_target(text)
    assert e.value.message.endswith(f"; expected {ACCEPTED}"), e.value.message


# -- properties ----------------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None)

hashes = st.binary(min_size=32, max_size=32)
hosts = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?(:[0-9]{1,5})?", fullmatch=True)
signal_urls = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}",
    st.sampled_from(["http", "https", "ws", "wss"]),
    hosts,
    st.text(max_size=20).map(lambda s: "/" + s if s else ""),
)
# Names and tokens are any text a user could type; lone surrogates cannot be UTF-8 encoded.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@FAST
@given(hashes, st.lists(signal_urls, max_size=4), texts, texts)
def test_make_link_round_trips(h: bytes, signals: list[str], name: str, token: str) -> None:
    t = parse_target(make_link(h, signals, name, token))
    assert t == Target(h, tuple(signals), name or None, token or None)


def check_target(text: str) -> None:
    """The parser's contract: a usage error, or a target with a full hash and usable URLs."""
    try:
        t = parse_target(text)
    except (InvalidLink, InvalidHash):
        return
    assert len(t.content_hash) == 32
    for s in t.signals:
        parts = urlsplit(s)
        assert parts.scheme in ("http", "https", "ws", "wss") and parts.netloc


@FAST
@given(st.text(max_size=120))
def test_parse_arbitrary_text_raises_only_usage_errors(text: str) -> None:
    check_target(text)


link_noise = st.text(alphabet="p2:/?&=#%[]@ .htpswx" + HEX[:16] + "é\x00\n", max_size=40)


@FAST
@given(
    st.sampled_from(["p2p://", "P2P://", "http://", "https://", "ws://", ""]),
    st.one_of(st.just(HEX), st.just(f"h:8/watch/{HEX}"), link_noise),
    st.lists(
        st.tuples(st.sampled_from(["signal", "name", "token", "x", ""]), link_noise), max_size=4
    ),
)
def test_parse_link_shaped_text_raises_only_usage_errors(
    prefix: str, body: str, query: list[tuple[str, str]]
) -> None:
    text = prefix + body
    if query:
        text += "?" + "&".join(f"{k}={v}" for k, v in query)
    check_target(text)


def test_trackers_ride_in_tr_beside_signals_and_round_trip() -> None:
    h = bytes(range(32))
    link = make_link(h, ["http://10.0.0.2:8080"], "a b.mp4", None,
                     ["wss://tracker.example/announce", "ws://10.0.0.3:8000"])
    assert "&tr=wss%3A%2F%2Ftracker.example%2Fannounce&tr=ws%3A%2F%2F10.0.0.3%3A8000" in link
    t = parse_target(link)
    assert t.trackers == ("wss://tracker.example/announce", "ws://10.0.0.3:8000")
    assert t.signals == ("http://10.0.0.2:8080",) and t.name == "a b.mp4"
    # An old link (no tr=) has none; a tracker-only link no signal.
    assert parse_target(make_link(h, ["http://s:1"])).trackers == ()
    assert parse_target(f"p2p://{h.hex()}?tr=ws%3A%2F%2Ft%3A1").signals == ()


@pytest.mark.parametrize("url", ["http://t/announce", "udp://t:6969", "ws://", "t:8000"])
def test_a_tracker_in_a_link_must_be_a_websocket_url(url: str) -> None:
    with pytest.raises(InvalidLink, match="ws:// or wss://"):
        parse_target(f"p2p://{'ab' * 32}?tr={url}")


# -- what each command says of a target it cannot take ---------------------------------------

TAKES_BESIDES = {  # every command with a HASH_OR_LINK: what it takes besides p2p's targets
    "fetch": ["a magnet: link", "a .torrent file"],
    "info": ["a magnet: link", "a .torrent file"],
    "stream": ["a magnet: link", "a .torrent file", "a code from `p2p send`"],
}


def one_error(cwd: Path, *args: str) -> str:
    """Run `p2p ARGS` in `cwd`: it must exit 2 with one `p2p:` line on stderr."""
    out = subprocess.run([P2P, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    lines = out.stderr.splitlines()
    assert out.returncode == ExitCode.USAGE and len(lines) == 1, out.stderr
    assert lines[0].startswith("p2p: "), out.stderr
    return lines[0]


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("command", list(TAKES_BESIDES))
def test_a_command_says_what_it_takes_and_that_a_local_file_is_seeded(
    command: str, json_mode: bool, tmp_path: Path
) -> None:
    # `p2p fetch movie.mp4` said only "neither a content hash nor a p2p:// link".
    (tmp_path / "movie.mp4").write_bytes(b"not a share")
    mode = ["--json"] if json_mode else []
    line = one_error(tmp_path, command, "movie.mp4", *mode)
    assert line == "p2p: movie.mp4 is a local file, not a share; to share it run " \
        "`p2p seed movie.mp4`"
    for target in ("missing.mp4", "README"):  # no such file: a link, a hash (6 digits)?
        line = one_error(tmp_path, command, target, *mode)
        takes = f"p2p {command} takes a p2p:// link, a watch URL, a content hash (64 hex digits)"
        assert takes in line and all(form in line for form in TAKES_BESIDES[command]), line
        assert ("code from" in line) == (command == "stream"), line


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_receive_says_where_a_local_file_or_a_share_link_goes(json_mode: bool, tmp_path: Path):
    (tmp_path / "holiday").mkdir()
    mode = ["--json"] if json_mode else []
    assert one_error(tmp_path, "receive", "holiday", *mode) == \
        "p2p: holiday is a local folder, not a code; to send it run `p2p send holiday`"
    line = one_error(tmp_path, "receive", f"p2p://{HEX}", *mode)
    assert line.endswith(f"is a share link, not a code from `p2p send`: run `p2p fetch p2p://{HEX}`")
