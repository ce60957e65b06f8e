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
