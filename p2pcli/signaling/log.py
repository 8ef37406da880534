"""What the signaling server reports about itself: typed log events (sans-IO).

The server, its cluster and ``p2p serve-signal`` hand these to a `SignalLog` callback; the
CLI renders them as a line of text, or with ``--json`` as ``to_json()`` on one NDJSON line
(docs/SIGNALING.md "Running it"). They are lifecycle events, never one per message, so a
client cannot flood the log; `LogBudget` bounds the one kind a client can provoke.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from ..events import OPTIONAL, Event

#: ``log(event)``: how the server reports what happens, for the CLI to render. The events
#: are `p2pcli.events.Event`s, so ``to_json()`` has the client's events' contract.
SignalLog = Callable[[Event], None]


def no_log(event: Event) -> None:
    """The default `SignalLog`: drop everything."""


@dataclass(frozen=True, kw_only=True)
class Listening(Event):
    """The server accepts connections."""

    kind: ClassVar[str] = "listening"
    url: str
    """A URL clients on this machine can use (a wildcard bind becomes loopback)."""
    host: str
    """The address it is bound to, as given."""
    port: int
    """The port it is bound to (the one picked, for port 0)."""
    node: str | None = field(default=None, metadata=OPTIONAL)
    """With Redis: this node's id in the cluster (the key is left out otherwise)."""
    reachable: list[str] | None = field(default=None, metadata=OPTIONAL)
    """URLs other machines can use: one per LAN address the bind covers (p2pcli/reach.py);
    empty when bound to loopback only. The server always sets it."""


@dataclass(frozen=True, kw_only=True)
class Stopping(Event):
    """SIGINT or SIGTERM: the server disconnects everyone and stops."""

    kind: ClassVar[str] = "stopping"
    stats: dict[str, object]
    """This node's /stats figures at that moment."""


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    """The server has stopped; nothing follows."""

    kind: ClassVar[str] = "stopped"


@dataclass(frozen=True, kw_only=True)
class LibraryError(Event):
    """python-socketio, engine.io (or a bug in the cluster's loop) reported an error."""

    kind: ClassVar[str] = "library-error"
    source: str
    """The logger (or module) that reported it."""
    message: str
    """One line, at most 300 characters; it may quote what a client sent."""


@dataclass(frozen=True, kw_only=True)
class ClusterNotice(Event):
    """With Redis: Redis lost or back, a dead node reaped, clients asked to reconnect."""

    kind: ClassVar[str] = "cluster"
    message: str
    """A sentence for the operator."""


@dataclass(frozen=True, kw_only=True)
class IceServers(Event):
    """``serve-signal --ice-server``: the STUN/TURN servers every client is handed."""

    kind: ClassVar[str] = "ice-servers"
    servers: list[str]
    """The servers' URLs, credentials left out."""
    ttl: int
    """Seconds issued TURN credentials stay valid."""
    turn_credentials: str
    """``"issued"`` (per client, from --turn-secret), ``"fixed"`` or ``"none"``."""
    open_relay: bool
    """TURN credentials go to clients without a token (``--open-relay``)."""


@dataclass(slots=True)
class LogBudget:
    """At most `per_minute` events in any one-minute window that starts with an event.

    python-socketio and engine.io log a traceback for every malformed packet a client
    sends; this keeps a client from flooding the server's log (or its NDJSON) that way.
    """

    per_minute: int = 10
    window: float | None = None
    count: int = 0

    def allow(self, now: float) -> bool:
        """Count an event at `now` (seconds, any monotonic clock); True if it may be logged."""
        if self.window is None or now - self.window > 60:
            self.window, self.count = now, 0
        self.count += 1
        return self.count <= self.per_minute
