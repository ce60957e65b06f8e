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
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.link import KEY_PREFIX, RedisLink, redis_errors
from pendo_plugin.delivery.fleet.slot_clock import SLOT_EARLY, SlotClock

BURST_SHARE = 0.1  # a burst of a tenth of a second's budget may go at once
MAX_DELAY = 60.0  # a reservation read back from Redis is trusted up to this far ahead
MAX_PAUSE = 300.0
PAUSE_CHECK_INTERVAL = 0.25  # without a budget, look for a fleet pause in Redis this often per endpoint
BACKFILL_SLACK = 0.05  # a backfill (replay, spool drain) takes a slot only if it is free within this
BACKFILL_LOOK_AGAIN = 0.5  # longest wait before a backfill asks for a slot again
RESERVE_WINDOW_MAX = 16  # at most this many send slots reserved by one script call
SLOT_LATE = 0.02  # a held slot is taken at most this late (seconds); later it expires unused

STORED_TIME = """
-- A time stored under a key, read back: a key of another type, a value that is no number, or one further
-- ahead of now than it can honestly be (written by hand, or by a server whose clock ran ahead) is none.
local function stored(key, ahead)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'string' and kind ~= 'none' then redis.call('DEL', key) end
  local value = tonumber(redis.call('GET', key) or '0') or 0
  if value ~= value or value > now + ahead then return 0 end
  return value
end"""

RESERVE_SCRIPT = """
-- KEYS[1]: the endpoint's theoretical arrival time, KEYS[2]: its pause end (both server microseconds)
-- ARGV[1]: emission interval in microseconds (0: no budget, only the pause), ARGV[2]: burst tolerance,
-- ARGV[3]: a backfill's bound (-1 for live traffic): a backfill reserves only a slot that is free within
-- it, so live traffic goes first; else nothing is reserved and the answer is negative (look again then);
-- ARGV[4]: how many consecutive slots to reserve (one call for several sends). Returns each slot's delay.
-- ARGV[5], ARGV[6]: how far ahead the arrival time and the pause end can honestly be (microseconds).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- STORED_TIME
local pause_end = stored(KEYS[2], tonumber(ARGV[6] or '0') or 0)
local interval = tonumber(ARGV[1])
local count = math.max(1, math.min(tonumber(ARGV[4] or '1') or 1, 64))
if interval <= 0 then
  return {string.format('%.0f', math.max(now, pause_end) - now)}
end
local tat = stored(KEYS[1], (tonumber(ARGV[5] or '0') or 0) + tonumber(ARGV[2]) + count * interval)
local bound = tonumber(ARGV[3] or '-1')
local delays = {}
for i = 1, count do
  local at = math.max(now, pause_end, tat - tonumber(ARGV[2]))
  if bound >= 0 and at - now > bound then
    if i == 1 then return {string.format('%.0f', -(at - now))} end
    break
  end
  tat = math.max(tat, at) + interval
  delays[i] = string.format('%.0f', at - now)
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return delays
""".replace("-- STORED_TIME", STORED_TIME)

PAUSE_SCRIPT = """
-- KEYS[1]: the endpoint's pause end (server microseconds); ARGV[1]: the pause in microseconds,
-- ARGV[2]: the longest pause (how far ahead a pause end can honestly be)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- STORED_TIME
local pause_end = now + tonumber(ARGV[1])
if pause_end > stored(KEYS[1], tonumber(ARGV[2])) then
  local ttl = math.ceil(tonumber(ARGV[1]) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', pause_end), 'PX', ttl)
end
return 1
""".replace("-- STORED_TIME", STORED_TIME)


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
    now: float, tat: float, pause_end: float, interval: float, tolerance: float, bound: float = -1.0
) -> tuple[float, float]:
    """GCRA reservation: ``(send_at, next_tat)`` for one request (the Lua script does the same); with a
    ``bound`` (a backfill), a slot later than ``now + bound`` is not taken: ``(-(its delay), tat)``."""
    at = max(now, pause_end)
    if interval <= 0:
        return at, tat
    at = max(at, tat - tolerance)
    if 0 <= bound < at - now:
        return now - (at - now), tat
    return at, max(tat, at) + interval


def budget(rate: float | None) -> tuple[float, float]:
    """``(interval, tolerance)`` in seconds for ``rate`` requests per second (``(0, 0)``: no budget)."""
    if not rate:
        return 0.0, 0.0
    interval = 1.0 / rate
    return interval, interval * max(0.0, rate * BURST_SHARE - 1)


class RateGate:
    """Reserves a send time per endpoint, through Redis when it answers, else in this process.

    With Redis and a budget, one script call reserves a window of consecutive slots for this process's
    sends (:data:`RESERVE_WINDOW_MAX` at most); the next sends take them without a round trip. Sends
    that arrive while a call is under way wait for it, and the next call reserves for all of them. A
    slot not taken within :data:`SLOT_LATE` of its time expires unused: budget left idle, never
    exceeded. The window doubles while every slot is used and halves when one expires, so a slow
    trickle reserves one slot a send and a steady load a few per round trip.
    """

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._pause_end: dict[str, float] = {}
        self._pause_checked: dict[str, float] = {}
        self._scripts: tuple[Any, Any, Any] | None = None  # (client, reserve, pause)
        self._held: dict[str, deque[float]] = {}  # slots reserved through Redis, not yet taken (monotonic)
        self._window: dict[str, int] = {}
        self._reserving: dict[str, asyncio.Future[None]] = {}  # the script call under way per endpoint
        self._queued: dict[str, int] = {}  # sends waiting for that call
        self.waiting = 0  # sends waiting at the gate now (for their slot or its reservation)
        self.clock = SlotClock()  # wakes them at their slots, those close together at once

    async def _registered(self, link: RedisLink) -> tuple[Any, Any]:
        client = await link.client()
        if self._scripts is None or self._scripts[0] is not client:
            self._scripts = (
                client,
                client.register_script(RESERVE_SCRIPT),
                client.register_script(PAUSE_SCRIPT),
            )
        return self._scripts[1], self._scripts[2]

    async def delay(
        self, endpoint: str, rate: float | None, link: RedisLink | None, *, backfill: bool = False
    ) -> float:
        """Seconds to wait before sending to ``endpoint`` (a slot is reserved for the caller). A
        ``backfill`` (replay, spool drain) takes only a slot that live traffic left free: it waits, without
        a reservation, until one is."""
        interval, _ = budget(rate)
        while True:
            if backfill or link is None:
                wait = await self._reserve(endpoint, rate, link, BACKFILL_SLACK if backfill else -1.0)
            elif interval <= 0:
                wait = await self._paused(endpoint, link)
            else:
                wait = await self._live(endpoint, rate, link)
            if wait >= 0:
                return wait
            await asyncio.sleep(min(-wait, BACKFILL_LOOK_AGAIN))

    def _take_held(self, endpoint: str, now: float) -> float | None:
        """The earliest slot held for ``endpoint`` still usable at ``now`` (expired ones are dropped)."""
        held = self._held.get(endpoint)
        if not held:
            return None
        window = self._window.get(endpoint, 1)
        if held[0] < now - SLOT_LATE:
            while held and held[0] < now - SLOT_LATE:
                held.popleft()
            window = max(1, window // 2)
        if not held:
            self._window[endpoint] = window
            return None
        slot = held.popleft()
        if not held:  # every slot of the window was used: reserve more at once next time
            window = min(RESERVE_WINDOW_MAX, window * 2)
        self._window[endpoint] = window
        return max(slot, self._pause_end.get(endpoint, 0.0))

    async def _paused(self, endpoint: str, link: RedisLink) -> float:
        """Live traffic's delay without a budget: the fleet's pause of ``endpoint``, read from Redis at most
        every :data:`PAUSE_CHECK_INTERVAL` by one script call that the sends coming meanwhile share."""
        now = time.monotonic()
        under_way = self._reserving.get(endpoint)
        if under_way is not None:
            await asyncio.shield(under_way)
        if under_way is not None or now < self._pause_checked.get(endpoint, 0.0) + PAUSE_CHECK_INTERVAL:
            return max(0.0, self._pause_end.get(endpoint, 0.0) - time.monotonic())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reserving[endpoint] = done
        try:
            return await self._reserve(endpoint, None, link, -1.0)
        finally:
            del self._reserving[endpoint]
            done.set_result(None)

    async def _live(self, endpoint: str, rate: float | None, link: RedisLink) -> float:
        """Live traffic's delay with a budget: a held slot, or one reserved by a (shared) script call."""
        while True:
            now = time.monotonic()
            slot = self._take_held(endpoint, now)
            if slot is not None:
                return slot - now
            under_way = self._reserving.get(endpoint)
            if under_way is None:
                break
            self._queued[endpoint] = self._queued.get(endpoint, 0) + 1
            try:
                await asyncio.shield(under_way)
            finally:
                self._queued[endpoint] -= 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reserving[endpoint] = done
        try:
            count = max(self._window.get(endpoint, 1), 1 + self._queued.get(endpoint, 0))
            return await self._reserve(endpoint, rate, link, -1.0, min(count, RESERVE_WINDOW_MAX))
        finally:
            del self._reserving[endpoint]
            done.set_result(None)

    async def _reserve(
        self, endpoint: str, rate: float | None, link: RedisLink | None, bound: float, count: int = 1
    ) -> float:
        interval, tolerance = budget(rate)
        now = time.monotonic()
        if interval <= 0 and now < self._pause_checked.get(endpoint, 0.0) + PAUSE_CHECK_INTERVAL:
            link = None  # no budget to share: the pause read a moment ago still holds
        if link is not None and link.available():
            try:
                script, _ = await self._registered(link)
                answer = await script(
                    keys=[f"{KEY_PREFIX}rate:{endpoint}", f"{KEY_PREFIX}pause:{endpoint}"],
                    args=[
                        *(round(seconds * 1e6) for seconds in (interval, tolerance, bound)),
                        count,
                        *(round(seconds * 1e6) for seconds in (MAX_DELAY, MAX_PAUSE)),
                    ],
                )
                link.answered()
                counters.record("redis", "round_trips")
                delays = _delays_of(answer, count)
                now = time.monotonic()
                if interval <= 0:
                    self._pause_checked[endpoint] = now
                    self._pause_end[endpoint] = max(self._pause_end.get(endpoint, 0.0), now + delays[0])
                elif len(delays) > 1:
                    self._held[endpoint] = deque(now + later for later in delays[1:])
                elif bound < 0:  # the one slot reserved is used at once: reserve more next time
                    self._window[endpoint] = min(RESERVE_WINDOW_MAX, self._window.get(endpoint, 1) * 2)
                return delays[0]
            except redis_errors() as exc:
                link.failed(exc)
            now = time.monotonic()  # the failed attempt took time
        if interval <= 0 and not self._pause_end:
            return 0.0
        at, self._tat[endpoint] = reserve(
            now, self._tat.get(endpoint, 0.0), self._pause_end.get(endpoint, 0.0), interval, tolerance, bound
        )
        return at - now

    def open_now(self, endpoint: str) -> bool:
        """Without a budget: whether a send to ``endpoint`` may go at once, with no look at Redis due (the
        fleet's pause was read less than :data:`PAUSE_CHECK_INTERVAL` ago, no look is under way, and no
        pause holds it)."""
        now = time.monotonic()
        return (
            endpoint not in self._reserving
            and now < self._pause_checked.get(endpoint, 0.0) + PAUSE_CHECK_INTERVAL
            and self._pause_end.get(endpoint, 0.0) <= now
        )

    def paused(self, endpoint: str) -> bool:
        """Whether a pause seen by this process (a 429 here, or read from Redis) holds ``endpoint`` now
        (ending within :data:`SLOT_EARLY`, as a slot then, it does not)."""
        return self._pause_end.get(endpoint, 0.0) > time.monotonic() + SLOT_EARLY

    async def pause(self, endpoint: str, seconds: float, link: RedisLink | None) -> None:
        """Hold ``endpoint`` for ``seconds`` here and (through Redis) in every process."""
        self.hold(endpoint, seconds)
        await self.publish_pause(endpoint, seconds, link)

    def hold(self, endpoint: str, seconds: float) -> None:
        """Hold ``endpoint`` for ``seconds`` in this process, at once (no send starts meanwhile)."""
        seconds = min(max(seconds, 0.0), MAX_PAUSE)
        self._pause_end[endpoint] = max(self._pause_end.get(endpoint, 0.0), time.monotonic() + seconds)
        self._held.pop(endpoint, None)  # slots reserved before the 429: every process starts afresh
        counters.record("rate", "paused")

    async def publish_pause(self, endpoint: str, seconds: float, link: RedisLink | None) -> None:
        """Hold ``endpoint`` for ``seconds`` in every process, through Redis."""
        seconds = min(max(seconds, 0.0), MAX_PAUSE)
        if link is not None and link.available():
            try:
                _, script = await self._registered(link)
                pause_key = f"{KEY_PREFIX}pause:{endpoint}"
                await script(keys=[pause_key], args=[round(seconds * 1e6), round(MAX_PAUSE * 1e6)])
                counters.record("redis", "round_trips")
                link.answered()
            except redis_errors() as exc:
                link.failed(exc)


def _delays_of(answer: Any, count: int) -> list[float]:
    """The reserved slots' delays in seconds, read back from the script (untrusted: bounded, checked;
    anything else counts as one slot at once, the first send's own)."""
    values = answer if isinstance(answer, list) and answer else [answer]
    delays = []
    for value in values[:count]:
        try:
            delays.append(min(max(float(value) / 1e6, -MAX_DELAY), MAX_DELAY))
        except (TypeError, ValueError):
            break
    return delays or [0.0]
