"""When sends waiting at the rate gate go: one timer for all of them, and slots close together share a wake.

A send waiting for its reserved slot used to sleep on a timer of its own, so the worker's thread woke once
per request at a budget, and a thread that slept tens of milliseconds pays for the wake far more than for
the request (about 185 us of CPU per wake on the 2-core bench machine, against 45 us after a 1 ms sleep:
docs/performance.md). :class:`SlotClock` keeps the waiting sends in time order under one timer, armed for
the earliest slot; when it fires, every send whose slot falls within :data:`SLOT_EARLY` of now goes too.
In fleet mode a process takes its slots in runs reserved together (one ``interval`` apart), so at 80/s a
wake sends about three requests, and their answers come back together.

What it costs the budget: a send goes at most :data:`SLOT_EARLY` before its slot, never after it, so over
any stretch of time ``T`` the requests sent are at most those whose slots fall within ``T + SLOT_EARLY``:
the budget's rate is kept on average and exceeded by at most ``rate * SLOT_EARLY`` requests in any window
(2 at 80/s over any second, against a GCRA burst of 8 allowed already).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

SLOT_EARLY = 0.025  # a send whose slot is this close (seconds) goes with the one the clock wakes for


def due(slot: float, now: float) -> bool:
    """Whether a send reserved for ``slot`` goes at ``now`` (``now`` being when the clock woke)."""
    return slot <= now + SLOT_EARLY


class SlotClock:
    """Wakes sends at their reserved slots (monotonic time), those due together on one wake."""

    def __init__(self) -> None:
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties keep their arrival order (futures do not compare)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self._sleepers)

    async def until(self, slot: float) -> None:
        """Return at ``slot``, or up to :data:`SLOT_EARLY` before it along with an earlier slot's wake."""
        if due(slot, time.monotonic()) and not self._sleepers:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (slot, next(self._order), waiter))
        self._arm()
        await waiter  # cancelled with its task: the entry is dropped at its turn

    def _arm(self) -> None:
        """Set the one timer for the earliest slot, if it is not set for it already."""
        if not self._sleepers:
            return
        earliest = self._sleepers[0][0]
        if self._timer is not None and self._timer_at <= earliest:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = earliest
        self._timer = asyncio.get_running_loop().call_later(max(0.0, earliest - time.monotonic()), self._ring)

    def _ring(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = time.monotonic()
        sleepers = self._sleepers
        while sleepers and due(sleepers[0][0], now):
            waiter = heapq.heappop(sleepers)[2]
            if not waiter.done():
                waiter.set_result(None)
        self._arm()
