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
go out in order and never send an older field value after a newer one (:class:`FieldClock`). An event
waits in the limiter's line as its own place in it (:meth:`AdaptiveLimiter.when_free`) and its first
attempt starts the moment it gets a slot, as callbacks, without a task (:meth:`Sender.launch`); only a
failed attempt makes a task, which retries it. Retries wait for a slot in the same line, so a run of
503s spreads over the events in the order they came, as with one task per event. The dispatcher tracks
what is in flight, for ``flush()``'s deadline and for shutdown. The worker (live queue, spool replay,
sync mode), fleet mode's Redis reader (:mod:`pendo_plugin.delivery.fleet.queue`), ``pendo-plugin replay``
and ``pendo-plugin spool drain`` all send through one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.holds import hold_reason
from pendo_plugin.delivery.rows import FieldClock, MergedRows, Row
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo.payload import METADATA_KINDS, Payload

SLICE = 512  # sends a drain of one spool file keeps in flight at most
EVENTS_PER_SLOT = 8  # events an owner lets wait or be in flight per request allowed in flight

Settle = Callable[[Payload, Outcome], None]
Held = Callable[[Payload], str | None]
Origins = MergedRows[tuple[Settle, Payload]]


class _Event:
    """One event submitted: in the limiter's line until it gets a slot (``queued``; it is its own place
    in line), then in its first attempt (``attempt``), then, if that failed, retried by a task."""

    __slots__ = ("attempt", "dispatcher", "payload", "queued", "retry", "settings", "settle")

    def __init__(
        self, dispatcher: Dispatcher, payload: Payload, settings: Settings, settle: Settle, retry: bool
    ) -> None:
        self.dispatcher = dispatcher
        self.payload = payload
        self.settings = settings
        self.settle = settle
        self.retry = retry  # False: part of a spool replay (one attempt)
        self.queued = True
        self.attempt: asyncio.Future[Any] | None = None

    def done(self) -> bool:
        """No longer in line (launched, or given up): the limiter passes it over."""
        return not self.queued

    def set_result(self, _: None) -> None:
        """The limiter handed this event a slot: its first attempt starts now."""
        self.queued = False
        self.attempt = self.dispatcher._sender.launch(
            self.payload, self.settings, self.retry, self.settled, self.retry_in_task
        )

    def settled(self, outcome: Outcome) -> None:
        self.dispatcher._settle(self, outcome)

    def retry_in_task(self, retrying: Coroutine[Any, Any, Outcome], done: Callable[[Outcome], None]) -> None:
        self.dispatcher._retry(self, retrying, done)


def admit(payload: Payload, settings: Settings, settle: Settle) -> bool:
    """True if ``payload`` may be sent; otherwise settle it at once as failed, so it is kept
    (``held:<reason>:<kind>``; in fleet mode it goes back to the stream). (What a spool file or the
    stream holds that is no payload was dropped when it was read: ``spool.Claim`` counts and acknowledges
    such spool lines, :func:`pendo_plugin.pendo.payload.decode` drops such stream entries.)"""
    reason = hold_reason(payload, settings)
    if reason is not None:
        counters.record("held", reason, payload.kind)
        settle(payload, "failed")
        return False
    return True


class Dispatcher:
    """Sends submitted payloads over ``sender`` (which its owner may replace) and settles each one;
    touched only from the loop it runs on."""

    def __init__(self, sender: Sender, clock: FieldClock | None = None) -> None:
        self._sender = sender
        self.clock = clock or FieldClock()  # an older metadata value is never sent after a newer one
        self.tasks: set[asyncio.Task[Any]] = set()
        self.replays: set[asyncio.Task[Any]] = set()  # the subset busy with a spool replay (no retries)
        self.on_done: Callable[[], None] | None = None  # called as each send ends
        self._events: dict[_Event, None] = {}  # events waiting for a slot or in their first attempt, in
        # the order they came
        self._progress: asyncio.Future[None] | None = None  # what room() and wait() wait on
        self._rows: dict[str, Origins] = {kind: MergedRows(kind) for kind in METADATA_KINDS}
        self._rows_since: float | None = None  # when the oldest waiting row came
        self._row_batches: dict[tuple[str, str], asyncio.Task[Any]] = {}  # (kind, row id) -> its last batch
        self._batch_rows: dict[asyncio.Task[Any], list[tuple[str, str]]] = {}  # a batch -> its rows
        self._follows: dict[asyncio.Task[Any], asyncio.Task[Any]] = {}  # a batch -> one it waits for
        self._carries: dict[asyncio.Task[Any], list[Payload]] = {}  # a retry or a batch -> its payloads

    @property
    def sender(self) -> Sender:
        """What sends; its owner may replace it (a new transport), and the events waiting in the old
        one's line then wait in the new one's, in the same order."""
        return self._sender

    @sender.setter
    def sender(self, sender: Sender) -> None:
        if sender is self._sender:
            return
        self._sender = sender
        for event in [event for event in self._events if event.queued]:
            moved = _Event(self, event.payload, event.settings, event.settle, event.retry)
            event.queued = False  # the old line passes it over; ``moved`` takes its place
            del self._events[event]
            self._events[moved] = None
            sender.limiter.when_free(moved)

    @property
    def load(self) -> int:
        """Events waiting for a slot or in flight, plus the tasks (retries, metadata batches)."""
        return len(self._events) + len(self.tasks)

    def queued(self, *, replays: bool = True) -> int:
        """Events waiting for a slot (``replays=False``: those of spool replays left out)."""
        return sum(1 for event in self._events if event.queued and (replays or event.retry))

    @property
    def rows_waiting(self) -> bool:
        """Whether metadata rows wait to be sent."""
        return self._rows_since is not None

    def submit(self, payload: Payload, settings: Settings, settle: Settle, *, retry: bool = True) -> bool:
        """Send ``payload`` (``retry=False``: one attempt, a spool replay), or queue it if it is a metadata
        row; True if it is an event on its way. A payload this process may not send is settled as failed
        at once (:func:`admit`)."""
        if not admit(payload, settings, settle):
            return False
        if payload.kind in self._rows:
            self._rows[payload.kind].add(payload, (settle, payload))
            if self._rows_since is None:
                self._rows_since = time.monotonic()
            return False
        event = _Event(self, payload, settings, settle, retry)
        self._events[event] = None
        self._sender.limiter.when_free(event)
        return True

    def _retry(
        self, event: _Event, retrying: Coroutine[Any, Any, Outcome], done: Callable[[Outcome], None]
    ) -> None:
        """The first attempt failed: the task that retries it is what is in flight now."""
        event.attempt = None
        task = self.spawn(self._retried(retrying, done), replay=not event.retry)
        self._carries[task] = [event.payload]

    @staticmethod
    async def _retried(retrying: Coroutine[Any, Any, Outcome], done: Callable[[Outcome], None]) -> None:
        outcome: Outcome = "failed"
        try:
            outcome = await retrying
        finally:
            done(outcome)

    def _settle(self, event: _Event, outcome: Outcome) -> None:
        """One event's outcome (its retries, if any, are over)."""
        self._events.pop(event, None)
        event.settle(event.payload, outcome)
        if self._progress is not None:
            self._progressed()
        if self.on_done is not None:
            self.on_done()

    def send_rows(self, settings: Settings, *, force: bool = False) -> None:
        """Send the waiting metadata rows as one batch per kind if a batch is full, the oldest row has
        waited ``batch_interval``, or ``force``; each after the earlier batches that hold one of its rows
        (only those: a row retried for long holds back no batch without it)."""
        if self._rows_since is None:
            return
        waiting = sum(len(rows) for rows in self._rows.values())
        due = force or waiting >= settings.metadata_batch_size
        if not due and time.monotonic() - self._rows_since < settings.batch_interval:
            return
        for kind, rows in self._rows.items():
            if rows:
                self._rows[kind] = MergedRows(kind)
                merged = rows.rows(self.clock)
                keys = [(kind, row_id) for row_id, _ in merged]
                earlier = {self._row_batches[key] for key in keys if key in self._row_batches}
                previous = [task for task in earlier if not task.done()]
                task = self.spawn(self._send_rows(rows, merged, settings, previous))
                self._carries[task] = [payload for _, payload in rows.origins()]
                self._batch_rows[task] = keys
                self._row_batches.update((key, task) for key in keys)
                if previous:
                    self._follows[task] = previous[0]
        self._rows_since = None

    def recheck(self, held: Held) -> int:
        """Settle as failed (so it is kept: spool or stream) everything not yet delivered that ``held``
        now names a reason for, counted ``held:<reason>:<kind>``: events waiting for a slot, first
        attempts (cancelled, also while they wait for the rate gate), retries, and metadata rows waiting
        or in a batch (the whole batch). Called when the settings or the fleet's flags change, so a
        kill switch reaches what already waits in memory. Returns how many payloads it held."""
        count = 0
        for event in list(self._events):
            if not event.queued and event.attempt is None:
                continue  # in a retry task: below
            reason = held(event.payload)
            if reason is None:
                continue
            counters.record("held", reason, event.payload.kind)
            count += 1
            if event.queued:
                event.queued = False  # the limiter passes it over now
                self._settle(event, "failed")
            elif event.attempt is not None:
                event.attempt.cancel()  # its outcome: failed
        for task, payloads in list(self._carries.items()):
            reasons = [reason for reason in map(held, payloads) if reason is not None]
            if reasons and not task.done():
                counters.record("held", reasons[0], payloads[0].kind, len(payloads))
                count += len(payloads)
                task.cancel()  # every payload it carries settles as failed
        for kind, rows in self._rows.items():
            kept: Origins = MergedRows(kind)
            for settle, payload in rows.origins():
                reason = held(payload)
                if reason is None:
                    kept.add(payload, (settle, payload))
                    continue
                counters.record("held", reason, kind)
                count += 1
                settle(payload, "failed")
            self._rows[kind] = kept
        if not any(self._rows.values()):
            self._rows_since = None
        return count

    def abandon(self) -> None:
        """Settle every event waiting for a slot and every metadata row as failed without sending it
        (shutdown: it stays spooled)."""
        self._drop_queued()
        for kind, rows in self._rows.items():
            for settle, payload in rows.origins():
                settle(payload, "failed")
            self._rows[kind] = MergedRows(kind)
        self._rows_since = None

    def _drop_queued(self) -> None:
        """Settle every event still waiting for a slot as failed; it gives up its place in line."""
        for event in [event for event in self._events if event.queued]:
            event.queued = False  # the limiter passes it over now
            self._settle(event, "failed")

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
        self._carries.pop(task, None)
        for key in self._batch_rows.pop(task, ()):
            if self._row_batches.get(key) is task:
                del self._row_batches[key]
        if self._progress is not None:
            self._progressed()
        if self.on_done is not None:
            self.on_done()

    async def _send_rows(
        self, rows: Origins, merged: list[Row], settings: Settings, previous: list[asyncio.Task[Any]]
    ) -> None:
        """Send one merged batch once the earlier batches holding one of its rows are settled (so, for a
        row in both, the newer values reach Pendo last)."""
        failed: set[str] | None = None  # the ids kept for later (None: all of them, it did not finish)
        set_aside: set[str] = set()  # rows whose preparation raised: settled as rejected, never resent
        try:
            if previous:
                await asyncio.wait(previous)
            failed = await self.sender.send_metadata(rows.kind, merged, settings, set_aside)
        finally:
            for settle, payload in rows.origins():
                kept = failed is None or payload.row_id in failed
                settle(payload, "rejected" if payload.row_id in set_aside else "failed" if kept else "sent")

    # ----- what is in flight ---------------------------------------------------------------------

    def _progressed(self) -> None:
        """Something settled: wake :meth:`room` or :meth:`wait` (a future only while one waits, where an
        ``asyncio.Event`` is set per event)."""
        waiter, self._progress = self._progress, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_progress(self) -> None:
        """Until something settles; shared by every waiter, so a waiter cancelled does not cancel it."""
        if self._progress is None:
            self._progress = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._progress)

    async def room(self, limit: int) -> None:
        """Wait until the :attr:`load` is below ``limit``."""
        while self.load >= limit:
            await self._next_progress()

    async def wait(self) -> None:
        """Wait until every event submitted and every task started has settled."""
        while self._events or self.tasks:
            await self._next_progress()

    def cancel(self) -> None:
        """Settle what waits for a slot as failed and cancel every send in flight and every task (each
        settles as failed)."""
        self._drop_queued()
        for event in self._events:
            if event.attempt is not None:
                event.attempt.cancel()
        for task in list(self.tasks):
            task.cancel()

    async def stop(self, grace: float) -> None:
        """:meth:`cancel`, then wait up to ``grace`` seconds for what was cancelled to settle."""
        self.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wait(), grace)

    def pending(self, *, replays: bool = True) -> bool:
        """Whether any event or task has not settled yet (``replays=False``: spool replays left out)."""
        if replays:
            return bool(self._events or self.tasks)
        return any(event.retry for event in self._events) or bool(self.tasks - self.replays)

    def moving(self, deadline: float, *, replays: bool = True) -> bool:
        """Whether something here makes progress before ``deadline``: an attempt in flight, an event
        waiting for a slot while no Retry-After pause holds past it, or a task that is sending or waits
        for something that ends before it (``replays=False``: spool replays left out)."""
        if any(event.attempt is not None and (replays or event.retry) for event in self._events):
            return True
        limiter = self.sender.limiter
        if self.queued(replays=replays) and (not limiter.paused or limiter.paused_until < deadline):
            return True
        tasks = self.tasks if replays else self.tasks - self.replays
        return any(self._task_moving(task, deadline) for task in tasks)

    def _task_moving(self, task: asyncio.Task[Any], deadline: float) -> bool:
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
    dispatcher = Dispatcher(sender, clock)
    for payload in payloads:
        await dispatcher.room(SLICE)
        dispatcher.submit(payload, settings, settle, retry=retry)
    dispatcher.send_rows(settings, force=True)
    await dispatcher.wait()
