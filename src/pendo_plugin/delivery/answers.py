"""Pendo's answers read as untrusted: bounded JSON parsing, and what a metadata answer says was updated.

An answer's body is already cut at :data:`~pendo_plugin.delivery.http.MAX_RESPONSE_BYTES` by the
transport; here it is parsed with a bounded nesting depth (:func:`pendo_plugin.bounded.loads`: never
``RecursionError``), and every number taken from it is checked. A 2xx answer that cannot be read is an
oddity (``answer_unreadable:<kind>``, logged once), never a failed delivery: Pendo accepted the request.
"""

from __future__ import annotations

import logging
from typing import Any

from pendo_plugin import bounded, counters, shown
from pendo_plugin.delivery.http import MAX_RESPONSE_BYTES
from pendo_plugin.logs import log_once

__all__ = ["count_metadata_result", "read_json"]

SHOWN_ITEMS = 5
"""How many of an answer's ``missing`` ids and ``errors`` a log line shows."""


def read_json(body: bytes, max_bytes: int = MAX_RESPONSE_BYTES) -> Any | None:
    """The JSON value of an answer's body, or None when it is empty, too large, nested deeper than
    :data:`pendo_plugin.bounded.MAX_DEPTH` levels, or not JSON; never raises."""
    if not body or len(body) > max_bytes:
        return None
    try:
        return bounded.loads(body)
    except (ValueError, RecursionError, MemoryError):
        return None


def _count(value: Any, most: int) -> int | None:
    """A count from an answer: a whole number from 0 to ``most``, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most:
        return value
    return None


def _unreadable(kind: str, why: str) -> None:
    counters.record("answer_unreadable", kind=kind)
    log_once(
        f"answer-unreadable:{kind}",
        logging.WARNING,
        "pendo_plugin: Pendo accepted %s rows but its answer could not be read (%s); the rows count as "
        "sent, and the oddity as answer_unreadable:%s",
        kind,
        why,
        kind,
    )


def count_metadata_result(kind: str, rows: int, body: bytes, secrets: tuple[str, ...] = ()) -> None:
    """Count what a 2xx answer of the metadata endpoint says about ``rows`` rows of ``kind``:
    ``sent:<kind>`` (updated), ``failed:<kind>`` (not updated, logged once with a few of the ids and
    errors, ``secrets`` masked in them: an answer may echo the request's headers)."""
    result = read_json(body) if body else {}
    if not isinstance(result, dict):
        _unreadable(kind, "not a JSON object" if result is not None else "not bounded JSON")
        result = {}
    raw_failed, raw_updated = result.get("failed"), result.get("updated")
    failed = _count(raw_failed or 0, rows)
    updated = _count(raw_updated, rows)
    if failed is None or (raw_updated is not None and updated is None):
        _unreadable(kind, "a count that is not a number of these rows")
        failed = failed or 0
    counters.record("sent", None, kind, updated if updated is not None else rows - failed)
    if failed:
        counters.record("failed", kind=kind, amount=failed)
        missing, errors = result.get("missing"), result.get("errors")
        log_once(
            f"metadata-failed:{kind}",
            logging.WARNING,
            "pendo_plugin: Pendo did not update %d %s row(s): missing %s; errors %s (see stats())",
            failed,
            kind,
            _first(missing, secrets),
            _first(errors, secrets),
        )


def _first(items: Any, secrets: tuple[str, ...]) -> str:
    """The first few entries of an answer's list for a log line: secrets masked, escaped and cut
    (:func:`pendo_plugin.shown.excerpt`)."""
    listed = items[:SHOWN_ITEMS] if isinstance(items, list) else []
    return "[" + ", ".join(shown.excerpt(item if isinstance(item, str) else repr(item), secrets, 80)
                           for item in listed) + "]"
