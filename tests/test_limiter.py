"""The adaptive limiter on a real event loop: a maximum lowered at run time bounds requests at once."""

from __future__ import annotations

import asyncio

from pendo_plugin.delivery.limiter import AdaptiveLimiter


def test_a_lowered_maximum_bounds_the_requests_in_flight_at_once() -> None:
    async def run() -> tuple[int, bool]:
        limiter = AdaptiveLimiter(256)  # starts at 4 in flight
        limiter.maximum = 1  # configure(max_concurrency=1) after the worker created its limiter
        await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)  # let the second acquire run up to its wait
        waiting = not second.done()
        limiter.release(0.01, congested=False)
        await asyncio.wait_for(second, 1.0)
        return limiter.in_flight, waiting

    in_flight, waiting = asyncio.run(run())
    assert waiting, "a second request got a slot although the maximum is 1"
    assert in_flight == 1


def test_try_acquire_takes_a_free_slot_only_while_nobody_waits_and_no_pause_holds() -> None:
    async def run() -> None:
        limiter = AdaptiveLimiter(2, initial=2)
        assert limiter.try_acquire() and limiter.try_acquire()
        assert not limiter.try_acquire(), "both slots are taken"
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)  # the waiter queues
        limiter.in_flight -= 1  # a slot frees without a release (no hand-over)
        assert not limiter.try_acquire(), "a waiter is first in line"
        limiter.release(0.01, congested=False)  # hands a slot to the waiter
        await asyncio.wait_for(waiter, 1.0)
        assert limiter.in_flight == 1, "the freed slot plus the released one, one handed over"
        limiter.release(0.01, congested=False)
        limiter.pause(60)
        assert limiter.in_flight == 0 and not limiter.try_acquire(), "a Retry-After pause holds"

    asyncio.run(run())
