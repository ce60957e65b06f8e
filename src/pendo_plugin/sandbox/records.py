"""What the sandbox received, and the read-only views of it that tests and the page use."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from pendo_plugin.sandbox.rules import KINDS, MAX_VIOLATIONS, STATE_EVENTS, STATE_ROWS, RecordedRequest


class Recordings:
    """The accepted events, metadata rows, messages and violations (a base of :class:`Sandbox`); every
    reader takes ``_cond``'s lock and returns a copy."""

    _cond: threading.Condition
    _log: deque[RecordedRequest]
    _version: int

    def _clear(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._event_names: set[str] = set()
        self._property_keys: set[str] = set()
        self._values: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._known: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self._metadata: list[tuple[str, list[Any]]] = []
        self._webhook: list[dict[str, Any]] = []
        self._segment: list[dict[str, Any]] = []
        self._violations: list[str] = []
        self._violation_count = 0
        self._request_count = 0

    def state(self) -> dict[str, Any]:
        """The page's snapshot: counts, the latest visitors/accounts, last events and violations."""
        with self._cond:
            return {
                "counts": self._counts(),
                "visitors": self._latest_rows("visitor"),
                "accounts": self._latest_rows("account"),
                "events": self._events[-STATE_EVENTS:],
                "violations": self._violations[-STATE_EVENTS:],
            }

    def _latest_rows(self, kind: str) -> list[dict[str, Any]]:
        store = self._values[kind]
        ids = list(store)[-STATE_ROWS:]
        return [{"id": row_id, "values": dict(store[row_id])} for row_id in ids]

    # -------------------------------------------------------------- recordings

    def counts(self) -> dict[str, int]:
        """Cheap totals: visitors, accounts, track_events, metadata_requests, webhook/segment messages, ..."""
        with self._cond:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        return {
            "visitors": len(self._values["visitor"]),
            "accounts": len(self._values["account"]),
            "track_events": len(self._events),
            "metadata_requests": len(self._metadata),
            "webhook_messages": len(self._webhook),
            "segment_messages": len(self._segment),
            "violations": self._violation_count,
            "requests": self._request_count,
        }

    def track_events(self) -> list[dict[str, Any]]:
        """Bodies accepted at /data/track, in order (treat the dicts as read-only)."""
        with self._cond:
            return list(self._events)

    def visitors(self) -> dict[str, dict[str, Any]]:
        """visitorId -> metadata values merged over every accepted row (agent and custom)."""
        with self._cond:
            return {row_id: dict(values) for row_id, values in self._values["visitor"].items()}

    def accounts(self) -> dict[str, dict[str, Any]]:
        """accountId -> metadata values merged over every accepted row (agent and custom)."""
        with self._cond:
            return {row_id: dict(values) for row_id, values in self._values["account"].items()}

    def metadata_requests(self, kind: str | None = None) -> list[list[Any]]:
        """Row arrays of the metadata requests answered 200, in order; ``kind`` filters visitor/account."""
        with self._cond:
            return [list(rows) for row_kind, rows in self._metadata if kind is None or row_kind == kind]

    def webhook_messages(self) -> list[dict[str, Any]]:
        """Bodies accepted at /data/segmentio/<key>."""
        with self._cond:
            return list(self._webhook)

    def segment_messages(self) -> list[dict[str, Any]]:
        """Every message inside the /v1/batch bodies (the Segment stand-in)."""
        with self._cond:
            return list(self._segment)

    def violations(self) -> list[str]:
        """Human-readable breaches of Pendo's rules seen so far (the first 10,000)."""
        with self._cond:
            return list(self._violations)

    def request_log(self) -> list[RecordedRequest]:
        """Every request answered (except the page's), secrets masked, oldest first."""
        with self._cond:
            return list(self._log)

    def _notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _violate(self, messages: list[str]) -> None:
        """Record breaches of Pendo's rules; call with the lock held."""
        self._violation_count += len(messages)
        room = MAX_VIOLATIONS - len(self._violations)
        self._violations.extend(messages[: max(room, 0)])
