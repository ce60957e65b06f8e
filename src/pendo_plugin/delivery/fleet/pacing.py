"""How often the fleet's queue looks at the stream and acknowledges, sized to the rate budget: pure
functions of what is held and the budget (no I/O), used by :mod:`pendo_plugin.delivery.fleet.queue`."""

from __future__ import annotations

READ_IDLE = 0.2  # after the stream was found empty, look again this often,
READ_IDLE_BUSY = 1.0  # or, with a budget, up to this late while the entries held last that long at its rate
SETTLE_BATCH = 100  # acknowledge in batches: this many outcomes, or the oldest waited SETTLE_DELAY
SETTLE_DELAY = 0.05
SETTLE_DELAY_BUSY = 0.5  # with a budget: up to this long, the time SETTLE_BATCH outcomes take at its rate


def read_idle(held: int, rate: float | None) -> float:
    """How long to wait before looking at the stream again after it was found empty, holding ``held``
    entries: with a budget of ``rate`` requests/s they take at least ``held / rate`` s to send (the
    whole fleet's budget), so looking sooner only costs round trips; bounded by :data:`READ_IDLE_BUSY`."""
    if not rate:
        return READ_IDLE
    return max(READ_IDLE, min(READ_IDLE_BUSY, held / rate))


def settle_delay(rate: float | None) -> float:
    """How long the oldest outcome may wait to be acknowledged: :data:`SETTLE_DELAY`, or with a budget the
    time :data:`SETTLE_BATCH` outcomes take at its rate, up to :data:`SETTLE_DELAY_BUSY`."""
    return min(SETTLE_DELAY_BUSY, max(SETTLE_DELAY, SETTLE_BATCH / rate)) if rate else SETTLE_DELAY
