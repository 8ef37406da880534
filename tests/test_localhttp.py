"""Who may read `p2p stream`'s local HTTP server, and as what: the rules, without I/O.

tests/test_stream_http.py checks the same rules through a real `p2p stream` process.
"""

from __future__ import annotations

import mimetypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pcli.localhttp import (
    MEDIA_TYPES,
    OPAQUE,
    SAFE_HEADERS,
    Refused,
    check_host,
    check_name,
    check_secret,
    media_type,
    new_secret,
    served_hosts,
)
from p2pcli.player import player_command, url_argument

# Types a browser renders as a document (and so may run script in) or that a page may load
# as script or style. None of them may ever be sent.
ACTIVE_EXTENSIONS = [
    ".html", ".htm", ".xhtml", ".xht", ".shtml", ".svg", ".svgz", ".xml", ".xsl", ".xslt",
    ".rss", ".atom", ".js", ".mjs", ".css", ".pdf", ".swf", ".mht", ".mhtml", ".txt", ".json",
    ".wasm", ".php", ".jsp", ".vtt", ".m3u8", ".", "",
]


def _is_media(ctype: str) -> bool:
    return ctype.startswith(("video/", "audio/"))


def test_every_mapped_type_is_audio_or_video() -> None:
    assert all(_is_media(t) for t in MEDIA_TYPES.values())


@pytest.mark.parametrize("ext", ACTIVE_EXTENSIONS)
@pytest.mark.parametrize("stem", ["clip", "CLIP", "mp4", "video.mp4.part", "[x]"])
def test_active_names_are_served_as_octet_stream(stem: str, ext: str) -> None:
    for e in {ext, ext.upper()}:
        assert media_type(stem + e) == OPAQUE


def test_no_extension_the_platform_knows_as_non_media_gets_a_type() -> None:
    """Every extension in the platform's MIME table that is not audio/video: octet-stream."""
    mimetypes.init()
    for ext, ctype in {**mimetypes.types_map, **mimetypes.common_types}.items():
        if not _is_media(ctype):
            assert media_type("x" + ext) == OPAQUE, (ext, ctype)


@given(st.text(min_size=1, max_size=80))
def test_any_name_gets_a_media_type_or_octet_stream(name: str) -> None:
    t = media_type(name)
    assert t == OPAQUE or _is_media(t)


def test_media_names_keep_their_types() -> None:
    assert media_type("movie.MP4") == "video/mp4"
    assert media_type("talk.webm") == "video/webm"
    assert media_type("x.html.mkv") == "video/x-matroska"


def test_every_response_header_forbids_sniffing_and_active_rendering() -> None:
    assert SAFE_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SAFE_HEADERS["Content-Security-Policy"].split()[0] == "sandbox"
    assert "allow-scripts" not in SAFE_HEADERS["Content-Security-Policy"]


# -- Host ---------------------------------------------------------------------------------------

PORT = 8123


@pytest.mark.parametrize("host", [*sorted(served_hosts(PORT)), "LOCALHOST:8123", "localhost:8123 "])
def test_hosts_we_serve(host: str) -> None:
    check_host([host], PORT)


@pytest.mark.parametrize(
    ("hosts", "status"),
    [
        ([], 400),
        (["127.0.0.1:8123", "127.0.0.1:8123"], 400),
        (["evil.example:8123"], 421),  # DNS rebinding: the attacker's name, our port
        (["evil.example"], 421),
        (["127.0.0.1.evil.example:8123"], 421),
        (["localhost.:8123"], 421),
        (["127.0.0.1:8124"], 421),
        (["127.0.0.1"], 421),  # not port 80: the port must be there
        (["localhost"], 421),
        (["127.0.0.2:8123"], 421),
        (["0.0.0.0:8123"], 421),
        (["[::ffff:127.0.0.1]:8123"], 421),
        (["192.168.1.10:8123"], 421),
        (["127.0.0.1:8123@evil.example"], 421),
        ([""], 421),
    ],
)
def test_hosts_we_refuse(hosts: list[str], status: int) -> None:
    with pytest.raises(Refused) as e:
        check_host(hosts, PORT)
    assert e.value.status == status


def test_port_80_may_be_left_out() -> None:
    check_host(["127.0.0.1"], 80)
    check_host(["localhost:80"], 80)


# -- the secret path ------------------------------------------------------------------------------


def test_secrets_are_long_url_safe_and_fresh() -> None:
    seen = {new_secret() for _ in range(100)}
    assert len(seen) == 100
    for s in seen:
        assert len(s) >= 32 and all(c.isalnum() or c in "-_" for c in s)


def test_paths_without_the_exact_secret_are_404() -> None:
    secret = new_secret()
    assert check_secret(f"/{secret}/movie.mp4", secret) == "movie.mp4"
    for path in ["/", "/movie.mp4", f"/{secret}", f"//{secret}/movie.mp4", f"/{secret[:-1]}/m",
                 f"/{secret}x/m", f"/x{secret}/m", f"/{secret.upper()}/m", f"/{secret.lower()}/m",
                 f"/a/{secret}/m", "/\udcff/m"]:
        with pytest.raises(Refused) as e:
            check_secret(path, secret)
        assert e.value.status == 404, path


def test_only_the_file_name_follows_the_secret() -> None:
    check_name("movie.mp4", "movie.mp4")
    for rest in ["", "movie.mp4/", "other.mp4", "movie.mp4x", "x/movie.mp4"]:
        with pytest.raises(Refused):
            check_name(rest, "movie.mp4")


# -- the secret never goes on a command line ------------------------------------------------------


@pytest.mark.parametrize("player", ["mpv", "vlc"])
def test_players_get_the_url_in_a_private_file(tmp_path, player: str) -> None:
    url = f"http://127.0.0.1:1/{new_secret()}/a.mp4"
    target = url_argument(player, url, str(tmp_path))
    argv = player_command(player, f"/usr/bin/{player}", target, None, ["--fs"])
    assert not any(url in a or url.split("/")[3] in a for a in argv)
    playlist = next(tmp_path.iterdir())
    assert url in playlist.read_text()
    assert playlist.stat().st_mode & 0o777 == 0o600
