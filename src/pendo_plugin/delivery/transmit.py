"""Sending requests to Pendo: one request per track event or webhook message, with adaptive
concurrency, retries per the settings, and the breakers that tell when Pendo looks down.

Track events and webhook messages are :class:`~pendo_plugin.pendo.payload.Payload` objects, their
body already encoded. Each send returns an :data:`Outcome`: ``sent``, ``rejected`` (Pendo refused it
for good; counted and dropped) or ``failed`` (retries ran out, shutdown came, or Pendo refused the key
with 401/403, which a corrected key fixes: the caller spools it). Metadata batches are sent by
:class:`~pendo_plugin.delivery.senders.Sender`, built on :class:`Transmitter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.http import Request, Response, Transport, starter
from pendo_plugin.delivery.limiter import AdaptiveLimiter
from pendo_plugin.delivery.retry import (
    PermanentError,
    RetryableError,
    RetryPolicy,
    ShutdownInterrupted,
)
from pendo_plugin.delivery.schema import SchemaCache
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.payload import Payload

Outcome = Literal["sent", "rejected", "failed"]
Done = Callable[[Outcome], None]
Spawn = Callable[[Coroutine[Any, Any, Outcome], Done], object]
Prepared = list[dict[str, Any]]  # metadata rows as Pendo takes them

JSON_HEADERS = {"Content-Type": "application/json"}
BREAKER_THRESHOLD = 32
UNREACHABLE_THRESHOLD = 3  # connections refused or timed out this many times in a row: Pendo is down
AUTH_STATUSES = frozenset({401, 403})  # a wrong or revoked key: keep the payloads for a fixed config


class _Endpoints:
    """What every request of one :class:`Settings` shares, built once per settings object rather than
    per event: the retry policy, and the URL and headers of the track and webhook endpoints."""

    __slots__ = ("policy", "settings", "split", "track", "webhook")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secrets = settings.secrets
        self.policy = RetryPolicy(settings.max_retries, settings.retry_budget, secrets=secrets)
        self.split = RetryPolicy(min(1, settings.max_retries), settings.retry_budget, secrets=secrets)
        track_headers = {**JSON_HEADERS, "x-pendo-integration-key": settings.track_secret or ""}
        self.track = (f"{settings.data_url}/data/track", track_headers)
        self.webhook = (f"{settings.webhook_url}/data/segmentio/{settings.api_key}", JSON_HEADERS)


class Transmitter:
    """Sends payloads over one transport, adapting concurrency and retrying per the settings."""

    def __init__(self, transport: Transport, limiter: AdaptiveLimiter, stopping: asyncio.Event) -> None:
        self.transport = transport
        self.limiter = limiter
        self.stopping = stopping
        self.schemas = SchemaCache()
        self.waiting: dict[asyncio.Task[Any], float] = {}  # tasks waiting out a retry: when they wake
        self.acquiring: set[asyncio.Task[Any]] = set()  # tasks waiting for a slot (or a Retry-After pause)
        self.on_drop: Callable[[Exception, list[Any]], None] = lambda exc, items: None
        self.consecutive_failures = 0  # retryable failures since the last answer Pendo gave
        self.unanswered = 0  # attempts in a row that got no HTTP answer at all (refused, timed out)
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

    @property
    def unreachable(self) -> bool:
        """Pendo is down: refused or timed-out connections in a row (a 503 or 429 is an answer)."""
        return self.unanswered >= UNREACHABLE_THRESHOLD

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
            self.unanswered = 0
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
            self.unanswered += 1
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
            family=f"permanent:{what}",  # the status is the answer's to choose: bounded keys
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
            "PENDO_INTEGRATION_KEY. The payloads are kept in the spool (if on) for a corrected key "
            "(auth_failed:http_%d:%s)",
            what,
            exc.status,
            exc.detail,
            exc.status,
            what,
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
            family=f"exhausted:{what}",  # http_<status>: the answer's to choose
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
