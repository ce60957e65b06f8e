"""When the worker's loop runs: what wakes it early (:class:`Bell`), when it takes the intake to write it
ahead (:func:`write_ahead_due`), and when it pauses between turns under load (:class:`Pacer`).

**Writing ahead.** A slice of the intake costs one spool file (two fsyncs, a rename, an acknowledgement
log) whatever its size, so while sends are under way fewer than ``WRITE_AHEAD_BATCH`` events wait up to
``WRITE_AHEAD_WAIT`` for more to share their file.

**Answer coalescing.** Pendo takes one track event per request, so under load its answers come back one
at a time, and a loop left to itself wakes up for each one: an ``epoll`` wait, a context switch, a turn
of the loop and the GIL taken back cost about as much CPU as reading the answer. While at least
``PACE_MIN_IN_FLIGHT`` requests are in flight and answers are coming back, the worker's thread sleeps
``PACE_INTERVAL`` between turns instead (without the GIL: the app runs meanwhile), and the next turn
reads, settles and replaces all the answers that arrived. With fewer requests in flight, after
``PACE_QUIET_TURNS`` paced turns without an answer (requests that hang, a slow Pendo: the loop waits for
the next answer as usual rather than waking every ``PACE_INTERVAL``), or once shutdown begins, the loop
runs as usual. The cost: an answer is read up to ``PACE_INTERVAL`` later than it could be, and with it
the next request of that slot is sent. Pendo's round trip (tens of milliseconds) dwarfs that, and with
many requests in flight throughput is bounded by Pendo, not by the pause. Figures: docs/performance.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WRITE_AHEAD_BATCH = 256  # while sends are under way, the intake is taken once this many events wait,
WRITE_AHEAD_WAIT = 0.02  # or once the first of them waited this long (seconds): fewer, larger spool files
OVERFLOW_FILE = 512  # overflow is spooled in files of this many messages,
OVERFLOW_WAIT = 1.0  # or once the first of them waited this long (seconds): a few files a second at most
PACE_INTERVAL = 0.002  # seconds the loop pauses between turns while it paces
PACE_MIN_IN_FLIGHT = 8  # requests in flight from which it paces,
PACE_QUIET_TURNS = 10  # until this many paced turns in a row (20 ms) handled no answer


def write_ahead_due(waiting: int, waited: float, sends_under_way: bool, hurried: bool) -> bool:
    """Whether the ``waiting`` events of the intake (the first for ``waited`` seconds) are routed and written
    ahead now: at once when nothing is in flight, or a flush or shutdown hurries them; else once
    ``WRITE_AHEAD_BATCH`` wait or the first waited ``WRITE_AHEAD_WAIT``."""
    return hurried or not sends_under_way or waiting >= WRITE_AHEAD_BATCH or waited >= WRITE_AHEAD_WAIT


def overflow_due(waiting: int, waited: float, hurried: bool) -> bool:
    """Whether the ``waiting`` messages past the queue (the first for ``waited`` seconds) are spooled now:
    once a file's worth (:data:`OVERFLOW_FILE`) waits, the first waited :data:`OVERFLOW_WAIT`, or a flush
    or shutdown hurries them; so sustained overload writes files of hundreds of payloads, not a handful."""
    return hurried or waiting >= OVERFLOW_FILE or waited >= OVERFLOW_WAIT


class Bell:
    """Wakes the worker's loop from its idle poll early: like an ``asyncio.Event``, but its timed wait
    is a future and a timer, where ``asyncio.wait_for`` makes a task per wait."""

    def __init__(self) -> None:
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        """End the current wait, or the next one at once."""
        self._rung = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Until rung (at once if it rang since the last wait) or ``seconds`` passed (the timer rings)."""
        if not self._rung:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(seconds, self.ring)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        self._rung = False


def pacing_due(in_flight: int, quiet_turns: int, stopping: bool) -> bool:
    """Whether the loop pauses before its next turn, with ``in_flight`` requests in flight and no answer
    handled in the last ``quiet_turns`` paced turns: answers must be coming back, else pausing only
    wakes the loop for nothing (requests that hang until their timeout, a slow Pendo)."""
    return in_flight >= PACE_MIN_IN_FLIGHT and quiet_turns < PACE_QUIET_TURNS and not stopping


class Pacer:
    """Paces the running loop while :func:`pacing_due`; :meth:`poke` it on each turn of the worker's
    main loop. ``in_flight`` (requests in flight), ``answered`` (how many attempts have ended so far) and
    ``stopping`` are read at every pause."""

    def __init__(
        self, in_flight: Callable[[], int], answered: Callable[[], int], stopping: Callable[[], bool]
    ) -> None:
        self._in_flight = in_flight
        self._answered = answered
        self._stopping = stopping
        self._task: asyncio.Task[None] | None = None
        self.pauses = 0  # how many times it paused the loop so far

    def poke(self) -> None:
        """Start pacing if it is due and not under way."""
        if self._task is None and pacing_due(self._in_flight(), 0, self._stopping()):
            self._task = asyncio.ensure_future(self._pace())

    async def _pace(self) -> None:
        quiet, seen = 0, self._answered()
        try:
            while pacing_due(self._in_flight(), quiet, self._stopping()):
                time.sleep(PACE_INTERVAL)  # blocks this loop on purpose (see the module docstring)
                self.pauses += 1
                await asyncio.sleep(0)  # one turn: every answer that came meanwhile is handled
                answered = self._answered()
                quiet = quiet + 1 if answered == seen else 0
                seen = answered
        finally:
            self._task = None

    def stop(self) -> None:
        """Stop pacing now (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
