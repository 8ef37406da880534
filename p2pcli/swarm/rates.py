"""Transfer rates (sans-IO: the caller passes the time)."""

from __future__ import annotations


class Rate:
    """Exponentially weighted bytes per second, for progress and request pipelining."""

    def __init__(self, now: float, half_life: float = 2.0) -> None:
        self.half_life = half_life
        self.value = 0.0
        self._pending = 0
        self._last = now

    def add(self, n: int) -> None:
        self._pending += n

    def update(self, now: float) -> float:
        dt = now - self._last
        if dt >= 0.25:
            inst = self._pending / dt
            w = 0.5 ** (dt / self.half_life)
            self.value = w * self.value + (1 - w) * inst
            self._pending = 0
            self._last = now
        return self.value
