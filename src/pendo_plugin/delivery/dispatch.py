"""The one send path: which payloads this process may send, and sending them as they come, each settled
through a callback with its outcome.

:func:`admit` applies the shadow, kill-switch, secret and key checks (``Settings.hold_reason``, which
the router uses too) to every payload about to be sent, whatever it comes from: the live queue, a
spool file replayed by the worker (on ``pendo_plugin.flush()`` or every 30 s) or by ``pendo-plugin
spool drain``, an export line of ``pendo-plugin replay``, an entry of fleet mode's Redis stream. A held
payload is settled as ``failed``, so it stays in the spool (or the stream) for a later moment or a process
that may send it; it never reaches Pendo.

A :class:`Dispatcher` sends track events and webhook messages as they are submitted and merges metadata
rows per kind, sending them when a batch is full, due (``batch_interval``) or forced; batches of one kind
go out in order and never send an older field value after a newer one (:class:`FieldClock`). Events wait
in a deque that a bounded pool of long-lived sending tasks empties (no task per event); a metadata batch
is one task. The pool is as large as the sends the owner lets be in flight at once, not the limiter's
current limit: a task waiting out a retry then queues for a slot behind the others, as one task per event
did, instead of retrying ahead of them (with a pool the size of the limit, a run of 503s all fell on the
first few events and used up their retries). It tracks what is in flight, for ``flush()``'s deadline and
for shutdown. The worker (live queue, spool replay,
sync mode), fleet mode's Redis reader (:mod:`pendo_plugin.delivery.redis_queue`), ``pendo-plugin replay``
and ``pendo-plugin spool drain`` all send through one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.rows import FieldClock, MergedRows, Row
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo.payload import METADATA_KINDS, Payload

SLICE = 512  # sends a drain of one spool file keeps in flight at most

Settle = Callable[[Payload, Outcome], None]
Origins = MergedRows[tuple[Settle, Payload]]


class Job(NamedTuple):
    """One event waiting for a sending task."""

    payload: Payload
    settings: Settings
    settle: Settle
    retry: bool


def admit(payload: Payload, settings: Settings, settle: Settle) -> bool:
    """True if ``payload`` may be sent; otherwise settle it at once as failed, so it is kept
    (``held:<reason>:<kind>``; in fleet mode it goes back to the stream). (What a spool file or the
    stream holds that is no payload was dropped when it was read:
    :func:`pendo_plugin.pendo.payload.decode`.)"""
    reason = settings.hold_reason(payload.route)
    if reason is not None:
        counters.record("held", reason, payload.kind)
        settle(payload, "failed")
        return False
    return True


class Dispatcher:
    """Sends submitted payloads over ``sender`` (which its owner may replace) and settles each one;
    touched only from the loop it runs on."""

    def __init__(self, sender: Sender, clock: FieldClock | None = None, pool: int = SLICE) -> None:
        self.sender = sender
        self.pool = pool  # sending tasks at most (the owner may change it)
        self.clock = clock or FieldClock()  # an older metadata value is never sent after a newer one
        self.tasks: set[asyncio.Task[Any]] = set()
        self.replays: set[asyncio.Task[Any]] = set()  # the subset busy with a spool replay (no retries)
        self.on_done: Callable[[], None] | None = None  # called as each send ends (a slot is free)
        self._jobs: deque[Job] = deque()  # events waiting for a sending task
        self._replay_jobs = 0  # how many of them are part of a spool replay
        self._runners: set[asyncio.Task[Any]] = set()  # the sending tasks
        self._starting = 0  # sending tasks started that have not taken their first event yet
        self._progress = asyncio.Event()
        self._rows: dict[str, Origins] = {kind: MergedRows(kind) for kind in METADATA_KINDS}
        self._rows_since: float | None = None  # when the oldest waiting row came
        self._last_rows: dict[str, asyncio.Task[Any]] = {}  # per kind: batches go out in order
        self._follows: dict[asyncio.Task[Any], asyncio.Task[Any]] = {}  # a batch -> the one before it

    @property
    def load(self) -> int:
        """Events waiting for a sending task, plus the tasks in flight."""
        return len(self._jobs) + len(self.tasks)

    def queued(self, *, replays: bool = True) -> int:
        """Events waiting for a sending task (``replays=False``: those of spool replays left out)."""
        return len(self._jobs) if replays else len(self._jobs) - self._replay_jobs

    @property
    def rows_waiting(self) -> bool:
        """Whether metadata rows wait to be sent."""
        return self._rows_since is not None

    def submit(self, payload: Payload, settings: Settings, settle: Settle, *, retry: bool = True) -> bool:
        """Send ``payload`` (``retry=False``: one attempt), or queue it if it is a metadata row; True if a
        send started. A payload this process may not send is settled as failed at once (:func:`admit`)."""
        if not admit(payload, settings, settle):
            return False
        if payload.kind in self._rows:
            self._rows[payload.kind].add(payload, (settle, payload))
            if self._rows_since is None:
                self._rows_since = time.monotonic()
            return False
        self._jobs.append(Job(payload, settings, settle, retry))
        if not retry:
            self._replay_jobs += 1
        self._grow()
        return True

    def _grow(self) -> None:
        """Start sending tasks while more events wait than tasks about to take one, up to :attr:`pool`
        (a task that is sending takes the next event when it is done)."""
        while len(self._jobs) > self._starting and len(self._runners) < self.pool:
            self._starting += 1
            self._runners.add(self.spawn(self._run()))

    async def _run(self) -> None:
        """One sending task: takes the oldest waiting event, sends and settles it, until none wait or
        the pool is larger than :attr:`pool`."""
        task = asyncio.current_task()
        assert task is not None
        self._starting -= 1
        try:
            while self._jobs and len(self._runners) <= self.pool:
                job = self._jobs.popleft()
                if not job.retry:
                    self._replay_jobs -= 1
                    self.replays.add(task)
                outcome: Outcome = "failed"
                try:
                    outcome = await self.sender.send_one(job.payload, job.settings, job.retry)
                finally:
                    job.settle(job.payload, outcome)
                    self.replays.discard(task)
                    self._progress.set()
                    if self.on_done is not None:
                        self.on_done()
                self._grow()
        finally:
            self._runners.discard(task)  # at once, so the pool never shrinks below its size

    def send_rows(self, settings: Settings, *, force: bool = False) -> None:
        """Send the waiting metadata rows as one batch per kind if a batch is full, the oldest row has
        waited ``batch_interval``, or ``force``; each after the batch of its kind before it."""
        if self._rows_since is None:
            return
        waiting = sum(len(rows) for rows in self._rows.values())
        due = force or waiting >= settings.metadata_batch_size
        if not due and time.monotonic() - self._rows_since < settings.batch_interval:
            return
        for kind, rows in self._rows.items():
            if rows:
                self._rows[kind] = MergedRows(kind)
                previous = self._last_rows.get(kind)
                task = self.spawn(self._send_rows(rows, rows.rows(self.clock), settings, previous))
                self._last_rows[kind] = task
                if previous is not None and not previous.done():
                    self._follows[task] = previous
        self._rows_since = None

    def abandon(self) -> None:
        """Settle every waiting event and metadata row as failed without sending it (shutdown: it stays
        spooled)."""
        while self._jobs:
            job = self._jobs.popleft()
            job.settle(job.payload, "failed")
        self._replay_jobs = 0
        for kind, rows in self._rows.items():
            for settle, payload in rows.origins():
                settle(payload, "failed")
            self._rows[kind] = MergedRows(kind)
        self._rows_since = None

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, replay: bool = False) -> asyncio.Task[Any]:
        """Run ``coroutine`` as a task this dispatcher tracks (``replay``: part of a spool replay)."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        if replay:
            self.replays.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.replays.discard(task)
        self._follows.pop(task, None)
        self._progress.set()
        if task in self._runners:  # a sending task cancelled before it began
            self._runners.discard(task)
            self._starting -= 1
        if self._jobs:
            self._grow()  # a sending task was cancelled (its event settled as failed): the rest still go
        if self.on_done is not None:
            self.on_done()

    async def _send_rows(
        self, rows: Origins, merged: list[Row], settings: Settings, previous: asyncio.Task[Any] | None
    ) -> None:
        """Send one merged batch once the batch of that kind before it is settled (so, for a row in
        both, the newer values reach Pendo last)."""
        outcome: Outcome = "failed"
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            outcome = await self.sender.send_metadata(rows.kind, merged, settings)
        finally:
            for settle, payload in rows.origins():
                settle(payload, outcome)

    # ----- what is in flight ---------------------------------------------------------------------

    async def room(self, limit: int) -> None:
        """Wait until the :attr:`load` is below ``limit``."""
        while self.load >= limit:
            self._progress.clear()
            await self._progress.wait()

    async def wait(self) -> None:
        """Wait until every event submitted and every send started has settled."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def cancel(self) -> None:
        """Settle what waits as failed and cancel every send in flight (each settles as failed)."""
        while self._jobs:
            job = self._jobs.popleft()
            job.settle(job.payload, "failed")
        self._replay_jobs = 0
        for task in list(self.tasks):
            task.cancel()

    def moving(self, task: asyncio.Task[Any], deadline: float) -> bool:
        """Whether ``task`` is sending, or waits for something that ends before ``deadline``."""
        until = self.blocked_until(task)
        return until is None or until < deadline

    def blocked_until(self, task: asyncio.Task[Any] | None) -> float | None:
        """When ``task`` (or the metadata batch it waits for) can next make progress, if it waits out
        a retry or a Retry-After pause; None if it is sending or waiting for a slot."""
        while task is not None:
            until = self.sender.blocked_until(task)
            if until is not None:
                return until
            task = self._follows.get(task)
            if task is not None and task.done():
                return None
        return None


async def dispatch(sender: Sender, payloads: list[Payload], settings: Settings, settle: Settle,
                   clock: FieldClock, *, retry: bool = True) -> None:
    """Send ``payloads`` (at most :data:`SLICE` at once; metadata rows merged per kind, never an older
    value after a newer one: ``clock``) and settle every one of them with its outcome."""
    dispatcher = Dispatcher(sender, clock, SLICE)
    for payload in payloads:
        await dispatcher.room(SLICE)
        dispatcher.submit(payload, settings, settle, retry=retry)
    dispatcher.send_rows(settings, force=True)
    await dispatcher.wait()
