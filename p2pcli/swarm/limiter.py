"""The upload limit: one token bucket shared by every upload of a process."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Token bucket; `take(n)` waits until `n` bytes may go (no rate: never waits)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            burst = max(self.rate / 4, n)
            self._tokens = min(burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
