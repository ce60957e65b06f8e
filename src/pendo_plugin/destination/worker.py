"""The delivery worker: one thread running an asyncio loop that routes messages, writes them
ahead to the spool and sends them.

It polls the runtime's intake with a short adaptive interval (10 ms after traffic, backing off to
200 ms when idle) instead of being woken per message; flush and shutdown run on its loop at once.

Each slice the worker takes from the intake is routed and, with the spool on, written ahead to
one locked spool file at once, whether or not there is capacity to send it yet: the payloads
then wait in the backlog (bounded by ``queue_size``) until a sending slot frees up. So a message
is on disk within one poll interval of ``track()`` returning, however slow Pendo is. When the loop
wakes, takes the intake and pauses under load is :mod:`~pendo_plugin.destination.tempo`'s to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.batch import Batch
from pendo_plugin.delivery.dead_letters import own_failure
from pendo_plugin.delivery.dispatch import EVENTS_PER_SLOT, Dispatcher
from pendo_plugin.delivery.fleet.mode import Fleet
from pendo_plugin.delivery.senders import Sender
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.destination import tempo
from pendo_plugin.destination.leftovers import leave_in_spool, open_spool, report_drop, undeliverable
from pendo_plugin.destination.queues import Intake
from pendo_plugin.destination.route import Router
from pendo_plugin.destination.spool_replay import SPOOL_RETRY_INTERVAL, SpoolReplay
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.payload import Payload

PUMP_BATCH = 512
IDLE_POLL_MIN = 0.01
IDLE_POLL_MAX = 0.2
DRAIN_POLL = 0.005
DRAIN_POLL_MAX = 0.25  # a flush looks again at most this late when no send ended (sends waiting at the
# rate gate, a retry's pause); the end of a send wakes it at once
CANCEL_GRACE = 1.0


class Worker:
    """Everything the worker thread does; touched only from its loop."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        if intake.router is None:
            intake.router = Router()
        self._intake = intake.live
        self._overflow = intake.overflow
        self._wake: tempo.Bell | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._closing = False
        self._exiting = False  # shutdown has begun: start no new replay of the spool
        self._flushing = 0
        self._intake_since: float | None = None  # since when events wait in the intake for more to join them
        self._overflow_since: float | None = None  # the same for the messages past the queue
        self._backlog: deque[tuple[Batch, Payload]] = deque()
        self._dispatcher: Dispatcher | None = None  # sends and settles: the one send path
        self._replay = SpoolReplay(lambda: self._sends, self._shutting_down, self._own_failure)
        self._drain_bells: set[tempo.Bell] = set()  # one per flush or shutdown under way: rung as sends end
        self._spool_cache: tuple[tuple[Any, float], Spool | None] | None = None
        self._sender: Sender | None = None
        self._transport_source: Any = None
        self._fleet = Fleet(self._write_ahead, self._ring_drains)  # fleet mode (Redis) and the rate budget
        self._pacer = tempo.Pacer(self._in_flight, self._answered, self._shutting_down)

    @property
    def router(self) -> Router:
        router = self.intake.router
        if router is None:
            router = self.intake.router = Router()
        return router

    @staticmethod
    def close_loop(loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _settings(self) -> Settings:
        settings = config.current()
        if self._sender is None or settings.transport is not self._transport_source:
            self._transport_source = settings.transport
            assert self._stopping is not None
            self._sender = Sender.for_settings(settings, self._stopping)
            self._sender.on_drop = report_drop
            self._sender.transport = self._fleet.wrap(self._sender.transport)  # fleet mode
            if self._dispatcher is None:
                self._dispatcher = Dispatcher(self._sender)
                self._dispatcher.on_done = self._task_done
            self._dispatcher.sender = self._sender
        self._fleet.update(settings)  # fleet mode
        self._sender.limiter.maximum = settings.max_concurrency
        if self._fleet.apply_holds(settings, self._sends):  # a hold ended: replay the spool now
            self._replay.next_try = 0.0
        return settings

    def _spool(self, settings: Settings) -> Spool | None:
        """The spool the settings name (one object per directory, so its size estimate carries over)."""
        key = (settings.spool_dir, settings.spool_max_mb)
        cached = self._spool_cache
        if cached is None or cached[0] != key:
            cached = (key, open_spool(settings))
            self._spool_cache = cached
        return cached[1]

    async def main(self, ready: threading.Event) -> None:
        """The worker's loop: take, route, write ahead, send; until shutdown."""
        self._wake = tempo.Bell()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        ready.set()
        poll = IDLE_POLL_MIN
        while not self._closing:
            settings = self._settings()
            busy = self._pump(settings)
            self._sends.send_rows(settings, force=bool(self._flushing))
            self._drain_spool_if_due(settings)
            if busy:
                poll = IDLE_POLL_MIN
                await asyncio.sleep(0)
                continue
            since = self._intake_since
            if since is not None:  # events wait for more to join their spool file: no longer than that
                await self._wake.wait(max(0.0, since + tempo.WRITE_AHEAD_WAIT - time.monotonic()))
                continue
            await self._wake.wait(poll)
            poll = min(poll * 2, IDLE_POLL_MAX)
        await self._stopped.wait()

    @staticmethod
    def _take(source: deque[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
        taken: list[Mapping[str, Any]] = []
        while source and len(taken) < limit:
            taken.append(source.popleft())
        return taken

    def _take_live(self, space: int) -> list[Mapping[str, Any]]:
        """A slice of the intake to route and write ahead, when :func:`tempo.write_ahead_due` says so."""
        intake = self._intake
        if not intake:
            self._intake_since = None
            return []
        now = time.monotonic()
        if self._intake_since is None:
            self._intake_since = now
        hurried = bool(self._flushing or self._closing)
        if not tempo.write_ahead_due(len(intake), now - self._intake_since, bool(self._sends.load), hurried):
            return []
        self._intake_since = None
        return self._take(intake, space)

    def _take_overflow(self) -> list[Mapping[str, Any]]:
        """A file's worth of the messages past the queue, when :func:`tempo.overflow_due` says so."""
        if not self._overflow:
            self._overflow_since = None
            return []
        now = time.monotonic()
        since = self._overflow_since = self._overflow_since or now
        if not tempo.overflow_due(len(self._overflow), now - since, bool(self._flushing or self._closing)):
            return []
        self._overflow_since = None
        return self._take(self._overflow, tempo.OVERFLOW_FILE)

    def _room(self, settings: Settings) -> int:
        """How many more events may be handed to the dispatcher now."""
        return settings.max_concurrency * EVENTS_PER_SLOT - self._sends.load

    def _pump(self, settings: Settings) -> bool:
        """Route a slice of the intake and write it ahead, then start sending from the backlog;
        False when there was nothing to do."""
        closing = self._closing
        space = PUMP_BATCH if closing else min(PUMP_BATCH, settings.queue_size - len(self._backlog))
        live = self._take_live(max(space, 0))
        overflow = self._take_overflow()
        if overflow:
            counters.record("overflowed", amount=len(overflow))
        if live:
            payloads = self.route_all(live, settings)
            if closing:
                leave_in_spool(payloads, self._spool(settings))
            elif not self._fleet.offer(payloads):  # fleet mode: the Redis stream takes them
                self._write_ahead(payloads, settings)
        if overflow:
            leave_in_spool(self.route_all(overflow, settings), self._spool(settings))
        dispatched = 0 if closing else self._dispatch_backlog(settings)
        fleet = not closing and self._fleet.pump(self._sender, settings, self._spool(settings))  # fleet mode
        self._pacer.poke()
        return bool(live or overflow or dispatched or fleet)

    def route_all(self, messages: list[Mapping[str, Any]], settings: Settings) -> list[Payload]:
        return self.router.route_all(messages, settings)

    def _write_ahead(self, payloads: list[Payload], settings: Settings) -> None:
        """Persist ``payloads`` in one locked spool file (spool on) and queue them for sending."""
        if not payloads:
            return
        spool = self._spool(settings)
        claim = spool.write_claimed(payloads) if spool is not None else None
        if claim is not None:
            counters.record("written_ahead", amount=len(payloads))
        batch = Batch(len(payloads), claim, spool, undeliverable, counts=self._own_failure)
        self._backlog.extend((batch, payload) for payload in payloads)

    def _dispatch_backlog(self, settings: Settings) -> int:
        if self._fleet.holding():  # fleet mode, flags not known: written ahead, it waits there
            return self._hold_backlog(settings)
        if self._sender is not None and self._sender.failing and self._spool(settings) is not None:
            return self._park_backlog()
        room = self._room(settings)
        dispatched = 0
        backlog, submit = self._backlog, self._sends.submit
        while backlog and room > 0:
            batch, payload = backlog.popleft()
            if submit(payload, settings, batch.finish):
                room -= 1
            dispatched += 1
        return dispatched

    def _hold_backlog(self, settings: Settings) -> int:
        """Fleet mode without known flags: leave what waits for a slot in the spool it was written ahead
        to (from there it goes to the stream when Redis answers); with the spool off it waits in memory."""
        if self._spool(settings) is None:
            return 0
        if self._backlog:
            counters.record("held", "fleet_flags", amount=len(self._backlog))
        return self._release_backlog()

    def _park_backlog(self) -> int:
        """Pendo looks down: leave what waits for a slot, or waits to retry, in the spool (it is written
        ahead already) instead of holding it in memory; the spool replay every 30 s probes whether
        Pendo is back."""
        if self._sender is not None:
            for task in set(self._sender.waiting) - self._sends.replays:  # retrying what is on disk already
                task.cancel()  # its payload settles as failed: it stays in the spool
        if self._backlog:
            log_once(
                "parked",
                logging.WARNING,
                "pendo_plugin: Pendo is not answering; new events go to the spool and are retried every %d s",
                SPOOL_RETRY_INTERVAL,
            )
            counters.record("parked", amount=len(self._backlog))
        return self._release_backlog()

    def _release_backlog(self) -> int:
        """Settle what waits for a slot as failed, unsent: it stays in the spool it was written ahead to."""
        released = len(self._backlog)
        while self._backlog:
            batch, payload = self._backlog.popleft()
            batch.finish(payload, "failed")
        return released

    @property
    def _sends(self) -> Dispatcher:
        """The dispatcher (it exists once :meth:`_settings` ran on the loop)."""
        assert self._dispatcher is not None
        return self._dispatcher

    def _ring_drains(self) -> None:
        """A send ended (or fleet mode's queue moved): every flush under way looks again now."""
        for bell in self._drain_bells:
            bell.ring()

    def _task_done(self) -> None:
        self._ring_drains()
        if self._wake is None:
            return
        if self._backlog or (self._intake_since is not None and not self._sends.load):
            self._wake.ring()  # a slot is free, or every send ended: go on now, not at the next poll

    def _in_flight(self) -> int:
        """Requests on the wire now (what the pacer reads): not those waiting at the rate gate for their
        slot, which no answer will end soon (pacing for them would only wake the loop for nothing)."""
        if self._sender is None:
            return 0
        return max(0, self._sender.limiter.in_flight - self._fleet.gate.waiting)

    def _answered(self) -> int:
        """Attempts ended so far (what the pacer reads)."""
        return self._sender.limiter.released if self._sender is not None else 0

    # ----- the spool, drained oldest first -------------------------------------------------

    def _own_failure(self, payload: Payload) -> bool:
        """Whether a failed payload's failure counts towards its dead letter: not while this process stops,
        while Pendo looks down (the breaker, or its last attempt got no answer) or while it is held (the
        rules of fleet mode's ``RedisQueue._its_own_failure``)."""
        if self._shutting_down() or self._fleet.holding():
            return False
        return self._sender is not None and own_failure(self._sender, payload, self._settings())

    def _shutting_down(self) -> bool:
        return self._exiting or self._closing or (self._stopping is not None and self._stopping.is_set())

    def _drain_spool_if_due(self, settings: Settings, *, force: bool = False) -> None:
        if self._shutting_down() or self._fleet.holding():
            return
        self._replay.start_if_due(self._spool(settings), settings, force=force)

    # ----- flush, shutdown, sync mode -------------------------------------------------------

    def _left(self, deadline: float, *, replays: bool) -> str:
        """What is left in memory: ``none``; ``stuck`` when every payload left waits for a retry or a
        Retry-After pause that ends after ``deadline``; else ``busy``. ``replays``: count a replay of
        the spool that is under way too."""
        sends = self._sends
        if self._intake or self._overflow or sends.rows_waiting:
            return "busy"
        fleet = self._fleet.left(deadline)  # fleet mode
        if fleet == "busy" or sends.moving(deadline, replays=replays):
            return "busy"
        if self._backlog or sends.queued(replays=replays):  # it waits for room or a slot: one frees
            # when a send (a replay's too) moves on in time
            return "busy" if sends.moving(deadline) else "stuck"
        return "stuck" if fleet == "stuck" or sends.pending(replays=replays) else "none"

    def _down_and_kept(self, probe_from: int | None) -> bool:
        """Pendo refuses or times out every connection (the sender's breaker) and what is left is kept
        on disk or in Redis: waiting for it would cost flush() and exit their whole budget for nothing.
        ``probe_from``: attempts ended before this flush began, when it probes Pendo itself (a replay
        of the spool): only an attempt of its own, failed too, shows Pendo is still down."""
        sender = self._sender
        if sender is None or not sender.unreachable:
            return False
        if probe_from is not None and sender.limiter.released <= probe_from:
            return False
        return self._spool(self._settings()) is not None or self._fleet.queue is not None

    async def drain(self, timeout: float, *, replay_spool: bool = False, replays: bool = True) -> bool:
        """Deliver what is queued (``replay_spool``: replay the spool too), waiting out every retry and
        Retry-After pause that ends within ``timeout``; True once nothing is left in progress, False
        when the time ran out or the rest cannot be tried again in time."""
        deadline = time.monotonic() + timeout
        self._flushing += 1
        probe_from = self._answered() if replay_spool else None
        bell, poll = tempo.Bell(), DRAIN_POLL
        self._drain_bells.add(bell)
        try:
            if replay_spool:
                self._drain_spool_if_due(self._settings(), force=True)
                self._fleet.kick()  # fleet mode: deliver what waits in the Redis stream too
            while True:
                settings = self._settings()
                self._pump(settings)
                self._sends.send_rows(settings, force=True)
                left = self._left(deadline, replays=replays or replay_spool)
                if left == "busy" and self._down_and_kept(probe_from):
                    # Pendo is down: stop waiting for this process's own sends (they wait in the spool or
                    # the stream); a replay of the spool this flush asked for still ends (one try each)
                    own = self._left(deadline, replays=False)
                    left = "busy" if own == "none" and replay_spool else "stuck"
                if left != "busy":
                    return left == "none"
                if time.monotonic() >= deadline:
                    return False
                await bell.wait(min(poll, max(0.0, deadline - time.monotonic())))
                # waiting, not spinning: a send's end rings the bell, and so does each I/O cycle of fleet
                # mode's shared queue (its outcomes acknowledged in Redis, the stream read again)
                poll = min(poll * 2, DRAIN_POLL_MAX)
        finally:
            self._flushing -= 1
            self._drain_bells.discard(bell)

    async def shutdown(self, timeout: float) -> bool:
        """Deliver what fits in ``timeout`` (retries included), cancel the rest (it stays in the spool,
        or is counted as dropped with the spool off) and stop."""
        assert self._stopping is not None and self._wake is not None and self._stopped is not None
        self._exiting = True
        drained = await self.drain(timeout)
        self._stopping.set()  # cut every retry wait short now
        self._closing = True
        self._pacer.stop()
        settings = self._settings()
        await self._sends.stop(CANCEL_GRACE)
        await self._fleet.stop(CANCEL_GRACE)  # fleet mode
        while self._intake or self._overflow:
            self._pump(settings)  # with _closing set, what is left is written to the spool unsent
        self._release_backlog()
        self._sends.abandon()
        if self._sender is not None and self._transport_source is None:
            with contextlib.suppress(Exception):
                await self._sender.transport.close()
        await self._fleet.close()  # fleet mode
        self._sender = None
        self._stopped.set()
        self._wake.ring()
        return drained

    async def deliver_now(self, message: Mapping[str, Any]) -> None:
        settings = self._settings()
        payloads = self.router.route(message, settings)
        if not payloads:
            return
        spool = self._spool(settings)
        claim = spool.write_claimed(payloads) if spool is not None else None
        done = asyncio.Event()
        batch = Batch(
            len(payloads), claim, spool, undeliverable, on_settled=done.set, counts=self._own_failure
        )
        for payload in payloads:
            self._sends.submit(payload, settings, batch.finish)
        self._sends.send_rows(settings, force=True)
        await done.wait()
