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

p2pcli/config.py reads the file, with every other setting; a bad file is one line
saying what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import config
from .config import DEFAULT_STUN, DEFAULT_TRACKERS, config_path

__all__ = ["DEFAULT_STUN", "DEFAULT_TRACKERS", "PublicServers", "config_path", "load"]


@dataclass(frozen=True)
class PublicServers:
    trackers: tuple[str, ...] = DEFAULT_TRACKERS
    stun: tuple[str, ...] = DEFAULT_STUN


def load(path: Path | None = None) -> PublicServers:
    """The public servers: the config file's `[public]` lists, else the defaults. A file
    that is missing is no error; one that is unreadable or malformed is (p2pcli/config.py
    reads it, with every other setting)."""
    path = path or config_path()
    settings = config.resolve(config.read_file(path), {}, path)
    return PublicServers(trackers=settings["public.trackers"].value,
                         stun=settings["public.stun"].value)
