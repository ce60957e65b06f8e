"""How often the fleet's queue looks at the stream and acknowledges, sized to the rate budget: pure
functions of what is held and the budget (no I/O), used by :mod:`pendo_plugin.delivery.fleet.queue`."""

from __future__ import annotations

READ_IDLE = 0.2  # after the stream was found empty, look again this often,
READ_IDLE_BUSY = 2.0  # or, with a budget, up to this late while the entries held last that long
SETTLE_BATCH = 100  # acknowledge in batches: this many outcomes, or the oldest waited SETTLE_DELAY
SETTLE_DELAY = 0.05
SETTLE_DELAY_BUSY = 2.5  # with a budget: this long, past READ_IDLE_BUSY (the next read settles what waits)
SETTLE_CLAIM_SHARE = 0.25  # and no longer than this share of PENDO_REDIS_CLAIM_AFTER


def read_idle(held: int, rate: float | None, pace: float | None = None) -> float:
    """How long to wait before looking at the stream again after it was found empty, holding ``held``
    entries: with a budget of ``rate`` requests/s they take ``held / rate`` s to send at least (the
    whole fleet's budget), or ``held / pace`` at this process's own pace since its last read (its share
    of the budget), so looking sooner only costs round trips; bounded by :data:`READ_IDLE_BUSY`."""
    if not rate:
        return READ_IDLE
    speed = rate if pace is None else min(rate, max(pace, 1e-3))
    return max(READ_IDLE, min(READ_IDLE_BUSY, held / speed))


def settle_delay(rate: float | None, claim_after: float) -> float:
    """How long the oldest outcome may wait to be acknowledged alone: :data:`SETTLE_DELAY`, or with a
    budget :data:`SETTLE_DELAY_BUSY`, longer than a read waits (:data:`READ_IDLE_BUSY`), so the next read
    settles it in the same round trip; never long enough for another process to take the entry over
    (``claim_after``) while it waits."""
    return min(SETTLE_DELAY_BUSY if rate else SETTLE_DELAY, claim_after * SETTLE_CLAIM_SHARE)
