"""The delivery runtime: a bounded intake the app thread appends to, and one worker thread running
an asyncio loop that routes messages, writes them ahead to the spool and sends them.

The app thread's whole cost is a length check and a ``deque.append`` (atomic under the GIL): no
lock, no syscall, no translation. The worker polls the intake with a short adaptive interval
(10 ms after traffic, backing off to 200 ms when idle) instead of being woken per message;
flush and shutdown wake it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.batch import Batch
from pendo_plugin.delivery.http import AiohttpTransport, Transport
from pendo_plugin.delivery.limiter import AdaptiveLimiter
from pendo_plugin.delivery.senders import Outcome, Payload, Sender
from pendo_plugin.delivery.spool import Claim, Spool
from pendo_plugin.logs import log, log_once
from pendo_plugin.route import Router

PUMP_BATCH = 512
TASKS_PER_SLOT = 8
SPOOL_RETRY_INTERVAL = 30.0
IDLE_POLL_MIN = 0.01
IDLE_POLL_MAX = 0.2

# A metadata row waiting to be sent: merged values, and every (batch, payload) merged into it.
PendingRow = tuple[dict[str, Any], list[tuple[Batch, Payload]]]


def payload_kind(payload: Payload) -> str:
    """``track``, ``webhook``, ``visitor`` or ``account``."""
    return str(payload["t"] if payload["k"] == "meta" else payload["k"])


class Runtime:
    """Owns the intake queue, the worker thread and everything the worker sends."""

    def __init__(self, router: Router | None = None) -> None:
        self.router = router or Router()
        self._intake: deque[Mapping[str, Any]] = deque()
        self._overflow: deque[Mapping[str, Any]] = deque()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        # worker-side state, touched only on the loop
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._closing = False
        self._flushing = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._metadata: dict[str, dict[str, PendingRow]] = {"visitor": {}, "account": {}}
        self._metadata_since: float | None = None
        self._spool_draining = False
        self._spool_next_try = 0.0
        self._sender: Sender | None = None
        self._transport_source: Any = None

    # ----- app thread -----------------------------------------------------------------------

    def submit(self, message: Mapping[str, Any], capacity: int) -> None:
        """Hand one message to the worker; never blocks. Overflow goes to the spool, else is counted."""
        if len(self._intake) < capacity:
            self._intake.append(message)
        elif len(self._overflow) < capacity:
            self._overflow.append(message)
        else:
            counters.incr("dropped:queue_full")
        if self._thread is None:
            self.start()

    def start(self) -> None:
        """Start the worker thread if it is not running."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._ready.clear()
            thread = threading.Thread(target=self._run, name="pendo-plugin-worker", daemon=True)
            self._thread = thread
            thread.start()
        self._ready.wait(5.0)

    def _call(self, coroutine_factory: Callable[[], Any], timeout: float) -> Any:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or thread is threading.current_thread():
            return None
        future = asyncio.run_coroutine_threadsafe(coroutine_factory(), loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            return None

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was delivered, spooled or dropped; False on timeout."""
        if self._thread is None:
            self.start()
        return bool(self._call(lambda: self._drain(timeout), timeout + 1.0))

    def shutdown(self, timeout: float) -> bool:
        """Deliver what fits in ``timeout`` seconds, spool the rest, stop the worker."""
        if self._thread is None:
            if not (self._intake or self._overflow):
                return True
            self.start()
        done = bool(self._call(lambda: self._shutdown(timeout), timeout + 5.0))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        with self._start_lock:
            self._thread = None
            self._loop = None
        return done

    def deliver_now(self, message: Mapping[str, Any], timeout: float) -> None:
        """Route and send one message before returning (the SDK's ``sync_mode``)."""
        if self._thread is None:
            self.start()
        self._call(lambda: self._deliver_now(message), timeout)

    def pending(self) -> int:
        """Messages waiting in the intake (approximate)."""
        return len(self._intake) + len(self._overflow)

    # ----- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # a bug must not reach the app; say so
            log.error("pendo_plugin: worker stopped: %s: %s", type(exc).__name__, exc)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _settings(self) -> Settings:
        settings = config.current()
        if self._sender is None or settings.transport is not self._transport_source:
            self._transport_source = settings.transport
            transport: Transport = settings.transport or AiohttpTransport(pool_size=settings.max_concurrency)
            assert self._stopping is not None
            self._sender = Sender(transport, AdaptiveLimiter(settings.max_concurrency), self._stopping)
            self._sender.on_drop = self._on_drop
        self._sender.limiter.maximum = settings.max_concurrency
        return settings

    def _on_drop(self, exc: Exception, items: list[Payload]) -> None:
        callback = config.current().on_error
        if callback is None:
            return
        try:
            callback(exc, items)
        except Exception as error:
            log_once(
                "on_error", logging.ERROR, "pendo_plugin: on_error callback raised %s", type(error).__name__
            )

    def _undeliverable(self, items: list[Payload]) -> None:
        for item in items:
            counters.incr(f"dropped:undeliverable:{payload_kind(item)}")
        log_once(
            "undeliverable",
            logging.WARNING,
            "pendo_plugin: payloads could not be delivered and the spool is "
            "off (PENDO_SPOOL_DIR); dropped and counted as dropped:undeliverable",
        )
        self._on_drop(RuntimeError("undeliverable and the spool is off"), items)

    @staticmethod
    def _spool(settings: Settings) -> Spool | None:
        if settings.spool_dir is None:
            return None
        return Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024))

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        self._ready.set()
        poll = IDLE_POLL_MIN
        while not self._closing:
            settings = self._settings()
            busy = self._pump(settings)
            self._send_due_metadata(settings)
            self._drain_spool_if_due(settings)
            if busy:
                poll = IDLE_POLL_MIN
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()
            poll = min(poll * 2, IDLE_POLL_MAX)
        await self._stopped.wait()

    def _take(self, source: deque[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
        taken: list[Mapping[str, Any]] = []
        while source and len(taken) < limit:
            taken.append(source.popleft())
        return taken

    def _pump(self, settings: Settings) -> bool:
        """Route a slice of the intake, write it ahead, send it; False when there was nothing to do."""
        room = settings.max_concurrency * TASKS_PER_SLOT - len(self._tasks)
        live = self._take(self._intake, PUMP_BATCH if self._closing else min(PUMP_BATCH, max(room, 0)))
        overflow = self._take(self._overflow, PUMP_BATCH)
        if overflow:
            counters.incr("overflowed", len(overflow))
        if live:
            self._start_batch(self._route_all(live, settings), settings, send=not self._closing)
        if overflow:
            self._start_batch(self._route_all(overflow, settings), settings, send=False)
        return bool(live or overflow)

    def _route_all(self, messages: list[Mapping[str, Any]], settings: Settings) -> list[Payload]:
        payloads: list[Payload] = []
        for message in messages:
            payloads.extend(self.router.route(message, settings))
        return payloads

    def _start_batch(self, payloads: list[Payload], settings: Settings, *, send: bool) -> Batch | None:
        """Write ``payloads`` ahead to the spool and dispatch them (or just leave them spooled)."""
        if not payloads:
            return None
        spool = self._spool(settings)
        claim = spool.write_claimed(payloads) if spool is not None else None
        if not send:
            if claim is not None:
                counters.incr("spooled", len(payloads))
                claim.release()
            else:
                self._undeliverable(payloads)
            return None
        batch = Batch(len(payloads), claim, spool, self._undeliverable)
        self._dispatch_batch(batch, payloads, settings)
        return batch

    def _dispatch_batch(
        self, batch: Batch, payloads: list[Payload], settings: Settings, retry: bool = True
    ) -> None:
        for payload in payloads:
            if payload.get("k") == "meta" and payload.get("t") in self._metadata:
                rows = self._metadata[payload["t"]]
                values, origins = rows.setdefault(str(payload["id"]), ({}, []))
                values.update(payload.get("v") or {})
                origins.append((batch, payload))
                if self._metadata_since is None:
                    self._metadata_since = time.monotonic()
            elif payload.get("k") in ("track", "webhook"):
                self._spawn(self._send_one(batch, payload, settings, retry))
            else:
                counters.incr("dropped:unknown_payload")
                batch.finish(payload, "rejected")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_one(self, batch: Batch, payload: Payload, settings: Settings, retry: bool) -> None:
        assert self._sender is not None
        outcome: Outcome = "failed"
        try:
            outcome = await self._sender.send_one(payload, settings, retry)
        finally:
            batch.finish(payload, outcome)

    def _send_due_metadata(self, settings: Settings, force: bool = False) -> None:
        if self._metadata_since is None:
            return
        waiting = sum(len(rows) for rows in self._metadata.values())
        due = force or self._flushing or waiting >= settings.metadata_batch_size
        if not due and time.monotonic() - self._metadata_since < settings.batch_interval:
            return
        for kind, rows in self._metadata.items():
            if rows:
                self._metadata[kind] = {}
                self._spawn(self._send_metadata(kind, rows, settings))
        self._metadata_since = None

    async def _send_metadata(self, kind: str, rows: dict[str, PendingRow], settings: Settings) -> None:
        assert self._sender is not None
        payloads = [
            {"k": "meta", "t": kind, "id": entity, "v": values} for entity, (values, _) in rows.items()
        ]
        outcome: Outcome = "failed"
        try:
            outcome = await self._sender.send_metadata(kind, payloads, settings)
        finally:
            for _, origins in rows.values():
                for batch, payload in origins:
                    batch.finish(payload, outcome)

    # ----- the spool, drained oldest first -------------------------------------------------

    def _drain_spool_if_due(self, settings: Settings) -> None:
        if self._spool_draining or time.monotonic() < self._spool_next_try or self._closing:
            return
        spool = self._spool(settings)
        self._spool_next_try = time.monotonic() + SPOOL_RETRY_INTERVAL
        if spool is None or not spool.has_files():
            return
        self._spool_draining = True
        self._spawn(self._drain_spool(spool, settings))

    async def _drain_spool(self, spool: Spool, settings: Settings) -> None:
        try:
            for claim in spool.claims():
                if self._closing or not await self._replay_claim(claim, spool, settings):
                    claim.release()
                    return
        finally:
            self._spool_draining = False

    async def _replay_claim(self, claim: Claim, spool: Spool, settings: Settings) -> bool:
        """Send one claimed file, one attempt per payload, and settle it; False if none of it could be
        delivered (Pendo still down: the file waits for the next try)."""
        done = asyncio.Event()
        batch = Batch(len(claim.items), claim, spool, self._undeliverable, on_settled=done.set)
        if not claim.items:
            claim.done()
            return True
        self._dispatch_batch(batch, claim.items, settings, retry=False)
        self._send_due_metadata(settings, force=True)
        await done.wait()
        counters.incr("unspooled", len(claim.items) - len(batch.failed))
        return len(batch.failed) < len(claim.items)

    # ----- flush, shutdown, sync mode -------------------------------------------------------

    def _idle(self) -> bool:
        """Nothing queued, and every task is either done or (with the spool on) waiting to retry a
        payload that is already safe on disk."""
        busy_tasks = len(self._tasks)
        if self._sender is not None and self._spool(config.current()) is not None:
            busy_tasks -= self._sender.waiting_retry
        return not (self._intake or self._overflow or busy_tasks > 0 or self._metadata_since is not None)

    async def _drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._flushing += 1
        try:
            assert self._wake is not None
            while True:
                settings = self._settings()
                self._pump(settings)
                self._send_due_metadata(settings, force=True)
                if self._idle():
                    return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.005)
        finally:
            self._flushing -= 1

    async def _shutdown(self, timeout: float) -> bool:
        assert self._stopping is not None and self._wake is not None and self._stopped is not None
        self._stopping.set()  # cut retry waits short: those payloads stay in the spool
        drained = await self._drain(timeout)
        self._closing = True
        settings = self._settings()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._intake or self._overflow:
            self._pump(settings)  # with _closing set, what is left is written to the spool unsent
        for kind, rows in self._metadata.items():
            for _, origins in rows.values():
                for batch, payload in origins:
                    batch.finish(payload, "failed")
            self._metadata[kind] = {}
        self._metadata_since = None
        if self._sender is not None and self._transport_source is None:
            with contextlib.suppress(Exception):
                await self._sender.transport.close()
        self._sender = None
        self._stopped.set()
        self._wake.set()
        return drained

    async def _deliver_now(self, message: Mapping[str, Any]) -> None:
        settings = self._settings()
        payloads = self.router.route(message, settings)
        spool = self._spool(settings)
        claim = spool.write_claimed(payloads) if spool is not None else None
        batch = Batch(len(payloads), claim, spool, self._undeliverable)
        assert self._sender is not None
        for payload in payloads:
            outcome: Outcome = "failed"
            try:
                if payload["k"] == "meta":
                    outcome = await self._sender.send_metadata(payload["t"], [payload], settings)
                else:
                    outcome = await self._sender.send_one(payload, settings)
            finally:
                batch.finish(payload, outcome)
