"""`--public`: where a share meets peers across the internet with no server of your own
(issue 15, "Links and defaults").

Without `--public`, p2p contacts only what the user names (a link's rendezvous, --signal,
--tracker, --peerjs, --ice-server) and the LAN (mDNS). With it, the share is also announced
to well-known public WebTorrent trackers, and a public STUN server finds this machine's
address as the internet sees it (for hole punching).

The lists below are the defaults: WebTorrent's own WebSocket trackers (those
webtorrent-cli and the WebTorrent desktop app announce to) and Google's public STUN
server. Public trackers come and go; the user's config file replaces either list:

    # ~/.config/p2p/config.toml (Linux; platformdirs' user config dir elsewhere),
    # or the file P2P_CONFIG names
    [public]
    trackers = ["wss://tracker.example.org"]
    stun = ["stun:stun.example.org:3478"]

Reading the file is plain (tomllib), and a bad file is one line saying what is wrong.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

DEFAULT_TRACKERS = (
    "wss://tracker.openwebtorrent.com",
    "wss://tracker.webtorrent.dev",
    "wss://tracker.btorrent.xyz",
    "wss://tracker.files.fm:7073/announce",
)
DEFAULT_STUN = ("stun:stun.l.google.com:19302",)


@dataclass(frozen=True)
class PublicServers:
    trackers: tuple[str, ...] = DEFAULT_TRACKERS
    stun: tuple[str, ...] = DEFAULT_STUN


def config_path() -> Path:
    override = os.environ.get("P2P_CONFIG")
    if override:
        return Path(override)
    from platformdirs import user_config_path

    return user_config_path("p2p") / "config.toml"


def load(path: Path | None = None) -> PublicServers:
    """The public servers: the config file's `[public]` lists, else the defaults. A file
    that is missing is no error; one that is unreadable or malformed is."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return PublicServers()
    except OSError as e:
        raise UsageError(f"cannot read the config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
    section = doc.get("public", {})
    if not isinstance(section, dict):
        raise UsageError(f"config file {path}: [public] must be a table")
    out = {}
    for key, default in (("trackers", DEFAULT_TRACKERS), ("stun", DEFAULT_STUN)):
        value = section.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"config file {path}: public.{key} must be a list of strings")
        out[key] = tuple(value)
    unknown = sorted(set(section) - {"trackers", "stun"})
    if unknown:
        raise UsageError(f"config file {path}: unknown key public.{unknown[0]} "
                         "(expected trackers, stun)")
    return PublicServers(**out)
