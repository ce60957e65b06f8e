"""Answer coalescing (``destination/tempo.py``): while enough requests are in flight, the worker's loop
pauses between turns so that one turn handles the answers of that moment; otherwise it runs as usual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import destination
from pendo_plugin.destination.loop import new_loop
from pendo_plugin.destination.tempo import (
    PACE_INTERVAL,
    PACE_MIN_IN_FLIGHT,
    PACE_QUIET_TURNS,
    Pacer,
    pacing_due,
)
from pendo_plugin.sandbox import Sandbox

WINDOW = 0.2  # seconds each loop below is watched


@pytest.mark.parametrize(
    ("in_flight", "quiet_turns", "stopping", "due"),
    [
        (0, 0, False, False),
        (PACE_MIN_IN_FLIGHT - 1, 0, False, False),  # a few requests: answers are few, the loop runs as usual
        (PACE_MIN_IN_FLIGHT, 0, False, True),
        (1000, PACE_QUIET_TURNS - 1, False, True),
        (1000, PACE_QUIET_TURNS, False, False),  # no answer lately: wait for one, do not wake for nothing
        (1000, 0, True, False),  # shutdown: as fast as it can
    ],
)
def test_pacing_is_due(in_flight: int, quiet_turns: int, stopping: bool, due: bool) -> None:
    assert pacing_due(in_flight, quiet_turns, stopping) is due


def turns(
    kind: str,
    in_flight: Callable[[float], int],
    stopping: Callable[[float], bool] | None = None,
    *,
    answering: bool = True,
) -> tuple[int, Pacer]:
    """How many turns a real loop of ``kind`` makes in ``WINDOW`` seconds while a Pacer is poked each
    turn; ``in_flight``/``stopping`` get the seconds since the start; ``answering``: an answer ends in
    every turn (else none ever does)."""
    loop = new_loop(kind)
    started = time.monotonic()
    elapsed = lambda: time.monotonic() - started  # noqa: E731
    count = 0
    pacer = Pacer(
        lambda: in_flight(elapsed()),
        lambda: count if answering else 0,
        lambda: stopping is not None and stopping(elapsed()),
    )

    def turn() -> None:
        nonlocal count
        count += 1
        pacer.poke()
        if elapsed() < WINDOW:
            loop.call_soon(turn)
        else:
            pacer.stop()
            loop.stop()

    try:
        loop.call_soon(turn)
        loop.run_forever()
        loop.run_until_complete(asyncio.sleep(0))  # the cancelled pacing ends
    finally:
        loop.close()
    return count, pacer


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_the_loop_pauses_between_turns_while_many_requests_are_in_flight(kind: str) -> None:
    paced, pacer = turns(kind, lambda _: PACE_MIN_IN_FLIGHT)
    assert pacer.pauses > 0
    assert paced <= WINDOW / PACE_INTERVAL + 2, "about one turn per pause"
    free, idle = turns(kind, lambda _: PACE_MIN_IN_FLIGHT - 1)
    assert idle.pauses == 0
    assert free > 10 * paced, "with few requests in flight the loop is not held back"


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_pacing_ends_when_requests_fall_below_the_mark_or_shutdown_begins(kind: str) -> None:
    half = WINDOW / 2
    fewer, pacer = turns(kind, lambda seconds: PACE_MIN_IN_FLIGHT if seconds < half else 1)
    assert 0 < pacer.pauses <= half / PACE_INTERVAL + 2
    assert fewer > 10 * (half / PACE_INTERVAL), "the second half ran unpaced"
    stopped, pacer = turns(kind, lambda _: 1000, stopping=lambda seconds: seconds >= half)
    assert 0 < pacer.pauses <= half / PACE_INTERVAL + 2
    assert stopped > 10 * (half / PACE_INTERVAL), "shutdown runs unpaced"


def pauses_after_one_poke(kind: str, answers_coming: bool) -> int:
    """How many times a Pacer poked once pauses a real loop of ``kind`` that has nothing else to do, in
    ``WINDOW`` seconds, with 1,000 requests in flight and answers coming back at every turn, or none."""
    loop = new_loop(kind)
    pacer = Pacer(lambda: 1000, lambda: pacer.pauses if answers_coming else 0, lambda: False)
    try:
        loop.call_soon(pacer.poke)
        loop.call_later(WINDOW, loop.stop)
        loop.run_forever()
        pacer.stop()
        loop.run_until_complete(asyncio.sleep(0))  # the cancelled pacing ends
    finally:
        loop.close()
    return pacer.pauses


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_pacing_stops_when_no_answer_comes_back(kind: str) -> None:
    """Requests that hang (a slow Pendo, timeouts to come): after a few quiet turns the loop waits for
    an answer as usual instead of waking every pause."""
    assert pauses_after_one_poke(kind, answers_coming=False) == PACE_QUIET_TURNS
    assert pauses_after_one_poke(kind, answers_coming=True) > 3 * PACE_QUIET_TURNS, "paced all along"


def test_the_worker_paces_under_load_and_delivers_everything(plugin: Sandbox, segment_client: Any) -> None:
    for number in range(1500):
        segment_client.track(f"pace-{number % 50}", "Paced", {"n": number})
    segment_client.flush()

    assert destination._runtime._worker._pacer.pauses > 0
    assert sorted(event["properties"]["n"] for event in plugin.track_events()) == list(range(1500))
    assert pendo_plugin.stats().get("sent:track") == 1500
