"""The rate gate's slot clock: one timer for every waiting send, slots close together released on one wake."""

from __future__ import annotations

import asyncio
import time

from pendo_plugin.delivery.fleet.slot_clock import SLOT_EARLY, SlotClock, due


def test_a_slot_is_due_up_to_slot_early_before_it_never_after_a_wake_that_comes_sooner() -> None:
    assert due(10.0, 10.0)
    assert due(10.0 + SLOT_EARLY, 10.0)
    assert not due(10.0 + SLOT_EARLY + 0.001, 10.0)


def _released(slots: list[float]) -> tuple[list[float], int]:
    """Wait for ``slots`` (seconds from now) at once: when each was released, and how often the clock rang."""
    rings = 0
    original = SlotClock._ring

    def counted(self: SlotClock) -> None:
        nonlocal rings
        rings += 1
        original(self)

    async def run() -> list[float]:
        clock = SlotClock()
        start = time.monotonic()

        async def one(offset: float) -> float:
            await clock.until(start + offset)
            return time.monotonic() - start

        return list(await asyncio.gather(*(one(offset) for offset in slots)))

    SlotClock._ring = counted  # type: ignore[method-assign]
    try:
        return asyncio.run(run()), rings
    finally:
        SlotClock._ring = original  # type: ignore[method-assign]


def test_slots_close_together_share_one_wake_and_none_goes_before_its_early_bound() -> None:
    slots = [0.06, 0.06 + SLOT_EARLY / 2, 0.06 + SLOT_EARLY, 0.3]
    released, rings = _released(slots)
    assert rings == 2  # the first three on one wake, the last on its own
    for slot, at in zip(slots, released, strict=True):
        assert at >= slot - SLOT_EARLY - 0.002  # never earlier than the bound (2 ms for the clock's reading)
    assert released[0] >= slots[0] - 0.002  # the wake is set for the earliest slot itself


def test_without_the_clock_each_slot_would_wake_the_loop_once() -> None:
    """The same slots spread wider than SLOT_EARLY: one wake each (what grouping saves is real)."""
    slots = [0.05, 0.05 + 2 * SLOT_EARLY, 0.05 + 4 * SLOT_EARLY]
    _, rings = _released(slots)
    assert rings == 3


def test_a_cancelled_wait_leaves_the_others_on_time() -> None:
    async def run() -> tuple[bool, float]:
        clock = SlotClock()
        start = time.monotonic()
        early = asyncio.ensure_future(clock.until(start + 0.05))
        later = asyncio.ensure_future(clock.until(start + 0.15))
        await asyncio.sleep(0.01)
        early.cancel()
        await later
        return early.cancelled(), time.monotonic() - start

    cancelled, waited = asyncio.run(run())
    assert cancelled
    assert waited >= 0.15 - SLOT_EARLY - 0.002
    assert waited < 5.0  # bounded: the timer was re-armed for the remaining slot


def test_a_slot_already_due_returns_without_a_timer() -> None:
    async def run() -> tuple[int, object]:
        clock = SlotClock()
        await clock.until(time.monotonic() + SLOT_EARLY / 2)
        return len(clock), clock._timer

    waiting, timer = asyncio.run(run())
    assert (waiting, timer) == (0, None)  # the send goes on the wake it is already on
