"""What the signaling server hands each client as `ice-config`: its STUN/TURN servers, and
TURN credentials made for that client. Without I/O; the URLs are parsed by iceurls.py.

`serve-signal --ice-server URL` names STUN and TURN servers; with `--turn-secret` each
client gets its own short-lived TURN credentials by the "TURN REST API" scheme that
coturn implements as `use-auth-secret` / `static-auth-secret`:

    username   = "<expiry, unix seconds>:<peer id>"
    credential = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the credential from the username and the shared secret, and
refuses it once the expiry has passed. The secret itself never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..iceurls import IceUrl, parse_ice_url

#: Default lifetime of issued TURN credentials, in seconds (coturn's REST API examples
#: use a day). Clients get fresh ones at every (re)connection and every half lifetime.
DEFAULT_TTL = 24 * 3600
MIN_TTL = 60


class IceConfigError(UsageError):
    """`--ice-server`, `--turn-secret` and `--turn-ttl` that cannot work together; the
    message says how to fix them."""


def turn_credentials(secret: str, peer_id: str, expires: int) -> tuple[str, str]:
    """(username, credential) valid until `expires` (unix seconds) for coturn's
    `use-auth-secret`: the credential is base64(HMAC-SHA1(secret, username))."""
    username = f"{expires}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class IceConfig:
    """What every client is told: the servers, and credentials made for that client."""

    servers: tuple[IceUrl, ...]
    "The servers, each URL without credentials plus any fixed TURN credentials."
    turn_secret: str | None = None
    "Shared with the TURN server (coturn static-auth-secret); never sent to clients."
    ttl: int = DEFAULT_TTL
    "Seconds issued credentials stay valid."

    @classmethod
    def from_options(
        cls, urls: list[str], turn_secret: str | None = None, ttl: int = DEFAULT_TTL
    ) -> IceConfig | None:
        """Validate `--ice-server`, `--turn-secret` and `--turn-ttl` together
        (`IceUrlError` for a URL, `IceConfigError` for the rest).

        None when there is nothing to hand out (no `--ice-server`).
        """
        servers = tuple(parse_ice_url(u) for value in urls for u in value.split(",")
                        if u.strip())
        if ttl < MIN_TTL:
            raise IceConfigError(f"--turn-ttl {ttl}: give at least {MIN_TTL} seconds")
        if not servers:
            if turn_secret:
                raise IceConfigError(
                    "--turn-secret needs a TURN server to use it with: add "
                    "--ice-server turn:HOST:3478"
                )
            return None
        turn = [s for s in servers if s.is_turn]
        if turn_secret and not any(s.username is None for s in turn):
            raise IceConfigError(
                "--turn-secret is given but no --ice-server turn:HOST URL would use it "
                "(TURN URLs with USER:PASS@ keep their fixed credentials)"
            )
        for s in turn:
            if s.username is None and not turn_secret:
                raise IceConfigError(
                    f"--ice-server {s.url} needs credentials: give --turn-secret (the TURN "
                    "server's static-auth-secret), or turn:USER:PASS@HOST for fixed ones"
                )
        return cls(servers, turn_secret or None, ttl)

    @property
    def refresh_after(self) -> float | None:
        """Seconds after which a connected client should get fresh credentials (None: never)."""
        return self.ttl / 2 if self.turn_secret else None

    def payload(self, peer_id: str, now: float) -> dict[str, Any]:
        """The `ice-config` event for `peer_id` at unix time `now`: a browser-shaped
        RTCConfiguration, `{"iceServers": [{"urls": [...], "username"?, "credential"?}]}`."""
        entries: list[dict[str, Any]] = []
        issued: tuple[str, str] | None = None
        for s in self.servers:
            entry: dict[str, Any] = {"urls": [s.url]}
            if s.username is not None:
                entry["username"], entry["credential"] = s.username, s.credential or ""
            elif s.is_turn and self.turn_secret:
                if issued is None:
                    issued = turn_credentials(self.turn_secret, peer_id, int(now) + self.ttl)
                entry["username"], entry["credential"] = issued
            # Consecutive servers with the same credentials share one entry, as browsers
            # expect for one server reachable by several URLs (udp, tcp, tls).
            last = entries[-1] if entries else None
            if (last is not None and last.get("username") == entry.get("username")
                    and last.get("credential") == entry.get("credential")):
                last["urls"].append(s.url)
            else:
                entries.append(entry)
        return {"iceServers": entries}

    def describe(self) -> list[str]:
        """The URLs for a log line (never a credential)."""
        return [s.url for s in self.servers]
