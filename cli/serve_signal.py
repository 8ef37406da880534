"""`p2p serve-signal`: run the signaling server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import ssl
import sys
import time
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.text import Text

from p2pcli.errors import UsageError
from p2pcli.events import Event
from p2pcli.signaling.limits import (
    ANNOUNCE_RATE,
    MAX_PEER_LIST,
    MAX_PER_IP,
    MAX_ROOMS,
    MESSAGE_RATE,
    Limits,
)
from p2pcli.signaling.log import (
    ClusterNotice,
    IceServers,
    LibraryError,
    Listening,
    Stopping,
)

from .common import JsonOpt, QuietOpt, finite
from .output import plural, visible

if TYPE_CHECKING:
    from p2pcli.signaling.turncreds import IceConfig

# Plain numbers, repeated from server.py so that --help does not import the server.
PING_INTERVAL = 25.0
PING_TIMEOUT = 20.0
NODE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0  # p2pcli.signaling.server.CONNECT_TIMEOUT
DEFAULT_TURN_TTL = 24 * 3600  # p2pcli.signaling.turncreds.DEFAULT_TTL


class _ServerLog:
    """Render the server's log events (p2pcli/signaling/log.py): text, NDJSON, or nothing."""

    def __init__(self, *, quiet: bool, json: bool) -> None:
        self.quiet = quiet
        self.json = json
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    def __call__(self, ev: Event) -> None:
        if self.json:
            line = {"t": round(time.monotonic() - self.started, 3), **ev.to_json()}
            sys.stderr.buffer.write(orjson.dumps(line) + b"\n")
            sys.stderr.buffer.flush()
        elif not self.quiet:
            self._text(ev)

    def _text(self, ev: Event) -> None:
        if isinstance(ev, Listening):
            self.console.print(
                f"signaling server listening on [bold]{ev.url}[/] "
                f"(bound to {ev.host}:{ev.port}); Ctrl-C to stop"
            )
            if ev.reachable:
                self.console.print(f"other machines reach it at {', '.join(ev.reachable)}")
            else:
                self.console.print(f"only this machine can reach it (bound to {ev.host}); "
                                   "--host 0.0.0.0 listens on every interface")
        elif isinstance(ev, Stopping):
            s = ev.stats
            self.console.print(
                f"stopping: {plural(s['peers'], 'peer')} connected, "
                f"{plural(s['relayed'], 'message')} relayed in {s['uptime']:.0f}s"
            )
        elif isinstance(ev, LibraryError):
            # The message can quote what a client sent (`Invalid session [/]`): text, never
            # markup, or any client could crash this log line.
            self.console.print(Text.assemble(
                ("warning:", "yellow"), f" {visible(ev.source)}: {visible(ev.message)}"
            ))
        elif isinstance(ev, ClusterNotice):
            self.console.print(Text(f"cluster: {visible(ev.message)}"))
        elif isinstance(ev, IceServers):
            how = {"issued": f"TURN credentials issued per client, valid {ev.ttl}s",
                   "fixed": "fixed TURN credentials", "none": "no TURN"}[ev.turn_credentials]
            self.console.print(f"handing out ICE servers {', '.join(ev.servers)} ({how})")
            if ev.open_relay:
                self.console.print(
                    "[yellow]warning:[/] --open-relay: every client that connects gets "
                    "TURN credentials, without a token; anyone can relay through your "
                    "TURN server"
                )


# The options, one type each (typer reads the help from them): the command's signature
# then reads as the list of what it takes.

HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        envvar="P2P_SIGNAL_HOST",
        help="Address to listen on; 0.0.0.0 is every IPv4 interface, :: every IPv6 one.",
    ),
]

PortOpt = Annotated[
    int,
    typer.Option(
        "--port",
        envvar="PORT",
        min=0,
        max=65535,
        help="TCP port to listen on (0: any free port, printed at start).",
    ),
]

CorsOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cors-origin",
        envvar="P2P_CORS_ORIGINS",
        help="Web page origin allowed to connect, like https://example.org. "
        "Repeatable (space-separated in the variable). Default: any origin.",
        show_default=False,
    ),
]

TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="P2P_TOKEN",
        help="Shared secret clients must present (p2p: --token or token= in the link; "
        "Socket.IO: auth {token}; /ws: ?token=). Default: no token needed.",
        show_default=False,
    ),
]

CertOpt = Annotated[
    str | None,
    typer.Option(
        "--cert",
        envvar="P2P_SIGNAL_CERT",
        help="PEM certificate (chain) to serve https:// and wss:// instead of http.",
        show_default=False,
    ),
]

KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="P2P_SIGNAL_KEY",
        help="PEM private key of --cert (default: read from the --cert file).",
        show_default=False,
    ),
]

RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis",
        envvar="P2P_REDIS_URL",
        help="Share rooms with every node using this Redis, like redis://HOST:6379/0 "
        "(needs pip install 'p2p\\[cluster]'). Default: this process alone.",
        show_default=False,
    ),
]

NodeTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--node-timeout",
        envvar="P2P_NODE_TIMEOUT",
        min=1.0,
        callback=finite,
        help="With --redis: seconds after which a node that stopped is dead and its "
        "peers leave their rooms (announced with peer-left).",
    ),
]

MaxMessageRateOpt = Annotated[
    float,
    typer.Option(
        "--max-message-rate",
        envvar="P2P_SIGNAL_MESSAGE_RATE",
        min=0.0,
        callback=finite,
        help="Events per second one connection may send (bursts of 5 s worth); "
        "over it they are refused with error rate-limited. 0: no limit.",
    ),
]

MaxAnnounceRateOpt = Annotated[
    float,
    typer.Option(
        "--max-announce-rate",
        envvar="P2P_SIGNAL_ANNOUNCE_RATE",
        min=0.0,
        callback=finite,
        help="Announces per second one connection may send (bursts of 5 s worth). "
        "0: no limit.",
    ),
]

MaxRoomsOpt = Annotated[
    int,
    typer.Option(
        "--max-rooms",
        envvar="P2P_SIGNAL_MAX_ROOMS",
        min=0,
        help="Rooms (content hashes) one connection may announce. 0: no limit.",
    ),
]

MaxPeerListOpt = Annotated[
    int,
    typer.Option(
        "--max-peer-list",
        envvar="P2P_SIGNAL_MAX_PEER_LIST",
        min=0,
        help="Most peers one peer-list names; a bigger room gets a random sample. "
        "0: no limit.",
    ),
]

MaxConnsPerIpOpt = Annotated[
    int,
    typer.Option(
        "--max-conns-per-ip",
        envvar="P2P_SIGNAL_MAX_PER_IP",
        min=0,
        help="Connections open at once from one IP address (behind a proxy that "
        "hides client addresses, use 0). 0: no limit.",
    ),
]

PingIntervalOpt = Annotated[
    float,
    typer.Option(
        "--ping-interval",
        envvar="P2P_SIGNAL_PING_INTERVAL",
        min=0.1,
        callback=finite,
        help="Seconds between pings to each client (both transports).",
    ),
]

PingTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--ping-timeout",
        envvar="P2P_SIGNAL_PING_TIMEOUT",
        min=0.1,
        callback=finite,
        help="Seconds a client has to answer a ping before it is disconnected and "
        "removed from its rooms.",
    ),
]

IceServerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ice-server",
        envvar="P2P_SIGNAL_ICE_SERVERS",
        help="STUN/TURN server every client is told to use (the ice-config event): "
        "stun:HOST[:PORT], turn:HOST[:PORT][?transport=tcp], turns:HOST[:PORT], or "
        "turn:USER:PASS@HOST[:PORT] for fixed credentials. Repeatable; clients use the "
        "first STUN and the first TURN server that answers. Default: none.",
        show_default=False,
    ),
]

TurnSecretOpt = Annotated[
    str | None,
    typer.Option(
        "--turn-secret",
        envvar="P2P_TURN_SECRET",
        help="The TURN server's shared secret (coturn: use-auth-secret, "
        "static-auth-secret): each client gets its own short-lived credentials for "
        "the turn: URLs; the secret is never sent.",
        show_default=False,
    ),
]

TurnTtlOpt = Annotated[
    int,
    typer.Option(
        "--turn-ttl",
        envvar="P2P_TURN_TTL",
        min=60,
        help="Seconds the issued TURN credentials stay valid; connected clients get "
        "fresh ones every half of it.",
    ),
]

OpenRelayOpt = Annotated[
    bool,
    typer.Option(
        "--open-relay",
        envvar="P2P_OPEN_RELAY",
        help="Hand TURN credentials to clients without --token. Without this, a "
        "TURN --ice-server needs --token: the server gives the credentials to every "
        "client it admits, so with no token anyone could relay through your TURN "
        "server.",
    ),
]

ConnectTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        envvar="P2P_SIGNAL_CONNECT_TIMEOUT",
        min=0.1,
        callback=finite,
        help="Seconds a Socket.IO client has, once its engine.io session is open, to "
        "connect (with the token); then it is closed. Counts toward "
        "--max-conns-per-ip meanwhile.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("serve-signal", help=HELP)(serve_signal)


HELP = (
    "Run a signaling server that peers use to find each other by content hash.\n\n"
    "Speaks Socket.IO at /socket.io/ (p2p, and socket.io-client v4 over WebSocket or "
    "HTTP long-polling) and plain WebSocket JSON at /ws; GET /stats and GET /healthz "
    "report on it. The protocol is in docs/SIGNALING.md. Logs go to stderr. "
    "Stops cleanly on Ctrl-C or SIGTERM."
)


def serve_signal(
    host: HostOpt = "0.0.0.0",
    port: PortOpt = 8080,
    cors_origin: CorsOriginOpt = None,
    token: TokenOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    redis: RedisOpt = None,
    node_timeout: NodeTimeoutOpt = NODE_TIMEOUT,
    max_message_rate: MaxMessageRateOpt = MESSAGE_RATE,
    max_announce_rate: MaxAnnounceRateOpt = ANNOUNCE_RATE,
    max_rooms: MaxRoomsOpt = MAX_ROOMS,
    max_peer_list: MaxPeerListOpt = MAX_PEER_LIST,
    max_conns_per_ip: MaxConnsPerIpOpt = MAX_PER_IP,
    ping_interval: PingIntervalOpt = PING_INTERVAL,
    ping_timeout: PingTimeoutOpt = PING_TIMEOUT,
    ice_server: IceServerOpt = None,
    turn_secret: TurnSecretOpt = None,
    turn_ttl: TurnTtlOpt = DEFAULT_TURN_TTL,
    open_relay: OpenRelayOpt = False,
    connect_timeout: ConnectTimeoutOpt = CONNECT_TIMEOUT,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """`p2p serve-signal`: check the options, then serve until Ctrl-C or SIGTERM."""
    from p2pcli.signaling.server import run_signal_server

    log = _ServerLog(quiet=quiet, json=json)
    ssl_context = _tls(cert, key)
    if redis:
        _check_redis(redis)
    ice_config = _ice_config(ice_server or [], turn_secret, turn_ttl, token, open_relay, log)
    limits = Limits(
        message_rate=max_message_rate,
        announce_rate=max_announce_rate,
        max_rooms=max_rooms,
        max_peer_list=max_peer_list,
        max_per_ip=max_conns_per_ip,
    )
    try:
        run_signal_server(
            host,
            port,
            cors_origins=cors_origin or None,
            log=log,
            ssl_context=ssl_context,
            limits=limits,
            token=token or None,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            redis_url=redis,
            node_timeout=node_timeout,
            ice_config=ice_config,
            connect_timeout=connect_timeout,
        )
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); "
            "choose another --port or --host"
        ) from None


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """--cert/--key as a TLS context, or None to serve plain http."""
    from p2pcli.signaling.server import tls_context

    if key and not cert:
        raise UsageError("--key needs --cert")
    if not cert:
        return None
    try:
        return tls_context(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(
            f"cannot use --cert {cert}{f' --key {key}' if key else ''} ({e}); "
            "give a PEM certificate and its private key"
        ) from None


def _ice_config(
    servers: list[str],
    turn_secret: str | None,
    turn_ttl: int,
    token: str | None,
    open_relay: bool,
    log: _ServerLog,
) -> IceConfig | None:
    """What --ice-server, --turn-secret and --turn-ttl hand to clients, or None."""
    from p2pcli.signaling.turncreds import IceConfig, IceConfigError

    try:
        ice_config = IceConfig.from_options(servers, turn_secret, turn_ttl)
    except IceConfigError as e:
        raise UsageError(str(e)) from None
    if ice_config is None:
        return None
    relays = any(s.is_turn for s in ice_config.servers)
    if relays and not token and not open_relay:
        # Issued or fixed, TURN credentials go to every admitted client: without a
        # token that is anyone who can reach this server.
        raise UsageError(
            "a TURN --ice-server without --token hands TURN credentials to anyone who "
            "connects (an open relay); add --token SECRET, or --open-relay if that is "
            "what you want"
        )
    fixed = any(s.username for s in ice_config.servers)
    log(IceServers(
        servers=ice_config.describe(),
        ttl=turn_ttl,
        turn_credentials="issued" if ice_config.turn_secret else "fixed" if fixed else "none",
        open_relay=bool(relays and not token),
    ))
    return ice_config


def _check_redis(url: str) -> None:
    """Fail early, in one line, on what --redis cannot work with."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"--redis {url!r}: expected a URL like redis://HOST:6379/0")
    try:
        import redis  # noqa: F401
    except ImportError:
        raise UsageError(
            "--redis needs the redis package: pip install 'p2p[cluster]' (or pip install redis)"
        ) from None
