"""What one connection may ask of the signaling server, and the rate limiter (sans-IO).

`Limits` is the server's configuration of those bounds (``p2p serve-signal --max-*``);
`TokenBucket` meters a rate with the caller's clock; `ConnectionMeter` holds one
connection's buckets. The server adapter (server.py) asks the meter before acting on an
event, refuses what is over the rate with ``error rate-limited``, and stops reading from
that connection until it may send again, so a flooding client costs the server little and
is slowed down by TCP's own back-pressure rather than by everyone else's latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ..tokenbucket import TokenBucket

__all__ = ["AddressCounter", "ConnectionMeter", "Limits", "TokenBucket"]

#: Defaults, documented in docs/SIGNALING.md "Limits and timings".
MESSAGE_RATE: Final = 100.0
ANNOUNCE_RATE: Final = 10.0
BURST_SECONDS: Final = 5.0
MAX_ROOMS: Final = 1024
MAX_PEER_LIST: Final = 100
MAX_PER_IP: Final = 128


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one connection (or one address) may do. 0 means no bound."""

    message_rate: float = MESSAGE_RATE
    """Events per second one connection may send (announces, relays, anything else)."""
    announce_rate: float = ANNOUNCE_RATE
    """``announce`` events per second one connection may send (counted in both rates)."""
    burst_seconds: float = BURST_SECONDS
    """A connection may send this many seconds' worth of either rate at once."""
    max_rooms: int = MAX_ROOMS
    """Rooms one connection may be in."""
    max_peer_list: int = MAX_PEER_LIST
    """Most peer ids one ``peer-list`` carries; a larger room gets a random sample."""
    max_per_ip: int = MAX_PER_IP
    """Connections open at once from one IP address."""


@dataclass(slots=True)
class ConnectionMeter:
    """The rate limits of one connection."""

    messages: TokenBucket
    announces: TokenBucket

    @classmethod
    def for_limits(cls, limits: Limits) -> ConnectionMeter:
        def bucket(rate: float) -> TokenBucket:
            return TokenBucket(rate, max(1.0, rate * limits.burst_seconds))

        return cls(bucket(limits.message_rate), bucket(limits.announce_rate))

    def admit(self, event: str, now: float) -> float:
        """0 if `event` may be handled now, else the seconds until one may be."""
        wait = self.messages.take(now)
        if wait or event != "announce":
            return wait
        wait = self.announces.take(now)
        if wait:
            # Not handled, so it should not cost a message token either.
            self.messages.tokens += 1.0
        return wait


@dataclass(slots=True)
class AddressCounter:
    """Connections open per IP address, bounded by `Limits.max_per_ip`."""

    limit: int
    open: dict[str, int] = field(default_factory=dict)

    def acquire(self, address: str) -> bool:
        """Count a new connection from `address`; False (and nothing counted) if full."""
        n = self.open.get(address, 0)
        if self.limit > 0 and n >= self.limit:
            return False
        self.open[address] = n + 1
        return True

    def release(self, address: str) -> None:
        n = self.open.get(address, 0) - 1
        if n > 0:
            self.open[address] = n
        else:
            self.open.pop(address, None)
