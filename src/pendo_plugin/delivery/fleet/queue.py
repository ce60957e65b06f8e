"""The fleet's durable queue: a Redis Stream read through one consumer group by every process.

The worker offers each routed slice here instead of writing it to the local spool. One I/O
cycle at a time runs on the worker's loop and, in order: settles what was sent (``XACK`` +
``XDEL``; a payload that failed is appended anew and acknowledged in one ``MULTI``, so any
process retries it), appends the offered payloads (one round trip, ``MAXLEN`` capped, trims counted
as ``dropped:redis_full``), moves the local spool into the stream after an outage, takes over
entries a silent process held longer than ``PENDO_REDIS_CLAIM_AFTER`` (``XAUTOCLAIM``, while
refreshing the idle time of its own entries still being sent) and reads new entries
(``XREADGROUP``) to send. What is read is sent through a :class:`~pendo_plugin.delivery.dispatch.Dispatcher`,
the one send path (its checks, metadata merged per kind newest-wins), each entry settled by its outcome:
an entry leaves the stream only after Pendo's 2xx or a final refusal; one that failed is appended anew
with its count of failures (past ``DEAD_AFTER`` it goes to the dead stream instead); one this process may
not send (``held:<reason>:<kind>``) is left pending, parked, for a process that may send it to take over
(or for this one, after its settings change). Neither pauses the reader.

When Redis does not answer, what was offered goes back to the worker's local path (spool and
direct sending), so nothing waits on Redis. Entries read back are untrusted: size, JSON and
shape are checked, and a bad one is counted (``dropped:redis_corrupt``) and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.dispatch import Dispatcher, Held
from pendo_plugin.delivery.fleet import legacy
from pendo_plugin.delivery.fleet.appends import Appender
from pendo_plugin.delivery.fleet.entries import (
    GROUP,
    MAX_ENTRY_BYTES,
    STREAM,
    consumer_name,
    decode,
    encode,
    failures_of,
)
from pendo_plugin.delivery.fleet.link import RedisLink, redis_errors
from pendo_plugin.delivery.fleet.outcomes import Outcomes
from pendo_plugin.delivery.fleet.pacing import read_idle
from pendo_plugin.delivery.fleet.reads import BoundedReads, Entry
from pendo_plugin.delivery.fleet.scripts import run_scripts
from pendo_plugin.delivery.fleet.upkeep import (
    count_trimmed,
    create_group,
    group_lost,
    move_from_spool,
    repair_ids,
)
from pendo_plugin.delivery.holds import hold_reason
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.payload import Payload

MAX_IN_FLIGHT = 1024  # entries this process holds while sending
MAX_IN_FLIGHT_BYTES = 32 << 20  # and their size: a read asks for no more than could fit (1 MB an entry)
READ_COUNT = 200
MAX_PARKED_KNOWN = 10_000  # parked entry ids kept to tell flush() they wait (a bound on memory)
APPEND_BATCH = 1000
MAX_BUFFER = 10_000  # offered payloads waiting for the next append; past it the local path takes them
PAUSE_AFTER_FAILURE = 5.0  # Pendo looks down (the sender's breaker): read nothing new for this long
MOVE_RETRY = 2.0

Fallback = Callable[[list[Payload], Settings], None]


class RedisQueue:
    """This process's side of the shared stream; touched only from the worker's loop."""

    def __init__(
        self, link: RedisLink, fallback: Fallback, on_progress: Callable[[], None] | None = None
    ) -> None:
        self.link = link
        # a cycle ended (outcomes acknowledged, the stream read) or a send of an entry settled: a flush looks
        self._on_progress = on_progress
        self.consumer = consumer_name()
        self._reads = BoundedReads(self.consumer)
        self._appender = Appender()
        self._fallback = fallback
        self._buffer: list[Payload] = []
        self._held: dict[bytes, tuple[bytes, int]] = {}  # entry id -> (its payload, failures), while sent
        self._held_bytes = 0
        self._parked: set[bytes] = set()  # entries left pending here that the flags hold (not no_secret)
        self._outcomes = Outcomes()
        self._sent = 0  # outcomes since the last read (this process's pace of sending)
        self._read_at: float | None = None  # when the stream was last read
        self._sends: Dispatcher | None = None  # sends what was read (made on the loop, with the first sender)
        self._cycle: asyncio.Task[Any] | None = None
        self._group_ready = False
        self._caught_up = False
        self._taking = False
        self._next_read = 0.0
        self._paused_until = 0.0
        self._reread: str | None = None  # read this consumer's own pending entries again from this id
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._next_move: float | None = 0.0  # when to move the local spool into the stream (None: no need)
        self._outages_seen = 0
        self._last_length = 0  # the stream's length at the last append seen (what a restart would lose)

    # ----- the worker's side -------------------------------------------------------------------

    def offer(self, payloads: list[Payload]) -> bool:
        """Take ``payloads`` for the stream; False if Redis is down or the buffer is full."""
        if not self.link.available() or len(self._buffer) + len(payloads) > MAX_BUFFER:
            counters.record("redis", "fallback", amount=len(payloads))
            return False
        self._buffer.extend(payloads)
        return True

    def hand_back(self, settings: Settings) -> None:
        """Give what waits to be appended to the worker's local path (counted as ``redis:fallback``)."""
        if self._buffer:
            leftover, self._buffer = self._buffer, []
            counters.record("redis", "fallback", amount=len(leftover))
            self._fallback(leftover, settings)

    def kick(self) -> None:
        """``flush()``: read the stream now and look for entries to take over."""
        self._caught_up = False
        self._next_read = self._next_claim = self._paused_until = 0.0
        self._reread = "0"
        self.link.retry_now()

    def recheck(self, held: Held) -> None:
        """Hold what is being sent from the stream that ``held`` names a reason for (it is appended anew)."""
        if self._sends is not None:
            self._sends.recheck(held)
        self._reread = "0"  # what was parked may be sendable now

    def pump(self, sender: Sender, settings: Settings, spool: Spool | None, *, holding: bool = False) -> bool:
        """Start the next I/O cycle if one is due; True if it started one with work to do (``holding``:
        the fleet's flags are not known, read nothing to send)."""
        if self._sends is None:
            self._sends = Dispatcher(sender)
            self._sends.on_done = self._on_progress  # rung once the entry's outcome is recorded
        self._sends.sender = sender
        if self._cycle is not None:
            return False
        if self._buffer and not self.link.available():
            self.hand_back(settings)  # Redis stopped answering meanwhile: never hold payloads in memory
        if sender.failing:
            self._hold_off(self._sends)
        now = time.monotonic()
        sending = settings.active and not settings.shadow and not holding  # leave entries waiting
        reading = sending and now >= self._paused_until and now >= self._next_read and self._room() > 0
        claiming = now >= self._next_claim
        self._taking = sending  # take over others' entries only when this process may send now
        work = bool(self._buffer) or self._outcomes.due(now, settings)
        if not (work or reading or claiming) or not self.link.available():
            return False
        self._cycle = asyncio.ensure_future(self._run_cycle(self._sends, settings, spool, reading, claiming))
        self._cycle.add_done_callback(self._cycle_done)
        return work or (reading and not self._caught_up)

    def left(self, deadline: float) -> str:
        """What of this process's is left before ``deadline``, as the worker's flush sees it: ``none`` (the
        offered payloads are in the stream, outcomes are settled, nothing read is being sent, and the
        stream was read to its end since), ``busy`` (something moves on before ``deadline``: a send, a
        retry or Retry-After pause that ends in time, a cycle, the stream still to read) or ``stuck`` (it
        waits in the stream or in a retry past ``deadline``, or Redis does not answer, or this process
        may not send now, or it parked entries the flags hold: they wait for a change of its settings; an
        entry only a process with another secret can send is left to it, not waited for)."""
        available = self.link.available()
        if not self._held:  # a flush waits for the outcomes only: settle them without delay
            self._outcomes.asked = bool(self._outcomes)
        if self._buffer or self._cycle is not None or self._outcomes:
            return "busy" if available else "stuck"
        sends = self._sends
        if sends is not None and sends.moving(deadline):
            return "busy"
        if sends is not None and sends.pending():
            return "stuck"
        if self._caught_up:
            return "stuck" if self._parked else "none"
        if not available or not self._taking:
            return "stuck"
        now = time.monotonic()
        if self._paused_until > now:
            return "stuck" if self._paused_until >= deadline else "busy"
        return "busy"

    async def stop(self, grace: float) -> None:
        """Shutdown: stop sending (what was not delivered is requeued), then settle and append once
        more; what cannot reach Redis goes to the local path."""
        self._paused_until = float("inf")
        if self._sends is not None:
            await self._sends.stop(grace)  # every entry being sent settles as failed: requeued
        if self._cycle is not None:
            await asyncio.wait([self._cycle], timeout=grace)
        if self.link.available():
            with contextlib.suppress(*redis_errors()):
                await asyncio.wait_for(self._settle_and_append(None), grace)
        self.hand_back(_settings_now())

    # ----- one I/O cycle --------------------------------------------------------------------------

    def _cycle_done(self, task: asyncio.Task[Any]) -> None:
        self._cycle = None
        if self._on_progress is not None:
            self._on_progress()
        if not task.cancelled() and task.exception() is not None:
            log_once("redis-cycle", logging.ERROR, "pendo_plugin: fleet queue error: %r", task.exception())

    async def _run_cycle(
        self, sends: Dispatcher, settings: Settings, spool: Spool | None, reading: bool, claiming: bool
    ) -> None:
        try:
            client = await self.link.client()
            if not self._group_ready:
                await legacy.take_over(client)
                await self._create_group(client)
            await self._settle_and_append(settings, settle_now=not reading)
            due = self._next_move is not None and time.monotonic() >= self._next_move
            if due and spool is not None and not self.link.replicas_short:  # too few replicas: it stays local
                await self._move_from_spool(client, spool)
            if claiming:
                await self._claim(client, sends, settings)
            if reading:
                await self._read(client, sends, settings)
        except redis_errors() as exc:
            if "last possible ID" in str(exc) and await repair_ids(client):
                return  # what waits to be appended goes at the next cycle
            if "NOGROUP" in str(exc):  # answered, without the group: Redis lost the stream (a restart)
                self._group_ready = False
                group_lost(self._last_length)
                self._last_length = 0
                return
            self.link.failed(exc)
            self.hand_back(settings)
            return
        self.link.answered()
        if self.link.outages != self._outages_seen:  # the local spool may hold what came meanwhile
            self._outages_seen = self.link.outages
            self._next_move = 0.0

    async def _create_group(self, client: Any) -> None:
        await create_group(client)
        self._group_ready = True

    async def _settle_and_append(self, settings: Settings | None, *, settle_now: bool = True) -> None:
        """Settle the outcomes waiting (unless ``settle_now`` is False: they go with this cycle's read),
        then append what was offered."""
        client = await self.link.client()
        settle = self._outcomes.call(client) if settle_now else None
        if settle is not None:
            self._settled((await run_scripts(client, [settle[0]]))[0], *settle[1:])
        while self._buffer:
            batch = self._buffer[:APPEND_BATCH]
            settings = settings or _settings_now()
            if not await self.link.replicas_back(settings.redis_replicas):  # too few replicas: keep it local
                del self._buffer[: len(batch)]
                counters.record("redis", "not_replicated", amount=len(batch))
                self._fallback(batch, settings)
                continue
            cap = settings.redis_max_len
            lines = [encode(payload) for payload in batch]
            length, ids, confirmed = await self._appender.append(
                client, self.link, lines, cap, settings.redis_replicas
            )
            del self._buffer[: len(batch)]
            if not confirmed:
                await self._take_back(client, batch, ids, settings)
            else:
                counters.record("redis", "appended", amount=len(batch))
            self._caught_up = False
            self._last_length = int(length) + len(batch) if isinstance(length, int) else 0
            count_trimmed(length, len(batch), cap)

    def _settled(self, dead: Any, acks: int, requeue: int) -> None:
        self._outcomes.settled(dead, acks, requeue)
        if requeue:
            self._caught_up = False  # appended anew: the stream is not read to its end

    async def _take_back(self, client: Any, batch: list[Payload], ids: list[Any], settings: Settings) -> None:
        """Too few replicas confirmed ``batch``'s append: keep it in the local spool (this process sends it
        from there), then delete its entries from the stream before this process reads it again; another
        process may have read them during ``WAIT`` (docs/fleet.md, durable writes)."""
        counters.record("redis", "not_replicated", amount=len(batch))
        self._fallback(batch, settings)  # written ahead to the spool before the stream loses them
        counters.record("redis", "round_trips")
        await client.xdel(STREAM, *ids)

    async def _move_from_spool(self, client: Any, spool: Spool) -> None:
        """Put what the local spool holds (left while Redis was down) into the stream."""
        self._next_move = None
        moved = await move_from_spool(client, spool)
        if moved:
            self._caught_up = False
        if spool.has_files():  # more than one cycle's share, or files a sender still holds
            self._next_move = time.monotonic() + (0.0 if moved else MOVE_RETRY)

    async def _claim(self, client: Any, sends: Dispatcher, settings: Settings) -> None:
        """Take over entries idle longer than PENDO_REDIS_CLAIM_AFTER; keep our own from looking idle."""
        claim_after_ms = int(settings.redis_claim_after * 1000)
        self._next_claim = time.monotonic() + min(max(settings.redis_claim_after / 2, 0.5), 30.0)
        if self._held:
            counters.record("redis", "round_trips")
            await client.xclaim(STREAM, GROUP, self.consumer, 0, list(self._held), justid=True)
        room = self._room() if self._taking else 0
        if room <= 0:
            return
        self._claim_cursor, entries = await self._reads.claim(
            client, claim_after_ms, self._claim_cursor, min(room, READ_COUNT)
        )
        if entries:
            counters.record("redis", "claimed", amount=len(entries))
            self._dispatch(entries, sends, settings)

    async def _read(self, client: Any, sends: Dispatcher, settings: Settings) -> None:
        """Read new entries, settling what waits in the same round trip; after a change of settings or a
        flush, first this consumer's own pending ones (those it parked: it could not send them then)."""
        if self._reread is not None and self._room() > 0:
            if self._reread == "0":
                self._parked.clear()  # parked again below if still held; gone if another process took them
            cursor, own = await self._settle_and_read(client, self._reread, min(self._room(), READ_COUNT))
            self._reread = None if cursor == "0-0" else cursor  # more than one read's worth: go on next cycle
            self._dispatch(own, sends, settings)
        cursor, entries = await self._settle_and_read(client, ">", min(self._room(), READ_COUNT))
        self._caught_up = cursor == "0-0" and not entries and self._reread is None
        now = time.monotonic()
        since = now - self._read_at if self._read_at is not None else 0.0
        pace = self._sent / since if since > 0 else None
        self._sent, self._read_at = 0, now
        idle = read_idle(len(self._held), settings.rate_limit, pace) if self._caught_up else 0.0
        self._next_read = now + idle
        self._dispatch(entries, sends, settings)

    async def _settle_and_read(self, client: Any, start: str, count: int) -> tuple[str, list[Entry]]:
        """One round trip: the outcomes waiting settled, then a read from ``start``. If either fails, the
        entries read stay pending here: this consumer reads its own pending entries again first."""
        settle = self._outcomes.call(client)
        calls = [settle[0]] if settle is not None else []
        try:
            answers = await run_scripts(client, [*calls, self._reads.read(client, start, count)])
        except BaseException:
            self._reread = "0"
            raise
        if settle is not None:
            self._settled(answers[0], *settle[1:])
        return self._reads.answer(answers[-1])

    # ----- sending what was read ------------------------------------------------------------------

    def _room(self) -> int:
        """How many more entries to read: bounded in count and, assuming each may be of the largest size
        accepted, in bytes."""
        by_size = (MAX_IN_FLIGHT_BYTES - self._held_bytes) // MAX_ENTRY_BYTES
        return min(MAX_IN_FLIGHT - len(self._held), by_size)

    def _dispatch(self, entries: Any, sends: Dispatcher, settings: Settings) -> None:
        """Submit each entry read (or taken over) to ``sends``, settled by :meth:`_settle`; metadata rows
        are merged per kind and sent at once."""
        for entry in entries if isinstance(entries, list) else []:
            entry_id, fields = entry if isinstance(entry, (list, tuple)) and len(entry) == 2 else (None, {})
            if not isinstance(entry_id, bytes) or entry_id in self._held:
                continue
            if fields is None:  # pending, but gone from the stream (trimmed: counted then)
                self._outcomes.ack(entry_id)
                continue
            payload = decode(fields)
            if payload is None:
                counters.record("dropped", "redis_corrupt")
                log_once("redis-corrupt", logging.ERROR, "pendo_plugin: skipped a malformed entry in Redis")
                self._outcomes.ack(entry_id)
                continue
            reason = hold_reason(payload, settings)
            if reason is not None:  # parked: left pending, taken over by a process that may send it
                counters.record("held", reason, payload.kind)
                if reason != "no_secret" and len(self._parked) < MAX_PARKED_KNOWN:
                    self._parked.add(entry_id)  # held by the flags: no process may send it now
                continue
            self._parked.discard(entry_id)
            self._held[entry_id] = (fields[b"p"], failures_of(fields))  # decode() checked the bytes
            self._held_bytes += len(fields[b"p"])
            sends.submit(payload, settings, partial(self._settle, entry_id))
        sends.send_rows(settings, force=True)

    def _settle(self, entry_id: bytes, payload: Payload, outcome: Outcome) -> None:
        """One entry's outcome: sent or refused for good, acknowledged; failed (or held since it was read),
        appended anew for any process to retry, its failures counted: past :data:`DEAD_AFTER` it goes to
        the dead stream instead. A failure does not pause the reader: other entries go on."""
        held = self._held.pop(entry_id, None)
        self._sent += 1
        if outcome != "failed":
            self._outcomes.ack(entry_id)
        if held is None:
            return
        raw, failures = held
        self._held_bytes -= len(raw)
        if outcome == "failed":
            counted = failures + 1 if self._its_own_failure(payload) else failures
            self._outcomes.retry(entry_id, raw, counted)

    def _its_own_failure(self, payload: Payload) -> bool:
        """Whether a failed entry counts towards the dead stream: not when it was held, when this process
        is stopping, or while Pendo looks down (the breaker, or the last attempt got no answer: an outage is
        not the entry's)."""
        sends = self._sends
        down = sends is not None and (sends.sender.failing or sends.sender.unanswered > 0)
        if self._paused_until == float("inf") or down:
            return False
        return hold_reason(payload, _settings_now()) is None

    def _hold_off(self, sends: Dispatcher) -> None:
        """Pendo looks down: stop reading for a while and give back what waits to be retried."""
        self._paused_until = max(self._paused_until, time.monotonic() + PAUSE_AFTER_FAILURE)
        for task in sends.tasks & sends.sender.waiting.keys():
            task.cancel()


def _settings_now() -> Settings:
    from pendo_plugin import config

    return config.current()
