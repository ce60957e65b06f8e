"""The outcomes of the stream entries this process sent, waiting to be settled in Redis by
:data:`~pendo_plugin.delivery.fleet.entries.SETTLE_SCRIPT` (see :mod:`pendo_plugin.delivery.fleet.queue`):
acknowledged (``XACK`` + ``XDEL``), or appended anew to be retried (past ``DEAD_AFTER`` failures, to the
dead stream). They are settled in batches, alone when :meth:`Outcomes.due`, else on the way of the next
read (one round trip for both)."""

from __future__ import annotations

import time
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.fleet.entries import (
    DEAD_AFTER,
    DEAD_MAX_LEN,
    DEAD_STREAM,
    GROUP,
    SETTLE_SCRIPT,
    STREAM,
)
from pendo_plugin.delivery.fleet.pacing import SETTLE_BATCH, settle_delay
from pendo_plugin.delivery.fleet.scripts import Call
from pendo_plugin.delivery.fleet.upkeep import count_dead


class Outcomes:
    """Entry ids to acknowledge and entries to append anew, in the order they came."""

    def __init__(self) -> None:
        self.acks: list[bytes] = []
        self.requeue: list[tuple[bytes, bytes, int]] = []  # (id, payload, failures) to append anew
        self._since: float | None = None  # when the oldest outcome waiting came
        self.asked = False  # a flush waits for them only: settle them at once
        self._script: tuple[Any, Any] | None = None  # (client, its registered SETTLE_SCRIPT)

    def __bool__(self) -> bool:
        return bool(self.acks or self.requeue)

    def ack(self, entry_id: bytes) -> None:
        self._since = self._since or time.monotonic()
        self.acks.append(entry_id)

    def retry(self, entry_id: bytes, raw: bytes, failures: int) -> None:
        self._since = self._since or time.monotonic()
        self.requeue.append((entry_id, raw, failures))

    def due(self, now: float, settings: Settings) -> bool:
        """Whether to settle now, without waiting for a read: a batch is full, a flush waits, or the oldest
        waited :func:`~pendo_plugin.delivery.fleet.pacing.settle_delay`."""
        waiting = len(self.acks) + len(self.requeue)
        if not waiting or self._since is None:
            return False
        if self.asked or waiting >= SETTLE_BATCH:
            return True
        return now - self._since >= settle_delay(settings.rate_limit, settings.redis_claim_after)

    def call(self, client: Any) -> tuple[Call, int, int] | None:
        """The settle script's call for what waits (nothing: None), and how many acks and requeues it
        takes (more may come while it runs)."""
        acks, requeue = list(self.acks), list(self.requeue)
        if not acks and not requeue:
            return None
        if self._script is None or self._script[0] is not client:
            self._script = (client, client.register_script(SETTLE_SCRIPT))
        triples = [part for entry_id, raw, failures in requeue for part in (entry_id, raw, failures)]
        args = [GROUP, len(acks), DEAD_AFTER, DEAD_MAX_LEN, *acks, *triples]
        return (self._script[1], [STREAM, DEAD_STREAM], args), len(acks), len(requeue)

    def settled(self, dead: Any, acks: int, requeue: int) -> None:
        """The script ran for the first ``acks`` acks and ``requeue`` requeues (counted)."""
        count_dead(dead)
        del self.acks[:acks], self.requeue[:requeue]
        self._since = time.monotonic() if self else None
        self.asked = False
        counters.record("redis", "acked", amount=acks)
        if requeue:
            counters.record("redis", "requeued", amount=requeue)
