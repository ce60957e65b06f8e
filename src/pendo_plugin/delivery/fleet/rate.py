"""The rate budget per Pendo endpoint (``PENDO_RATE_LIMIT``) and the pause after a 429.

The budget is a GCRA (generic cell rate algorithm) in reservation form: each request reserves
the next free send time and waits until then, so one call decides, with no retry loop. With
Redis the reservation is one Lua script, atomic on the server and timed by the server's clock,
so every process on that Redis shares one budget; without Redis (or while it does not answer)
the same arithmetic runs in this process. A 429 (or a Retry-After on a 503) sets a pause key that
every process's next reservation honours, with or without a budget. With neither a budget nor
Redis the gate does nothing (the sender's limiter still holds this process for a Retry-After).

Endpoints are named by what they are (``track``, ``webhook``, ``metadata:visitor``, ...), never by
their URL, so no key carries a secret.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.link import KEY_PREFIX, RedisLink, redis_errors
from pendo_plugin.delivery.http import Request, Response, Transport, starter
from pendo_plugin.delivery.retry import parse_retry_after

BURST_SHARE = 0.1  # a burst of a tenth of a second's budget may go at once
MAX_DELAY = 60.0  # a reservation read back from Redis is trusted up to this far ahead
MAX_PAUSE = 300.0
PAUSE_WITHOUT_RETRY_AFTER = 1.0
PAUSE_CHECK_INTERVAL = 0.25  # without a budget, look for a fleet pause in Redis this often per endpoint

RESERVE_SCRIPT = """
-- KEYS[1]: the endpoint's theoretical arrival time, KEYS[2]: its pause end (both server microseconds)
-- ARGV[1]: emission interval in microseconds (0: no budget, only the pause), ARGV[2]: burst tolerance
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0') or 0)
local interval = tonumber(ARGV[1])
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  at = math.max(at, tat - tonumber(ARGV[2]))
  local next_tat = math.max(tat, at) + interval
  redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
end
return string.format('%.0f', at - now)
"""

PAUSE_SCRIPT = """
-- KEYS[1]: the endpoint's pause end (server microseconds); ARGV[1]: the pause in microseconds
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_end = now + tonumber(ARGV[1])
if pause_end > (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) then
  local ttl = math.ceil(tonumber(ARGV[1]) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', pause_end), 'PX', ttl)
end
return 1
"""


def endpoint_of(url: str) -> str:
    """A fixed, secret-free name for the Pendo endpoint ``url`` calls."""
    path = urlsplit(url).path
    if path.endswith("/data/track"):
        return "track"
    if "/data/segmentio/" in path:
        return "webhook"
    for kind in ("visitor", "account"):
        if f"/metadata/{kind}/" in path:
            return f"metadata:{kind}"
    if "/metadata/schema/" in path:
        return "schema"
    return "other"


def reserve(
    now: float, tat: float, pause_end: float, interval: float, tolerance: float
) -> tuple[float, float]:
    """GCRA reservation: ``(send_at, next_tat)`` for one request (the Lua script does the same)."""
    at = max(now, pause_end)
    if interval <= 0:
        return at, tat
    at = max(at, tat - tolerance)
    return at, max(tat, at) + interval


def budget(rate: float | None) -> tuple[float, float]:
    """``(interval, tolerance)`` in seconds for ``rate`` requests per second (``(0, 0)``: no budget)."""
    if not rate:
        return 0.0, 0.0
    interval = 1.0 / rate
    return interval, interval * max(0.0, rate * BURST_SHARE - 1)


class RateGate:
    """Reserves a send time per endpoint, through Redis when it answers, else in this process."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._pause_end: dict[str, float] = {}
        self._pause_checked: dict[str, float] = {}
        self._scripts: tuple[Any, Any, Any] | None = None  # (client, reserve, pause)

    async def _registered(self, link: RedisLink) -> tuple[Any, Any]:
        client = await link.client()
        if self._scripts is None or self._scripts[0] is not client:
            self._scripts = (
                client,
                client.register_script(RESERVE_SCRIPT),
                client.register_script(PAUSE_SCRIPT),
            )
        return self._scripts[1], self._scripts[2]

    async def delay(self, endpoint: str, rate: float | None, link: RedisLink | None) -> float:
        """Seconds to wait before sending to ``endpoint`` (a slot is reserved for the caller)."""
        interval, tolerance = budget(rate)
        now = time.monotonic()
        if interval <= 0 and now < self._pause_checked.get(endpoint, 0.0) + PAUSE_CHECK_INTERVAL:
            link = None  # no budget to share: the pause read a moment ago still holds
        if link is not None and link.available():
            try:
                script, _ = await self._registered(link)
                answer = await script(
                    keys=[f"{KEY_PREFIX}rate:{endpoint}", f"{KEY_PREFIX}pause:{endpoint}"],
                    args=[round(interval * 1e6), round(tolerance * 1e6)],
                )
                link.answered()
                counters.record("redis", "round_trips")
                delay = min(max(float(answer) / 1e6, 0.0), MAX_DELAY)
                if interval <= 0:
                    self._pause_checked[endpoint] = now
                    self._pause_end[endpoint] = max(self._pause_end.get(endpoint, 0.0), now + delay)
                return delay
            except redis_errors() as exc:
                link.failed(exc)
            now = time.monotonic()  # the failed attempt took time
        if interval <= 0 and not self._pause_end:
            return 0.0
        at, self._tat[endpoint] = reserve(
            now, self._tat.get(endpoint, 0.0), self._pause_end.get(endpoint, 0.0), interval, tolerance
        )
        return at - now

    async def pause(self, endpoint: str, seconds: float, link: RedisLink | None) -> None:
        """Hold ``endpoint`` for ``seconds`` here and (through Redis) in every process."""
        seconds = min(max(seconds, 0.0), MAX_PAUSE)
        self._pause_end[endpoint] = max(self._pause_end.get(endpoint, 0.0), time.monotonic() + seconds)
        counters.record("rate", "paused")
        if link is not None and link.available():
            try:
                _, script = await self._registered(link)
                await script(keys=[f"{KEY_PREFIX}pause:{endpoint}"], args=[round(seconds * 1e6)])
                counters.record("redis", "round_trips")
                link.answered()
            except redis_errors() as exc:
                link.failed(exc)


class GatedTransport:
    """A transport that waits for the rate gate before each request and reports 429s to it."""

    def __init__(self, inner: Transport, gate: RateGate, settings_link: Any) -> None:
        self.inner = inner
        self._start_inner = starter(inner)
        self.gate = gate
        self._settings_link = settings_link  # () -> (rate, link): read per request, so configure() applies

    def start(self, request: Request) -> asyncio.Future[Response]:
        """``request`` begun: without a budget and without Redis the gate does nothing, and the inner
        transport starts it (without a task where it can); else a task waits for the gate first."""
        rate, link = self._settings_link()
        if not rate and link is None:
            return self._start_inner(request)
        return asyncio.ensure_future(self._gated(request, rate, link))

    async def send(self, request: Request) -> Response:
        return await self.start(request)

    async def _gated(self, request: Request, rate: float | None, link: RedisLink | None) -> Response:
        """``request`` sent once the gate lets it; a 429 (or a 503 with Retry-After) pauses the gate."""
        endpoint = endpoint_of(request.url)
        wait = await self.gate.delay(endpoint, rate, link)
        if wait > 0:
            counters.record("rate", "waited")
            await asyncio.sleep(wait)
        response = await self.inner.send(request)
        if response.status in (429, 503):
            seconds = parse_retry_after(response.headers.get("Retry-After"), maximum=MAX_PAUSE)
            if seconds is None and response.status == 429:
                seconds = PAUSE_WITHOUT_RETRY_AFTER
            if seconds:
                await self.gate.pause(endpoint, seconds, link)
        return response

    async def close(self) -> None:
        await self.inner.close()
