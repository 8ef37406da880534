"""A token bucket metered with the caller's clock (sans-IO).

Shared by the signaling server's per-connection limits and peer exchange's per-peer
signal limits, so both rate-limit the same way and neither imports the other's layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; one token per event."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float | None = None
    """When the bucket was last metered (None: it starts full at its first event)."""

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """Spend a token at time `now`. Returns 0 if there was one, else the seconds
        until there will be (and spends nothing)."""
        if self.rate <= 0:
            return 0.0
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
