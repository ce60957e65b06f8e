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
from pendo_plugin.delivery.dead_letters import DEAD_AFTER, bury
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
        counts: Callable[[Payload], bool] | None = None,
    ) -> None:
        self.outstanding = size
        self._on_settled = on_settled
        self.claim = claim
        self.spool = spool
        self.replay = replay
        self.failed: list[Payload] = []
        self._undeliverable = undeliverable
        self._counts = counts  # whether a failure is the payload's own (see dead_letters)
        self._own_failures: set[int] = set()  # ids of the failed payloads whose failure counts

    def finish(self, payload: Payload, outcome: Outcome) -> None:
        """Record one payload's outcome (acknowledged in its spool file at once unless it failed); the
        last one settles the batch."""
        if outcome == "failed":
            self.failed.append(payload)
            if self._counts is not None and self._counts(payload):
                self._own_failures.add(id(payload))
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
        if failed and len(failed) == len(claim.items) and not self._own_failures:
            if not self.replay:
                counters.record("spooled", amount=len(failed))
            claim.release()  # none failed on its own account (shutdown, Pendo down): the file waits as it is
            return
        if failed:
            counts = [claim.failures_of(p) + (id(p) in self._own_failures) for p in failed]
            live = [(p, n) for p, n in zip(failed, counts, strict=True) if n < DEAD_AFTER]
            dead = [(p, n) for p, n in zip(failed, counts, strict=True) if n >= DEAD_AFTER]
            prefix = claim.path.name.split("-", 1)[0]
            if not self._rewrite(live, prefix) or not self._bury(dead, prefix):
                claim.release()  # keep the file: its log skips what was acknowledged
                return
            if not self.replay:
                counters.record("spooled", amount=len(live))
        claim.done()

    def _rewrite(self, kept: list[tuple[Payload, int]], prefix: str) -> bool:
        """Write the payloads to retry, with their failure counts, to a new file of the same age."""
        assert self.spool is not None
        return not kept or self.spool.write(
            [p for p, _ in kept], name_prefix=prefix, failures=[n for _, n in kept]
        ) is not None

    def _bury(self, dead: list[tuple[Payload, int]], prefix: str) -> bool:
        """Move the payloads that failed too often to the spool's quarantine (the local dead letter)."""
        assert self.spool is not None
        if not dead:
            return True
        items, counts = [p for p, _ in dead], [n for _, n in dead]
        claim = self.spool.write_claimed(items, name_prefix=prefix, failures=counts)
        if claim is None:
            return False
        bury(self.spool.directory, claim.path, len(dead))
        claim.release()
        return True
