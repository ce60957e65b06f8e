"""Adaptive concurrency for requests to one endpoint (AIMD, like TCP congestion control).

The limit starts small and doubles every round trip (slow start) while answers are good and
fast; after the first congestion signal it grows by one per round trip. A 429, 5xx, timeout or
a latency above ``latency_tolerance`` times the best seen plus ``LATENCY_SLACK`` halves it, at
most once per round trip. The slack keeps the worker's own event-loop lag (a busy GIL, an fsync)
from reading as a slow server. A ``Retry-After`` pauses every sender until it has passed.

Waiters are served first come, first served: a freed slot is handed to the oldest waiter
directly (``in_flight`` is counted for it before it wakes), so a waiter can never be skipped
and left asleep with nothing in flight to wake it. While a pause lasts, a timer wakes the
waiters when it ends. A waiter is a task in :meth:`~AdaptiveLimiter.acquire` (a retry or a
metadata batch) or an event queued by :meth:`~AdaptiveLimiter.when_free` (a first attempt: no task,
no coroutine), in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Protocol

LATENCY_SLACK = 0.25


class Waiter(Protocol):
    """A place in the limiter's line: a future (``acquire``), or any object that, handed its slot through
    ``set_result(None)``, starts its request at once (``when_free``); ``done()`` once it needs no slot."""

    def done(self) -> bool: ...

    def set_result(self, result: None) -> None: ...


class AdaptiveLimiter:
    """Bounds requests in flight; ``acquire`` before sending, ``release`` with the outcome after."""

    def __init__(
        self, maximum: int, initial: int = 4, minimum: int = 1, latency_tolerance: float = 4.0
    ) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = float(max(self.minimum, min(initial, self.maximum)))
        self.in_flight = 0
        self.released = 0  # how many slots were released so far: attempts that ended
        self.latency_tolerance = latency_tolerance
        self._slow_start = True
        self._best_latency = float("inf")
        self._last_decrease = 0.0
        self._paused_until = 0.0
        self._waiters: deque[Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def paused(self) -> bool:
        """Whether a ``Retry-After`` pause is holding new requests now."""
        return time.monotonic() < self._paused_until

    @property
    def paused_until(self) -> float:
        """When the current (or last) ``Retry-After`` pause ends, in monotonic time."""
        return self._paused_until

    def _cap(self) -> int:
        # ``maximum`` may be lowered at run time (``configure(max_concurrency=...)``): it bounds at once
        return max(min(int(self.limit), self.maximum), self.minimum)

    def try_acquire(self) -> bool:
        """Take a free slot now if one is free and nobody waits for one (no waiter, no task switch)."""
        if self._waiters or self.in_flight >= self._cap() or (self._paused_until and self.paused):
            return False
        self.in_flight += 1
        return True

    def when_free(self, waiter: Waiter) -> None:
        """Hand ``waiter`` a slot (``set_result(None)``, with the slot counted in ``in_flight``): now if one
        is free and nobody waits, else in line with the other waiters, when a slot is freed for it. It
        must not raise, and runs inside :meth:`release` when the slot comes from one."""
        if self.try_acquire():
            waiter.set_result(None)
            return
        self._waiters.append(waiter)
        self._wake()

    async def acquire(self) -> None:
        """Wait for a free slot and for any Retry-After pause to pass."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # the slot was handed over just as the waiting task was cancelled: give it back
                self.in_flight -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self, latency: float, congested: bool) -> None:
        """Free a slot and adapt the limit to how the request went."""
        self.in_flight = max(0, self.in_flight - 1)
        self.released += 1
        now = time.monotonic()
        if not congested:
            self._best_latency = min(self._best_latency, latency)
            congested = latency > self.latency_tolerance * self._best_latency + LATENCY_SLACK
        if congested:
            if now - self._last_decrease > max(self._best_latency, 0.01):
                self.limit = max(float(self.minimum), self.limit / 2)
                self._last_decrease = now
            self._slow_start = False
        elif self._slow_start:
            self.limit = min(float(self.maximum), self.limit + 1)
        else:
            self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
        if self._waiters:
            self._wake()

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (the server's Retry-After)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _wake(self) -> None:
        """Hand free slots to the oldest waiters; while paused, arrange to do it when the pause ends."""
        if not self._waiters:
            return
        remaining = self._paused_until and self._paused_until - time.monotonic()  # no clock read unpaused
        if remaining > 0:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(remaining, self._on_timer)
            return
        cap = self._cap()  # not paused (checked above), and nothing below changes the limit
        while self._waiters and self.in_flight < cap:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.in_flight += 1
            waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()
