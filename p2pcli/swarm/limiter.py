"""The upload limit: one token bucket shared by every upload of a process, p2p's and
BitTorrent's (`p2p seed --torrent` serves both: docs/PROTOCOL.md §5.6)."""

from __future__ import annotations

import asyncio
import time


class ByteBucket:
    """The limit's arithmetic (sans-IO), in bytes. Unlike p2pcli/tokenbucket.py's bucket
    (one token per event, refused when empty, for rate-limiting messages), it starts empty
    at `start`, fills at `rate` bytes/s up to `burst`, and may go into debt: `take` answers
    how long to wait before sending.
    Whatever the schedule, the bytes released by time T (each once its wait is over) are
    at most rate * (T - start): every byte was earned by time passing, none in advance."""

    def __init__(self, rate: float, start: float) -> None:
        self.rate = rate
        self.start = start
        self._tokens = 0.0
        self._last = start

    def take(self, n: int, now: float) -> float:
        """Charge `n` bytes at `now`; the seconds to wait before they may go."""
        burst = max(self.rate / 4, n)  # a quarter second's worth; one message at least
        self._tokens = min(burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        return max(0.0, -self._tokens / self.rate)


class RateLimiter:
    """`take(n)` waits until `n` bytes may go (no rate: never waits). Takes are served one
    at a time, so a waiting sender holds the others back: the sum is bounded, not each.
    `granted` counts the bytes let through by protocol ("p2p", "bittorrent"), for the
    process to report."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.bucket = ByteBucket(rate, time.monotonic()) if rate else None
        self.granted: dict[str, int] = {}
        "Bytes let through since the limiter was made, by protocol."
        self._lock = asyncio.Lock()

    async def take(self, n: int, protocol: str = "p2p") -> None:
        if self.bucket is not None:
            async with self._lock:
                wait = self.bucket.take(n, time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
        self.granted[protocol] = self.granted.get(protocol, 0) + n

    def elapsed(self, now: float) -> float:
        """Seconds since the bucket started (0 without a limit)."""
        return now - self.bucket.start if self.bucket is not None else 0.0
