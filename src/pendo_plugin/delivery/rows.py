"""Metadata rows waiting to be sent: merged per visitor or account id, later values winning per
field, each remembering what it was merged from so every origin can be settled with the outcome."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

Origin = TypeVar("Origin")
METADATA_KINDS = ("visitor", "account")


class MergedRows(Generic[Origin]):
    """The waiting rows of one kind (``visitor`` or ``account``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._rows: dict[str, tuple[dict[str, Any], list[Origin]]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, payload: dict[str, Any], origin: Origin) -> None:
        """Merge one ``{"k": "meta", ...}`` payload into the row of its id."""
        values, origins = self._rows.setdefault(str(payload["id"]), ({}, []))
        values.update(payload.get("v") or {})
        origins.append(origin)

    def payloads(self) -> list[dict[str, Any]]:
        """One merged payload per id, in the order the ids were first seen."""
        return [
            {"k": "meta", "t": self.kind, "id": key, "v": values} for key, (values, _) in self._rows.items()
        ]

    def origins(self) -> Iterator[Origin]:
        """Everything merged in, in order."""
        for _, origins in self._rows.values():
            yield from origins
