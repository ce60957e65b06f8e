"""Replaying the spool, oldest file first: one attempt per payload, in bounded slices that leave room
for live traffic; a file none of whose payloads could be delivered (Pendo still down) waits for the
next try, every :data:`SPOOL_RETRY_INTERVAL` seconds or at a flush."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.batch import Batch
from pendo_plugin.delivery.dispatch import Dispatcher
from pendo_plugin.delivery.spool import Claim, Spool
from pendo_plugin.destination.leftovers import undeliverable
from pendo_plugin.pendo.payload import Payload

SPOOL_RETRY_INTERVAL = 30.0
REPLAY_SLICE = 512  # payloads of one spool file dispatched at a time
SLICE_POLL = 0.005  # how often a replay looks whether half a slice has settled


class SpoolReplay:
    """One replay of the spool at a time, through the worker's dispatcher (the one send path)."""

    def __init__(
        self,
        sends: Callable[[], Dispatcher],
        stopping: Callable[[], bool],
        counts: Callable[[Payload], bool],
    ) -> None:
        self._sends = sends
        self._stopping = stopping
        self._counts = counts  # whether a failed payload's failure counts towards its dead letter
        self.draining = False
        self.next_try = 0.0

    def start_if_due(self, spool: Spool | None, settings: Settings, *, force: bool = False) -> None:
        """Start replaying ``spool`` when its retry time has come (``force``: now), unless one runs."""
        if self.draining or (not force and time.monotonic() < self.next_try):
            return
        self.next_try = time.monotonic() + SPOOL_RETRY_INTERVAL
        if spool is None or not spool.has_files():
            return
        self.draining = True
        self._sends().spawn(self._drain(spool, settings), replay=True)

    async def _drain(self, spool: Spool, settings: Settings) -> None:
        try:
            for claim in spool.claims():
                if self._stopping() or not await self._replay_claim(claim, spool, settings):
                    claim.release()
                    return
        finally:
            self.draining = False

    async def _replay_claim(self, claim: Claim, spool: Spool, settings: Settings) -> bool:
        """Send one claimed file, one attempt per payload, and settle it; False if none of it could be
        delivered (Pendo still down: the file waits for the next try)."""
        if not claim.items:
            claim.done()
            return True
        done = asyncio.Event()
        total = len(claim.items)
        batch = Batch(
            total, claim, spool, undeliverable, on_settled=done.set, replay=True, counts=self._counts
        )
        sends = self._sends()
        for start in range(0, total, REPLAY_SLICE):  # bounded slices: memory, and room for live traffic
            while start - (total - batch.outstanding) > REPLAY_SLICE // 2 and not self._stopping():
                await asyncio.sleep(SLICE_POLL)
            if self._stopping():
                for payload in claim.items[start:]:
                    batch.finish(payload, "failed")  # not sent: it stays in the spool
                break
            for payload in claim.items[start : start + REPLAY_SLICE]:
                sends.submit(payload, settings, batch.finish, retry=False)
            sends.send_rows(settings, force=True)
        await done.wait()
        counters.record("unspooled", amount=len(claim.items) - len(batch.failed))
        return len(batch.failed) < len(claim.items)
