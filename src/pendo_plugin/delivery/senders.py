"""Sending metadata to Pendo: visitor and account rows in batches, each row prepared against Pendo's
field schema, a failing batch split so that one bad row holds back no other.

Rows are merged :data:`~pendo_plugin.delivery.rows.Row` items; :meth:`Sender.send_metadata` returns
the ids to keep for later. Track events and webhook messages go through :class:`Transmitter`, which
:class:`Sender` extends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pendo_plugin import counters, jsoncodec, shown
from pendo_plugin.config import Settings
from pendo_plugin.delivery.answers import count_metadata_result
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import Request
from pendo_plugin.delivery.limiter import AdaptiveLimiter
from pendo_plugin.delivery.retry import PermanentError, RetryableError, ShutdownInterrupted
from pendo_plugin.delivery.rows import Row
from pendo_plugin.delivery.transmit import AUTH_STATUSES, JSON_HEADERS, Outcome, Prepared, Transmitter
from pendo_plugin.logs import log, log_once
from pendo_plugin.pendo.coerce import coerce_metadata

__all__ = ["Outcome", "Sender"]


class Sender(Transmitter):
    """Sends payloads over one transport (:class:`Transmitter`), and metadata rows in batches."""

    @classmethod
    def for_settings(cls, settings: Settings, stopping: asyncio.Event) -> Sender:
        """The configured transport (or a keep-alive pool) with adaptive concurrency up to
        ``max_concurrency``; create it on the loop that will use it."""
        transport = settings.transport or HttpTransport(settings.max_concurrency, settings.ca_bundle)
        return cls(transport, AdaptiveLimiter(settings.max_concurrency), stopping)

    async def send_metadata(
        self, kind: str, rows: list[Row], settings: Settings, set_aside: set[str] | None = None
    ) -> set[str]:
        """Deliver rows of one kind (visitor/account) as batches; a batch refused with 400, or failing
        twice, is split to isolate bad rows. Returns the ids of the rows that must be kept for later (the
        others were sent, or refused for good: counted as dropped). A row whose preparation raises is left
        out of the batch, whatever the others do: counted (``dropped:internal_error:<kind>``), logged
        once, handed to ``on_error``, and its id added to ``set_aside`` (its caller settles it as
        rejected: it is never sent again)."""
        failed: set[str] = set()
        if not rows:
            return failed
        schema = await self.schemas.fields(self.transport, settings, kind)
        prepared = []
        for item in rows:
            try:
                row = self._prepare(kind, item, schema)
            except Exception as exc:  # a value no rule foresaw: this row only, never its batch
                self._set_aside(kind, item, exc, set_aside)
                continue
            if row is not None:
                prepared.append(row)
        for i in range(0, len(prepared), settings.metadata_batch_size):
            await self._post_rows(kind, prepared[i : i + settings.metadata_batch_size], settings, failed)
        return failed

    def _set_aside(self, kind: str, item: Row, exc: Exception, set_aside: set[str] | None) -> None:
        counters.record("dropped", "internal_error", kind)
        log_once(
            f"prepare:{kind}:{type(exc).__name__}",
            logging.ERROR,
            "pendo_plugin: could not prepare a %s row (%s); set aside, never sent, counted as "
            "dropped:internal_error:%s",
            kind,
            type(exc).__name__,
            kind,
        )
        if set_aside is not None:
            set_aside.add(item[0])
        self.on_drop(exc, [{f"{kind}Id": item[0], "values": item[1]}])

    def _prepare(self, kind: str, item: Row, schema: dict[str, str] | None) -> dict[str, Any] | None:
        row_id, raw_values = item
        values, fixes, unknown = coerce_metadata(raw_values, schema)
        for fix in fixes:
            counters.record("fixed", fix, kind)
        for name in unknown:
            counters.record("dropped_field", "unknown", kind)
            log_once(
                f"unknown-field:{kind}:{name}",
                logging.WARNING,
                "pendo_plugin: %s field '%s' does not exist in Pendo; add it under Settings > Data Mappings "
                "to receive it (not sent until then)",
                kind,
                shown.escape(name, 128),
                family=f"unknown-field:{kind}",
            )
        if not values:
            counters.record("skipped", "no_known_fields", kind)
            return None
        return {f"{kind}Id": row_id, "values": values}

    async def _post_rows(self, kind: str, rows: Prepared, settings: Settings, failed: set[str]) -> None:
        """One batch; the ids of rows to keep for later are added to ``failed``."""
        request = Request(
            "POST",
            f"{settings.api_url}/api/v1/metadata/{kind}/custom/value?create=true",
            jsoncodec.dumps(rows),
            {**JSON_HEADERS, "x-pendo-integration-key": settings.integration_key or ""},
            settings.request_timeout,
        )
        split = len(rows) > 1
        try:
            body = await self._post(request, settings, split)
        except PermanentError as exc:
            if exc.status in AUTH_STATUSES:
                self._auth_failed(exc, kind, len(rows))
                failed.update(str(row[f"{kind}Id"]) for row in rows)
                return
            if exc.status == 400 and split:
                return await self._halves(kind, rows, settings, failed)
            counters.record("dropped", f"http_{exc.status}", kind, len(rows))
            log.error(
                "pendo_plugin: Pendo refused %d %s row(s) (%s ids %s) with HTTP %d (%s); counted as "
                "dropped:http_%d:%s",
                len(rows),
                kind,
                kind,
                ", ".join(shown.escape(row.get(f"{kind}Id"), 64) for row in rows[:3]),
                exc.status,
                exc.detail,
                exc.status,
                kind,
            )
            self.on_drop(exc, rows)
            return
        except ShutdownInterrupted:
            failed.update(str(row[f"{kind}Id"]) for row in rows)
            return
        except RetryableError as exc:
            if split and exc.status != 429 and exc.retry_after is None:  # failed twice: isolate the bad row
                return await self._halves(kind, rows, settings, failed)
            self._exhausted(kind, len(rows), exc)
            failed.update(str(row[f"{kind}Id"]) for row in rows)
            return
        count_metadata_result(kind, len(rows), body, settings.secrets)

    async def _post(self, request: Request, settings: Settings, split: bool) -> bytes:
        """One metadata batch's answer; a batch of several rows is tried twice before it is split, unless
        Pendo asks it to wait (429, Retry-After: not a bad row), then it retries per the settings."""
        if not split:
            return await self._with_retries(request, settings)
        try:
            return await self._with_retries(request, settings, policy=self._for(settings).split)
        except RetryableError as exc:
            if exc.status != 429 and exc.retry_after is None:
                raise
            return await self._with_retries(request, settings, failed=exc)

    async def _halves(self, kind: str, rows: Prepared, settings: Settings, failed: set[str]) -> None:
        """A batch that failed twice (or was refused with 400) sent as two halves, down to one row, so a
        bad row holds back no other: the halves go at once, so the good half does not wait out the
        retries of the bad one."""
        middle = len(rows) // 2
        await asyncio.gather(
            self._post_rows(kind, rows[:middle], settings, failed),
            self._post_rows(kind, rows[middle:], settings, failed),
        )
