"""When the worker routes and writes ahead what waits in the intake (``write_ahead_due``): at once when
nothing is in flight or a flush or shutdown hurries it; else once enough wait, or the first waited long
enough, so that events arriving while sends are under way share a spool file."""

from __future__ import annotations

import pytest

from pendo_plugin.destination.tempo import WRITE_AHEAD_BATCH, WRITE_AHEAD_WAIT, write_ahead_due


@pytest.mark.parametrize(
    ("waiting", "waited", "sends_under_way", "hurried", "due"),
    [
        (1, 0.0, False, False, True),  # nothing in flight: no reason to wait
        (1, 0.0, True, False, False),  # sends under way: a lone event waits for company
        (WRITE_AHEAD_BATCH - 1, WRITE_AHEAD_WAIT / 2, True, False, False),
        (WRITE_AHEAD_BATCH, 0.0, True, False, True),  # a full slice goes at once
        (1, WRITE_AHEAD_WAIT, True, False, True),  # the first waited long enough
        (1, 0.0, True, True, True),  # flush() or shutdown: at once
    ],
)
def test_write_ahead_is_due(
    waiting: int, waited: float, sends_under_way: bool, hurried: bool, due: bool
) -> None:
    assert write_ahead_due(waiting, waited, sends_under_way, hurried) is due

