"""Metadata rows waiting to be sent: merged per visitor or account id, the newest value of each field
winning by the message's own timestamp (ties: the later arrival), each row remembering what it was
merged from so every origin can be settled with the outcome.

A metadata payload carries its message's timestamp as ``stamp`` (epoch milliseconds). Payloads
without one (spool files written before it was stored, or with a value that is not a number) count
as older than any that has one (:data:`~pendo_plugin.pendo.payload.UNSTAMPED`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from pendo_plugin import counters
from pendo_plugin.pendo.payload import UNSTAMPED, Payload

Origin = TypeVar("Origin")
Row = tuple[str, dict[str, Any]]
"""One merged metadata row to send: its id and values."""
MAX_REMEMBERED_ROWS = 10_000


class FieldClock:
    """The newest timestamp already queued for sending, per row and field (bounded, least recently
    used forgotten first), so a later batch never sends a value older than one an earlier batch sent;
    each value left out is counted as ``superseded:<kind>``."""

    def __init__(self, capacity: int = MAX_REMEMBERED_ROWS) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()

    def newer(self, kind: str, row_id: str, values: dict[str, tuple[float, Any]]) -> dict[str, Any]:
        """The values not older than what was queued before for that row and field; records them."""
        key = (kind, row_id)
        seen = self._rows.setdefault(key, {})
        self._rows.move_to_end(key)
        kept = {}
        for field, (stamp, value) in values.items():
            if stamp >= seen.get(field, UNSTAMPED):
                seen[field] = stamp
                kept[field] = value
            else:
                counters.record("superseded", kind=kind)
        if len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return kept


class MergedRows(Generic[Origin]):
    """The waiting rows of one kind (``visitor`` or ``account``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._rows: dict[str, tuple[dict[str, tuple[float, Any]], list[Origin]]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, payload: Payload, origin: Origin) -> None:
        """Merge one metadata payload into the row of its id: per field, the value with the newest
        timestamp wins; on a tie, the one added last."""
        values, origins = self._rows.setdefault(payload.row_id, ({}, []))
        stamp = payload.stamp
        for field, value in payload.body.items():
            current = values.get(field)
            if current is None or stamp >= current[0]:
                values[field] = (stamp, value)
        origins.append(origin)

    def rows(self, clock: FieldClock | None = None) -> list[Row]:
        """One merged row per id, in the order the ids were first seen; with ``clock``, fields
        older than a value queued before are left out (and rows left with none)."""
        merged: list[Row] = []
        for key, (values, _) in self._rows.items():
            if clock is None:
                kept = {field: value for field, (_, value) in values.items()}
            else:
                kept = clock.newer(self.kind, key, values)
            if kept or clock is None:
                merged.append((key, kept))
        return merged

    def origins(self) -> Iterator[Origin]:
        """Everything merged in, in order."""
        for _, origins in self._rows.values():
            yield from origins
