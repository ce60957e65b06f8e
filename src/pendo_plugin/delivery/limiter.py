"""Adaptive concurrency for requests to one endpoint (AIMD, like TCP congestion control).

The limit starts small and doubles every round trip (slow start) while answers are good and
fast; after the first congestion signal it grows by one per round trip. A 429, 5xx, timeout or
a latency above ``latency_tolerance`` times the best seen halves it, at most once per round
trip. A ``Retry-After`` pauses every sender until it has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class AdaptiveLimiter:
    """Bounds requests in flight; ``acquire`` before sending, ``release`` with the outcome after."""

    def __init__(
        self, maximum: int, initial: int = 4, minimum: int = 1, latency_tolerance: float = 3.0
    ) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = float(max(self.minimum, min(initial, self.maximum)))
        self.in_flight = 0
        self.latency_tolerance = latency_tolerance
        self._slow_start = True
        self._best_latency = float("inf")
        self._last_decrease = 0.0
        self._paused_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a free slot and for any Retry-After pause to pass."""
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self.in_flight < int(self.limit) and not self._waiters:
                self.in_flight += 1
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self.in_flight < int(self.limit) and time.monotonic() >= self._paused_until:
                self.in_flight += 1
                return

    def release(self, latency: float, congested: bool) -> None:
        """Free a slot and adapt the limit to how the request went."""
        self.in_flight -= 1
        now = time.monotonic()
        if not congested:
            self._best_latency = min(self._best_latency, latency)
            congested = latency > self.latency_tolerance * self._best_latency + 0.05
        if congested:
            if now - self._last_decrease > max(self._best_latency, 0.01):
                self.limit = max(float(self.minimum), self.limit / 2)
                self._last_decrease = now
            self._slow_start = False
        elif self._slow_start:
            self.limit = min(float(self.maximum), self.limit + 1)
        else:
            self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
        self._wake()

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (the server's Retry-After)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        for waiter in list(self._waiters)[: max(free, 0)]:
            if not waiter.done():
                waiter.set_result(None)
