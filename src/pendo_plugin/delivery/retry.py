"""When to retry a request and how long to wait: tenacity's exponential backoff with jitter,
overridden by the server's ``Retry-After`` (seconds or an HTTP date), clamped.

The backoff is computed here (``initial * 2**(n-1)`` plus up to ``jitter``, capped at
``maximum``) rather than with tenacity's ``wait_exponential_jitter``, whose parameters changed
name across the tenacity versions this package supports."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from pendo_plugin import shown
from pendo_plugin.delivery.http import Response

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class RetryableError(Exception):
    """A failure worth another attempt: network error, timeout, 408, 429 or 5xx."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class PermanentError(Exception):
    """A failure that another attempt would repeat (a 4xx other than 408/425/429); ``detail``: a cleaned
    excerpt of the answer (:func:`pendo_plugin.shown.excerpt`), fit for a log line."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.detail = detail


class ShutdownInterrupted(Exception):
    """A retry wait was cut short because the plugin is shutting down."""


def parse_retry_after(value: str | None, *, now: float | None = None, maximum: float = 300.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or HTTP date), clamped to ``[0, maximum]``."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), maximum)


@dataclass(frozen=True)
class RetryPolicy:
    """Immutable retry settings, and the one owner of the retry rules: which answers are retried, the
    cap on a server's Retry-After, the backoff with jitter, when to stop (attempts, time budget), and
    the excerpt of a refusal's answer (configured ``secrets`` masked, control characters escaped)."""

    max_retries: int = 8
    budget: float = 300.0
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 300.0
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Masked wherever an answer echoes them (a proxy or server that repeats the request's headers)."""

    def check(self, response: Response) -> None:
        """Return if ``response`` is a success; raise :class:`RetryableError` (408, 425, 429, 5xx; with
        its Retry-After, capped at ``max_retry_after``) or :class:`PermanentError`."""
        status = response.status
        if 200 <= status < 300:
            return
        if status in RETRYABLE_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), maximum=self.max_retry_after)
            raise RetryableError(f"http_{status}", retry_after, status)
        raise PermanentError(status, shown.excerpt(response.body, self.secrets))

    def delay(self, attempts: int, error: BaseException | None) -> float:
        """Seconds to wait after ``attempts`` failed attempts: Retry-After when the server sent one,
        else ``initial * 2**(attempts-1)`` plus up to ``jitter``, capped at ``maximum``."""
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return error.retry_after
        try:
            backoff = self.initial * 2 ** (attempts - 1)
        except OverflowError:
            backoff = self.maximum
        return min(backoff + random.uniform(0, self.jitter), self.maximum)

    def retrying(self, sleep: Callable[[float], Awaitable[Any]], attempts_done: int = 0) -> AsyncRetrying:
        """A tenacity controller for the attempts left after ``attempts_done`` failed ones;
        ``sleep`` may raise :class:`ShutdownInterrupted`."""

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            return self.delay(state.attempt_number + attempts_done, error)

        attempts_left = max(1, self.max_retries + 1 - attempts_done)
        return AsyncRetrying(
            stop=stop_after_attempt(attempts_left) | stop_after_delay(self.budget),
            wait=wait,
            retry=retry_if_exception_type(RetryableError),
            sleep=sleep,
            reraise=True,
        )
