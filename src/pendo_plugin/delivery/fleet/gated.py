"""The transport that waits at the rate gate (:mod:`~pendo_plugin.delivery.fleet.rate`) before each
request to Pendo and reports 429s (and a 503's Retry-After) to it, so every process pauses.

Without a budget it costs a send nothing it can avoid: with neither a budget nor Redis the request starts
at once; in fleet mode without a budget too, while the fleet's pause was read a moment ago and does not
hold (no task, no coroutine: its answer is looked at by a callback as it comes). Otherwise a task waits for
the send's slot first.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.delivery.fleet.rate import MAX_PAUSE, RateGate, endpoint_of
from pendo_plugin.delivery.http import Request, Response, Transport, starter
from pendo_plugin.delivery.retry import parse_retry_after

PAUSE_WITHOUT_RETRY_AFTER = 1.0


class GatedTransport:
    """A transport that waits for the rate gate before each request and reports 429s to it."""

    def __init__(
        self, inner: Transport, gate: RateGate, settings_link: Any, *, backfill: bool = False
    ) -> None:
        self.inner = inner
        self.backfill = backfill  # a replay's or a spool drain's: live traffic goes first
        self._start_inner = starter(inner)
        self.gate = gate
        self._settings_link = settings_link  # () -> (rate, link): read per request, so configure() applies
        self._pausing: set[asyncio.Task[None]] = set()

    def start(self, request: Request) -> asyncio.Future[Response]:
        """``request`` begun: without a budget and without Redis the gate does nothing, and the inner
        transport starts it (without a task where it can); without a budget and with the fleet's pause
        read a moment ago and not holding, the same (its answer is looked at as it comes); else a task
        waits for the gate first."""
        rate, link = self._settings_link()
        if not rate and link is None:
            return self._start_inner(request)
        if not rate and not self.backfill:
            endpoint = endpoint_of(request.url)
            if self.gate.open_now(endpoint):
                answer = self._start_inner(request)
                answer.add_done_callback(partial(self._answered, endpoint, link))
                return answer
        return asyncio.ensure_future(self._gated(request, rate, link))

    def _answered(self, endpoint: str, link: RedisLink | None, answer: asyncio.Future[Response]) -> None:
        """A request sent at once ended: what :meth:`_gated` does after its send, without a task unless a
        429 (or a 503 with Retry-After) pauses the fleet."""
        if not answer.cancelled() and answer.exception() is None:
            seconds = self._pause_for(answer.result())
            if seconds:
                self.gate.hold(endpoint, seconds)  # now: a send started before a task runs waits too
                pausing = asyncio.ensure_future(self.gate.publish_pause(endpoint, seconds, link))
                self._pausing.add(pausing)  # kept until done (the loop holds tasks weakly)
                pausing.add_done_callback(self._pausing.discard)

    @staticmethod
    def _pause_for(response: Response) -> float | None:
        """How long ``response`` pauses its endpoint: a 429's or a 503's Retry-After (1 s for a 429
        without one), else None."""
        if response.status not in (429, 503):
            return None
        seconds = parse_retry_after(response.headers.get("Retry-After"), maximum=MAX_PAUSE)
        if seconds is None and response.status == 429:
            seconds = PAUSE_WITHOUT_RETRY_AFTER
        return seconds

    async def send(self, request: Request) -> Response:
        return await self.start(request)

    async def _gated(self, request: Request, rate: float | None, link: RedisLink | None) -> Response:
        """``request`` sent once the gate lets it; a 429 (or a 503 with Retry-After) pauses the gate."""
        endpoint = endpoint_of(request.url)
        self.gate.waiting += 1
        try:
            while True:
                wait = await self.gate.delay(endpoint, rate, link, backfill=self.backfill)
                if wait > 0:
                    counters.record("rate", "waited")
                    await self.gate.clock.until(time.monotonic() + wait)
                if not self.gate.paused(endpoint):
                    break  # else a 429 came while it waited: a new slot, after the pause
        finally:
            self.gate.waiting -= 1
        response = await self.inner.send(request)
        seconds = self._pause_for(response)
        if seconds:
            await self.gate.pause(endpoint, seconds, link)
        return response

    async def close(self) -> None:
        await self.inner.close()
