"""Sending payloads to Pendo: one request per track event or webhook message, batches for metadata.

Track events and webhook messages are :class:`~pendo_plugin.pendo.payload.Payload` objects, their
body already encoded; metadata goes as merged rows (:data:`~pendo_plugin.delivery.rows.Row`).
Each send returns an :data:`Outcome`: ``sent``, ``rejected`` (Pendo refused it for good; counted and
dropped) or ``failed`` (retries ran out, shutdown came, or Pendo refused the key with 401/403, which a
corrected key fixes: the caller spools it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from pendo_plugin import counters, jsoncodec
from pendo_plugin.config import Settings
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import Request, Response, Transport, starter
from pendo_plugin.delivery.limiter import AdaptiveLimiter
from pendo_plugin.delivery.retry import (
    PermanentError,
    RetryableError,
    RetryPolicy,
    ShutdownInterrupted,
)
from pendo_plugin.delivery.rows import Row
from pendo_plugin.delivery.schema import SchemaCache
from pendo_plugin.logs import log, log_once
from pendo_plugin.pendo.coerce import coerce_metadata
from pendo_plugin.pendo.payload import Payload

Outcome = Literal["sent", "rejected", "failed"]
Done = Callable[[Outcome], None]
Spawn = Callable[[Coroutine[Any, Any, Outcome], Done], object]
Prepared = list[dict[str, Any]]  # metadata rows as Pendo takes them

JSON_HEADERS = {"Content-Type": "application/json"}
BREAKER_THRESHOLD = 32
AUTH_STATUSES = frozenset({401, 403})  # a wrong or revoked key: keep the payloads for a fixed config


class _Endpoints:
    """What every request of one :class:`Settings` shares, built once per settings object rather than
    per event: the retry policy, and the URL and headers of the track and webhook endpoints."""

    __slots__ = ("policy", "settings", "split", "track", "webhook")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = RetryPolicy(max_retries=settings.max_retries, budget=settings.retry_budget)
        self.split = RetryPolicy(max_retries=min(1, settings.max_retries), budget=settings.retry_budget)
        track_headers = {**JSON_HEADERS, "x-pendo-integration-key": settings.track_secret or ""}
        self.track = (f"{settings.data_url}/data/track", track_headers)
        self.webhook = (f"{settings.webhook_url}/data/segmentio/{settings.api_key}", JSON_HEADERS)


class Sender:
    """Sends payloads over one transport, adapting concurrency and retrying per the settings."""

    @classmethod
    def for_settings(cls, settings: Settings, stopping: asyncio.Event) -> Sender:
        """The configured transport (or a keep-alive pool) with adaptive concurrency up to
        ``max_concurrency``; create it on the loop that will use it."""
        transport: Transport = settings.transport or HttpTransport(pool_size=settings.max_concurrency)
        return cls(transport, AdaptiveLimiter(settings.max_concurrency), stopping)

    def __init__(self, transport: Transport, limiter: AdaptiveLimiter, stopping: asyncio.Event) -> None:
        self.transport = transport
        self.limiter = limiter
        self.stopping = stopping
        self.schemas = SchemaCache()
        self.waiting: dict[asyncio.Task[Any], float] = {}  # tasks waiting out a retry: when they wake
        self.acquiring: set[asyncio.Task[Any]] = set()  # tasks waiting for a slot (or a Retry-After pause)
        self.on_drop: Callable[[Exception, list[Any]], None] = lambda exc, items: None
        self.consecutive_failures = 0  # retryable failures since the last answer Pendo gave
        self._endpoints: _Endpoints | None = None  # for the settings of the last event sent

    @property
    def transport(self) -> Transport:
        """What sends the requests; its owner may wrap it (fleet mode's rate gate)."""
        return self._transport

    @transport.setter
    def transport(self, transport: Transport) -> None:
        self._transport = transport
        self._start = starter(transport)

    @property
    def failing(self) -> bool:
        """Whether Pendo looks down: many network errors, timeouts or 5xx without a Retry-After in a
        row, no answer between."""
        return self.consecutive_failures >= BREAKER_THRESHOLD

    def blocked_until(self, task: asyncio.Task[Any]) -> float | None:
        """When ``task`` can next make progress (monotonic time) if it is waiting out a retry backoff or
        a Retry-After pause; None if it is sending or waiting only for a free slot."""
        wake = self.waiting.get(task)
        if wake is not None:
            return wake
        if task in self.acquiring and self.limiter.paused:
            return self.limiter.paused_until
        return None

    async def _sleep(self, seconds: float) -> None:
        """A retry wait that shutdown cuts short; the waiting task is in ``waiting`` meanwhile."""
        task = asyncio.current_task()
        if task is not None:
            self.waiting[task] = time.monotonic() + seconds
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return
        finally:
            if task is not None:
                self.waiting.pop(task, None)
        raise ShutdownInterrupted()

    async def _acquire(self) -> None:
        """A slot from the limiter (tasks waiting for one are in ``acquiring``)."""
        task = asyncio.current_task()
        if task is None:
            await self.limiter.acquire()
            return
        self.acquiring.add(task)
        try:
            await self.limiter.acquire()
        finally:
            self.acquiring.discard(task)

    async def _attempt(self, request: Request, policy: RetryPolicy) -> bytes:
        """One attempt of a retry or a metadata batch, with a slot from the limiter."""
        if not self.limiter.try_acquire():
            await self._acquire()
        started = time.monotonic()
        try:
            response = await self.transport.send(request)
        except BaseException as exc:
            return self._judged(started, None, exc, policy)
        return self._judged(started, response, None, policy)

    def _judged(
        self, started: float, response: Response | None, error: BaseException | None, policy: RetryPolicy
    ) -> bytes:
        """Free the attempt's slot, telling the limiter how it went, and return the answer's body, or
        raise what the attempt comes to: :class:`RetryableError` (network errors and timeouts too) or
        :class:`PermanentError`. The one judge of every attempt, first or retry."""
        congested = True
        try:
            if error is not None:
                raise error
            assert response is not None
            status = response.status
            congested = status == 429 or status >= 500 or status == 408
            if not 200 <= status < 300:  # a 2xx needs no classification (the common case)
                policy.check(response)
            self.consecutive_failures = 0
            return response.body
        except RetryableError as exc:
            if exc.retry_after is not None:
                self.limiter.pause(exc.retry_after)  # an answer saying when to come back: not an outage
            elif exc.status != 429:  # rate limiting is an answer too
                self.consecutive_failures += 1
            raise
        except PermanentError:
            congested = False
            self.consecutive_failures = 0
            raise
        except Exception as exc:  # network errors and timeouts
            self.consecutive_failures += 1
            raise RetryableError(f"network:{type(exc).__name__}") from exc
        finally:
            self.limiter.release(time.monotonic() - started, congested)

    async def _with_retries(
        self,
        request: Request,
        settings: Settings,
        retry: bool = True,
        failed: RetryableError | None = None,
        policy: RetryPolicy | None = None,
    ) -> bytes:
        """The answer's body, after retries if need be (``failed``: how the first attempt, already made,
        failed; ``policy``: other than the settings' own)."""
        policy = policy or self._for(settings).policy
        if failed is None:
            try:
                return await self._attempt(request, policy)  # the common case, without a retry controller
            except RetryableError as error:
                failed = error
        if not retry or settings.max_retries == 0:
            raise failed
        await self._sleep(policy.delay(1, failed))
        async for attempt in policy.retrying(self._sleep, attempts_done=1):
            with attempt:
                counters.record("retried")
                return await self._attempt(request, policy)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retried(
        self, request: Request, settings: Settings, item: Payload, retry: bool, failed: RetryableError
    ) -> Outcome:
        """The outcome of ``item`` once its first attempt ``failed``: retried per the settings."""
        try:
            await self._with_retries(request, settings, retry, failed)
        except PermanentError as exc:
            return self._refused(exc, item)
        except ShutdownInterrupted:
            return "failed"
        except RetryableError as exc:
            self._exhausted(item.kind, 1, exc)
            return "failed"
        counters.record("sent", kind=item.kind)
        return "sent"

    def _refused(self, exc: PermanentError, item: Payload) -> Outcome:
        """Pendo refused ``item`` for good (dropped and counted), or refused the key (kept: failed)."""
        what = item.kind
        if exc.status in AUTH_STATUSES:
            self._auth_failed(exc, what, 1)
            return "failed"
        counters.record("dropped", f"http_{exc.status}", what)
        log_once(
            f"permanent:{what}:{exc.status}",
            logging.ERROR,
            "pendo_plugin: Pendo refused %s with HTTP %d (%s); dropped and counted as dropped:http_%d:%s",
            what,
            exc.status,
            exc.detail,
            exc.status,
            what,
        )
        self.on_drop(exc, [item])
        return "rejected"

    @staticmethod
    def _auth_failed(exc: PermanentError, what: str, count: int) -> None:
        counters.record("auth_failed", f"http_{exc.status}", what, count)
        log_once(
            f"auth:{what}:{exc.status}",
            logging.ERROR,
            "pendo_plugin: Pendo refused the key for %s with HTTP %d (%s); check PENDO_TRACK_SECRET / "
            "PENDO_INTEGRATION_KEY. The payloads are kept in the spool (if on) for a corrected key",
            what,
            exc.status,
            exc.detail,
        )

    @staticmethod
    def _exhausted(what: str, count: int, exc: RetryableError) -> None:
        counters.record("retries_exhausted", kind=what, amount=count)
        log_once(
            f"exhausted:{what}:{exc.reason}",
            logging.WARNING,
            "pendo_plugin: giving up on %s payloads for now after retries (%s); kept in the spool if on",
            what,
            exc.reason,
        )

    def launch(
        self, item: Payload, settings: Settings, retry: bool, done: Done, spawn: Spawn
    ) -> asyncio.Future[Response]:
        """Start the first attempt of one track event or webhook message, its limiter slot already
        taken (:meth:`AdaptiveLimiter.when_free`); ``done`` gets the outcome. The common case, a 2xx,
        runs as callbacks: no task, no coroutine. A failed first attempt is retried per the settings
        (``retry=False``: not at all) in a task made by ``spawn``, which calls ``done`` when it ends.
        Returns the attempt's future: cancelling it settles the event as failed."""
        endpoints = self._for(settings)
        url, headers = endpoints.webhook if item.kind == "webhook" else endpoints.track
        request = Request("POST", url, item.data, headers, settings.request_timeout)
        started = time.monotonic()
        try:
            attempt = self._start(request)
        except Exception as exc:  # a URL or header the transport will not send: judged like any failure
            attempt = asyncio.get_running_loop().create_future()
            attempt.set_exception(exc)

        def landed(attempt: asyncio.Future[Response]) -> None:
            if attempt.cancelled():
                self.limiter.release(time.monotonic() - started, True)
                done("failed")
                return
            error = attempt.exception()
            try:
                self._judged(started, None if error else attempt.result(), error, endpoints.policy)
            except PermanentError as exc:
                done(self._refused(exc, item))
                return
            except RetryableError as exc:
                spawn(self._retried(request, settings, item, retry, exc), done)
                return
            counters.record("sent", kind=item.kind)
            done("sent")

        attempt.add_done_callback(landed)
        return attempt

    def _for(self, settings: Settings) -> _Endpoints:
        endpoints = self._endpoints
        if endpoints is None or endpoints.settings is not settings:
            endpoints = self._endpoints = _Endpoints(settings)
        return endpoints

    async def send_metadata(self, kind: str, rows: list[Row], settings: Settings) -> set[str]:
        """Deliver rows of one kind (visitor/account) as batches; a batch refused with 400, or failing
        twice, is split to isolate bad rows. Returns the ids of the rows that must be kept for later (the
        others were sent, or refused for good: counted as dropped)."""
        failed: set[str] = set()
        if not rows:
            return failed
        schema = await self.schemas.fields(self.transport, settings, kind)
        prepared = [row for row in (self._prepare(kind, item, schema) for item in rows) if row is not None]
        for i in range(0, len(prepared), settings.metadata_batch_size):
            await self._post_rows(kind, prepared[i : i + settings.metadata_batch_size], settings, failed)
        return failed

    def _prepare(self, kind: str, item: Row, schema: dict[str, str] | None) -> dict[str, Any] | None:
        row_id, raw_values = item
        values, fixes, unknown = coerce_metadata(raw_values, schema)
        for fix in fixes:
            counters.record("fixed", fix, kind)
        for name in unknown:
            counters.record("dropped_field", "unknown", kind)
            log_once(
                f"unknown-field:{kind}:{name}",
                logging.WARNING,
                "pendo_plugin: %s field %r does not exist in Pendo; add it under Settings > Data Mappings "
                "to receive it (not sent until then)",
                kind,
                name,
            )
        if not values:
            counters.record("skipped", "no_known_fields", kind)
            return None
        return {f"{kind}Id": row_id, "values": values}

    async def _post_rows(self, kind: str, rows: Prepared, settings: Settings, failed: set[str]) -> None:
        """One batch; the ids of rows to keep for later are added to ``failed``."""
        request = Request(
            "POST",
            f"{settings.api_url}/api/v1/metadata/{kind}/custom/value?create=true",
            jsoncodec.dumps(rows),
            {**JSON_HEADERS, "x-pendo-integration-key": settings.integration_key or ""},
            settings.request_timeout,
        )
        split = len(rows) > 1
        try:
            body = await self._post(request, settings, split)
        except PermanentError as exc:
            if exc.status in AUTH_STATUSES:
                self._auth_failed(exc, kind, len(rows))
                failed.update(str(row[f"{kind}Id"]) for row in rows)
                return
            if exc.status == 400 and split:
                return await self._halves(kind, rows, settings, failed)
            counters.record("dropped", f"http_{exc.status}", kind, len(rows))
            log.error(
                "pendo_plugin: Pendo refused %d %s row(s) (%s ids %s) with HTTP %d: %s",
                len(rows),
                kind,
                kind,
                ", ".join(str(row.get(f"{kind}Id")) for row in rows[:3]),
                exc.status,
                exc.detail,
            )
            self.on_drop(exc, rows)
            return
        except ShutdownInterrupted:
            failed.update(str(row[f"{kind}Id"]) for row in rows)
            return
        except RetryableError as exc:
            if split and exc.status != 429 and exc.retry_after is None:  # failed twice: isolate the bad row
                return await self._halves(kind, rows, settings, failed)
            self._exhausted(kind, len(rows), exc)
            failed.update(str(row[f"{kind}Id"]) for row in rows)
            return
        self._count_result(kind, rows, body)

    async def _post(self, request: Request, settings: Settings, split: bool) -> bytes:
        """One metadata batch's answer; a batch of several rows is tried twice before it is split, unless
        Pendo asks it to wait (429, Retry-After: not a bad row), then it retries per the settings."""
        if not split:
            return await self._with_retries(request, settings)
        try:
            return await self._with_retries(request, settings, policy=self._for(settings).split)
        except RetryableError as exc:
            if exc.status != 429 and exc.retry_after is None:
                raise
            return await self._with_retries(request, settings, failed=exc)

    async def _halves(self, kind: str, rows: Prepared, settings: Settings, failed: set[str]) -> None:
        """A batch that failed twice (or was refused with 400) sent as two halves, down to one row, so a
        bad row holds back no other."""
        middle = len(rows) // 2
        await self._post_rows(kind, rows[:middle], settings, failed)
        await self._post_rows(kind, rows[middle:], settings, failed)

    @staticmethod
    def _count_result(kind: str, rows: list[dict[str, Any]], body: bytes) -> None:
        try:
            result = json.loads(body) if body else {}
        except ValueError:
            result = {}
        if not isinstance(result, dict):
            result = {}
        failed = int(result.get("failed") or 0)
        updated = result.get("updated")
        counters.record("sent", None, kind, int(updated) if isinstance(updated, int) else len(rows) - failed)
        if failed:
            counters.record("failed", kind=kind, amount=failed)
            missing = result.get("missing") or []
            errors = result.get("errors") or []
            log_once(
                f"metadata-failed:{kind}",
                logging.WARNING,
                "pendo_plugin: Pendo did not update %d %s row(s): missing %s; errors %s (see stats())",
                failed,
                kind,
                missing[:5],
                errors[:5],
            )
