"""Options shared by the commands that join a swarm, and turning them into a SwarmConfig.

Parsing only: the library patches a command runs with (`--ice-host` among them) are set
by the command itself, with one `p2pcli.patches.apply(...)` at its start.

Every command module imports this one to declare its options, and `p2p --help` imports every
command module: so nothing here imports aiortc, socketio or aiohttp at module level (the
swarm's modules do). What a command needs is imported when it runs.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from p2pcli.errors import UsageError

if TYPE_CHECKING:
    from p2pcli.events import EventSink
    from p2pcli.link import Target
    from p2pcli.swarm import SwarmConfig

T = TypeVar("T")

SignalOpt = Annotated[
    str | None,
    typer.Option(
        "--signal",
        envvar="P2P_SIGNAL",
        help="Signaling server URL (http(s):// or ws(s)://); several separated by commas.",
        show_default=False,
    ),
]
TrackerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tracker",
        envvar="P2P_TRACKERS",
        help="WebTorrent WebSocket tracker (ws:// or wss://) to meet peers through, beside the "
        "signaling server; repeatable or comma-separated. seed puts it in the link (tr=). "
        "Default: none.",
        show_default=False,
    ),
]
PeerJSOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--peerjs",
        envvar="P2P_PEERJS",
        help="PeerJS server to meet peers through: peerjs://HOST:PORT/PATH?key=KEY (TLS, as "
        "wss:// and https://; ws:// or http:// for plain). Repeatable or comma-separated. "
        "seed puts it in the link (peerjs=). Default: none.",
        show_default=False,
    ),
]
PublicOpt = Annotated[
    bool,
    typer.Option(
        "--public",
        envvar="P2P_PUBLIC",
        help="Also meet peers across the internet with no server of your own: announce to "
        "well-known public WebTorrent trackers and use a public STUN server (lists in "
        "README; your config file may replace them). Without it, p2p contacts only the "
        "LAN and the servers you name (link, --signal, --tracker, --peerjs, --ice-server).",
    ),
]
IceServerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ice-server",
        envvar="P2P_ICE_SERVERS",
        help="STUN/TURN server: stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT]. Repeatable; "
        "the first STUN and the first TURN server that answer are used. Default: those the "
        "signaling server hands out, else none (direct connections only).",
        show_default=False,
    ),
]
IceHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ice-host",
        envvar="P2P_ICE_HOST",
        help="Local IP address to offer to peers as an ICE host candidate. Repeatable or "
        "comma-separated. Default: every non-loopback interface. Use 127.0.0.1 for peers "
        "on the same machine.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="P2P_TOKEN", help="Signaling server access token.",
                 show_default=False),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or status output on stderr.")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Write events as NDJSON lines on stderr.")
]
TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="HASH_OR_LINK",
        help="A p2p:// link printed by 'p2p seed', or a bare 64-hex-digit content hash "
        "(looked for on the LAN first, then at http://127.0.0.1:8080); or a magnet: link "
        "or a .torrent file (a WebTorrent swarm, through its WebSocket trackers).",
        show_default=False,
    ),
]
def finite(value: float | None) -> float | None:
    """Callback of every float option: 'nan' and 'inf' parse as floats but are no number
    of seconds or rate (`--timeout nan` once waited forever)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        envvar="P2P_TIMEOUT",
        min=0.0,
        callback=finite,
        help="Seconds to wait for a peer to send something (the manifest, a piece; a "
        "torrent's metadata or a piece), at start or later. A peer that has sent some and can "
        "send more holds the clock while connected; one that only connects, says it is busy "
        "or has nothing we lack does not (a torrent peer with pieces we lack holds it even "
        "while it keeps us choked, and so does any peer with pieces we lack while a pipe's "
        "reader is paused and we ask for nothing).",
    ),
]
RetriesOpt = Annotated[
    int,
    typer.Option("--retries", envvar="P2P_RETRIES", min=1,
                 help="Attempts to reach the signaling server."),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", "-f",
        help="Replace an existing output file, or a NAME.part that p2p did not make (the "
        "entry itself is replaced, never what a link points to).",
    ),
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        help="Of a folder share, fetch only these files: an index (as p2p info numbers "
        "them, from 0) or a pattern matched against the path (*.mkv). Repeatable.",
        show_default=False,
    ),
]
MaxPeersOpt = Annotated[
    int,
    typer.Option(
        "--max-peers",
        envvar="P2P_MAX_PEERS",
        min=1,
        help="Most peer connections kept at once. When all are taken, a peer that asked for "
        "nothing and had nothing to give for 5 s gives its slot up to a newcomer.",
    ),
]
MaxPeersPerAddressOpt = Annotated[
    int | None,
    typer.Option(
        "--max-peers-per-address",
        envvar="P2P_MAX_PEERS_PER_ADDRESS",
        min=1,
        help="Most connections from one remote address (one machine, or everyone behind one "
        "NAT; relayed peers count per TURN allocation). Default: a quarter of --max-peers, "
        "at least 2.",
        show_default=False,
    ),
]
LanOpt = Annotated[
    bool,
    typer.Option(
        "--lan/--no-lan",
        envvar="P2P_LAN",
        help="mDNS on the local network: seed announces the share, and fetch/stream given a "
        "bare hash (no link, no --signal) look for a seeder there for 1.5 s before trying "
        "the default server. Nothing leaves the LAN. P2P_LAN=0 turns it off.",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log debugging details on stderr.")
]


def from_config(signal: str | None, tracker: list[str] | None, token: str | None
                ) -> tuple[str | None, list[str] | None, str | None]:
    """--signal, --tracker and --token, each taken from the config file when neither its
    flag nor its environment variable gave it (p2pcli/config.py: flags > env > file)."""
    from p2pcli.config import load

    cfg = load()
    trackers = cfg.value("trackers", tracker)
    return (cfg.value("signal", signal), list(trackers) if trackers else None,
            cfg.value("token", token))


def config_value(key: str, given: T | None = None) -> T | None:
    """One setting of the config file's (see `from_config`), when `given` is None."""
    from p2pcli.config import load

    return load().value(key, given)


def download_dir() -> str | None:
    """The config file's (or P2P_DOWNLOAD_DIR's) download_dir, checked: an existing folder."""
    import os

    value = config_value("download_dir")
    if value is None:
        return None
    path = os.path.expanduser(value)
    if not os.path.isdir(path):
        raise UsageError(f"download_dir {value!r} (p2p config shows where it is set) is not "
                         "an existing folder; create it or change the setting")
    return path


def swarm_config(
    signal: list[str],
    ice_server: list[str] | None,
    token: str | None,
    **kwargs,
) -> SwarmConfig:
    from p2pcli.iceurls import parse_ice_servers  # imports aiortc
    from p2pcli.swarm import SwarmConfig

    return SwarmConfig(
        signal_urls=signal,
        ice_servers=parse_ice_servers(ice_server or []),
        ice_servers_fixed=bool(ice_server),
        token=token,
        **kwargs,
    )


#: What each command's HASH_OR_LINK may be (a magnet link and a .torrent file are routed
#: to the BitTorrent session, a code to the wormhole, before the rest is parsed as a link).
TAKES = {
    "fetch": ["a p2p:// link", "a watch URL", "a content hash (64 hex digits)",
              "a magnet: link", "a .torrent file"],
    "info": ["a p2p:// link", "a watch URL", "a content hash (64 hex digits)",
             "a magnet: link", "a .torrent file"],
    "stream": ["a p2p:// link", "a watch URL", "a content hash (64 hex digits)",
               "a magnet: link", "a .torrent file", "a code from `p2p send`"],
}


def takes(command: str) -> str:
    """'p2p fetch takes a p2p:// link, ... or a .torrent file': the end of its message
    when HASH_OR_LINK is none of them."""
    forms = TAKES[command]
    return f"p2p {command} takes " + ", ".join(forms[:-1]) + " or " + forms[-1]


def parse_target_for(command: str, target: str) -> Target:
    """HASH_OR_LINK of `command` as a p2p share; UsageError saying what it takes when it is
    none of them, and what to run when it names a local file or folder (`seed` it)."""
    import os
    import shlex

    from p2pcli.errors import InvalidHash, InvalidLink
    from p2pcli.link import parse_target
    from p2pcli.wormhole.code import looks_like_code

    try:
        return parse_target(target, takes(command))
    except (InvalidLink, InvalidHash):
        if os.path.exists(target):
            kind = "folder" if os.path.isdir(target) else "file"
            raise UsageError(f"{target} is a local {kind}, not a share; to share it run "
                             f"`p2p seed {shlex.quote(target)}`") from None
        if looks_like_code(target) and command != "stream":
            raise UsageError(f"{target!r} looks like a code from `p2p send`: run "
                             f"`p2p receive {shlex.quote(target)}`; "
                             + takes(command)) from None
        raise


def target_config(
    target: str,
    signal: str | None,
    ice_server: list[str] | None,
    token: str | None,
    tracker: list[str] | None = None,
    peerjs: list[str] | None = None,
    public: bool = False,
    *,
    command: str,
    **kwargs,
) -> tuple[Target, SwarmConfig]:
    """Parse HASH_OR_LINK of `command`. Signaling URLs come from --signal, else the link,
    else (with no tracker either) the default, which a bare hash replaces by a seeder found
    on the LAN (see `lan_first`). Trackers and PeerJS servers: the flags' and the link's,
    all of them."""
    from p2pcli.link import DEFAULT_SIGNAL

    t = parse_target_for(command, target)
    tracker, ice_server = with_public(public, tracker, ice_server)
    trackers = list(dict.fromkeys([*parse_trackers(tracker), *t.trackers]))
    servers = list(dict.fromkeys([*parse_peerjs(peerjs), *t.peerjs]))
    others = trackers or servers
    urls = split_urls(signal) or list(t.signals) or ([] if others else [DEFAULT_SIGNAL])
    return t, swarm_config(urls, ice_server, token or t.token, trackers=trackers,
                           peerjs=servers, **kwargs)


def with_public(public: bool, tracker: list[str] | None, ice_server: list[str] | None
                ) -> tuple[list[str] | None, list[str] | None]:
    """--tracker and --ice-server, with --public's trackers added and its STUN server used
    unless the user named ICE servers (p2pcli/publicnet.py)."""
    if not public:
        return tracker, ice_server
    from p2pcli import publicnet

    servers = publicnet.load()
    return [*(tracker or []), *servers.trackers], ice_server or list(servers.stun) or None


def parse_trackers(values: Iterable[str] | None) -> list[str]:
    """--tracker values (repeatable, each maybe comma-separated), checked: ws(s) only."""
    from p2pcli.link import check_tracker_url

    return [check_tracker_url(u) for u in _each(values)]


def parse_peerjs(values: Iterable[str] | None) -> list[str]:
    """--peerjs values (repeatable, each maybe comma-separated), checked."""
    from p2pcli.link import check_peerjs_url

    return [check_peerjs_url(u) for u in _each(values)]


def _each(values: Iterable[str] | None) -> list[str]:
    return [u.strip() for v in values or () for u in v.split(",") if u.strip()]


def bare(t: Target, signal: str | None) -> bool:
    """A bare hash (a link naming no rendezvous) with no --signal / P2P_SIGNAL: it meets
    through the default server, or --tracker's, after a look on the LAN."""
    return not (t.signals or t.trackers or t.peerjs or split_urls(signal))


def lan_first(
    t: Target, signal: str | None, lan: bool, config: SwarmConfig, emit: EventSink,
    main: Callable[[], Awaitable[T]],
) -> Callable[[], Awaitable[T]]:
    """`main`, preceded for a bare hash by a LAN search (unless --no-lan), and with an error
    that says where we looked when nothing answers (p2pcli/mdns.py). A link or --signal
    runs `main` as it is: no mDNS wait."""
    if not bare(t, signal):
        return main
    from p2pcli.mdns import with_lan_lookup

    return lambda: with_lan_lookup(t, config, emit, main, search=lan)


def parse_ice_hosts(values: Iterable[str] | None) -> tuple[str, ...]:
    """`--ice-host` values (comma-separated allowed) as IP addresses; empty: none given."""
    out: list[str] = []
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_address(item)))
            except ValueError:
                raise UsageError(
                    f"--ice-host {item!r} is not an IP address; give e.g. 127.0.0.1 or 192.168.1.5"
                ) from None
    return tuple(out)


def split_urls(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # aioice/aiortc log connection noise at WARNING for ordinary peer churn.
        for name in ("aioice", "aiortc", "socketio", "engineio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_rate(text: str | None) -> float | None:
    """'500k', '2M', '1.5MiB', '800000' -> bytes per second (None/'0': unlimited)."""
    if text is None:
        return None
    t = text.strip().lower().removesuffix("/s").removesuffix("b")
    num = t.rstrip("kmgi")
    unit = t[len(num) :]
    try:
        value = float(num) * _UNITS[unit]
        if not math.isfinite(value) or value < 0:  # 'nan', 'inf', '-5k'
            raise ValueError(value)
    except (ValueError, KeyError):
        raise UsageError(
            f"--max-upload-rate {text!r}: expected bytes per second like 500k, 2M or 1MiB"
        ) from None
    return value or None


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_public_host(value: str | None) -> str | None:
    """`--public-host`: an IP address or a DNS name, as it goes into the link's URL (a
    typo such as 'a b' would make a link nobody can use)."""
    if value is None:
        return None
    host = value.strip()
    with_brackets = host.startswith("[") and host.endswith("]")
    try:
        return str(ipaddress.ip_address(host[1:-1] if with_brackets else host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if name and len(name) <= 253 and all(_LABEL.fullmatch(p) for p in name.split(".")):
        return host
    raise UsageError(
        f"--public-host {value!r} is not an IP address or host name; give e.g. 192.168.1.5 "
        "or myhost.example.org"
    )
