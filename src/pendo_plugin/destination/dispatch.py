"""The one send path: which payloads this process may send, and sending them as they come, each settled
through a callback with its outcome.

:func:`admit` applies the shadow, kill-switch, secret and key checks (``Settings.hold_reason``, which
the router uses too) to every payload about to be sent, whatever it comes from: the live queue, a
spool file replayed by the worker (on ``pendo_plugin.flush()`` or every 30 s) or by ``pendo-plugin
spool drain``, an export line of ``pendo-plugin replay``. A held payload is settled as ``failed``, so it
stays in the spool for a later moment or a process that may send it; it never reaches Pendo.

A :class:`Dispatcher` sends track events and webhook messages as they are submitted and merges metadata
rows per kind, sending them when a batch is full, due (``batch_interval``) or forced; batches of one kind
go out in order and never send an older field value after a newer one (:class:`FieldClock`). It tracks
what is in flight, for ``flush()``'s deadline and for shutdown. The worker (live queue, spool replay,
sync mode), ``pendo-plugin replay`` and ``pendo-plugin spool drain`` all send through one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.rows import FieldClock, MergedRows, Row
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo.payload import METADATA_KINDS, Payload

SLICE = 512  # sends a drain of one spool file keeps in flight at most

Settle = Callable[[Payload, Outcome], None]
Origins = MergedRows[tuple[Settle, Payload]]


def admit(payload: Payload, settings: Settings, settle: Settle) -> bool:
    """True if ``payload`` may be sent; otherwise settle it at once as failed, so it is kept
    (``held:<reason>:<kind>``). (What a spool file holds that is no payload was dropped when it was
    read: :func:`pendo_plugin.pendo.payload.decode`.)"""
    reason = settings.hold_reason(payload.route)
    if reason is not None:
        counters.incr(f"held:{reason}:{payload.kind}")
        settle(payload, "failed")
        return False
    return True


class Dispatcher:
    """Sends submitted payloads over ``sender`` (which its owner may replace) and settles each one;
    touched only from the loop it runs on."""

    def __init__(self, sender: Sender, clock: FieldClock | None = None) -> None:
        self.sender = sender
        self.clock = clock or FieldClock()  # an older metadata value is never sent after a newer one
        self.tasks: set[asyncio.Task[Any]] = set()
        self.replays: set[asyncio.Task[Any]] = set()  # the subset sending without retries (spool replay)
        self.on_done: Callable[[], None] | None = None  # called as each task ends (a slot is free)
        self._rows: dict[str, Origins] = {kind: MergedRows(kind) for kind in METADATA_KINDS}
        self._rows_since: float | None = None  # when the oldest waiting row came
        self._last_rows: dict[str, asyncio.Task[Any]] = {}  # per kind: batches go out in order
        self._follows: dict[asyncio.Task[Any], asyncio.Task[Any]] = {}  # a batch -> the one before it

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
        self.spawn(self._send_one(payload, settings, settle, retry), replay=not retry)
        return True

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

    def abandon_rows(self) -> None:
        """Settle every waiting metadata row as failed without sending it (shutdown: it stays spooled)."""
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
        if self.on_done is not None:
            self.on_done()

    async def _send_one(self, payload: Payload, settings: Settings, settle: Settle, retry: bool) -> None:
        outcome: Outcome = "failed"
        try:
            outcome = await self.sender.send_one(payload, settings, retry)
        finally:
            settle(payload, outcome)

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
        """Wait until fewer than ``limit`` tasks are in flight."""
        while len(self.tasks) >= limit:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)

    async def wait(self) -> None:
        """Wait until every send started has settled."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def cancel(self) -> None:
        """Cancel every send in flight (each settles as failed)."""
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
    dispatcher = Dispatcher(sender, clock)
    for payload in payloads:
        await dispatcher.room(SLICE)
        dispatcher.submit(payload, settings, settle, retry=retry)
    dispatcher.send_rows(settings, force=True)
    await dispatcher.wait()
