"""A group of payloads written ahead to one spool file, settled when every payload has an outcome.

With the spool on, the worker writes each slice of routed payloads to disk (fsynced, locked)
before sending any of it. Each payload delivered or refused for good is acknowledged in the file's
log at once (:mod:`.acks`). When all of them are settled the file is deleted; payloads that
failed are first written to a new file with the same age, so a later attempt sends only those
(if that rewrite fails, the file and its log are kept). If this process dies, the kernel drops
the lock and a later process sends what was not acknowledged: delivery is at-least-once. With
the spool off (or when writing ahead failed), failed payloads are counted as dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from pendo_plugin import counters
from pendo_plugin.delivery.senders import Outcome
from pendo_plugin.delivery.spool import Claim, Spool
from pendo_plugin.pendo.payload import Payload

Undeliverable = Callable[[list[Payload]], None]


class Batch:
    """Tracks the outcomes of the payloads that came from one spool file (or from none)."""

    def __init__(
        self,
        size: int,
        claim: Claim | None,
        spool: Spool | None,
        undeliverable: Undeliverable,
        on_settled: Callable[[], None] | None = None,
        *,
        replay: bool = False,
    ) -> None:
        self.outstanding = size
        self._on_settled = on_settled
        self.claim = claim
        self.spool = spool
        self.replay = replay
        self.failed: list[Payload] = []
        self._undeliverable = undeliverable

    def finish(self, payload: Payload, outcome: Outcome) -> None:
        """Record one payload's outcome (acknowledged in its spool file at once unless it failed); the
        last one settles the batch."""
        if outcome == "failed":
            self.failed.append(payload)
        elif self.claim is not None:
            self.claim.ack(payload)
        self.outstanding -= 1
        if self.outstanding == 0:
            self._settle()
            if self._on_settled is not None:
                self._on_settled()

    def _settle(self) -> None:
        claim, failed = self.claim, self.failed
        if claim is None or self.spool is None:
            if failed:
                self._undeliverable(failed)
            return
        if failed and len(failed) == len(claim.items):
            if not self.replay:
                counters.record("spooled", amount=len(failed))
            claim.release()
            return
        if failed:
            rewritten = self.spool.write(failed, name_prefix=claim.path.name.split("-", 1)[0])
            if rewritten is None:
                claim.release()  # keep the file: its log skips what was acknowledged
                return
            if not self.replay:
                counters.record("spooled", amount=len(failed))
        claim.done()
