"""Pendo's rules applied again to a payload body that code outside the mapping produced (the
``pendo_transform`` hook). Pure: no I/O, no logging.

The same rules as the mapping (``docs/mapping.md``): ids and event names, properties and metadata values
cleaned by :mod:`~pendo_plugin.pendo.sanitize`, webhook messages made JSON-safe. A body that cannot be made
to fit is refused (None) rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.pendo.sanitize import clean_metadata_values, clean_properties
from pendo_plugin.pendo.translate import MAX_ID_LENGTH

__all__ = ["rechecked"]

_TRACK_CONTEXT_KEYS = ("ip", "userAgent", "url", "title")


def _id(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        return None
    return value if value.isascii() else json_safe(value)[0]


def rechecked(kind: str, body: Any) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """``body`` (of payload kind ``track``, ``visitor``, ``account`` or ``webhook``) made to fit Pendo's
    rules, with the fixes made; ``(None, ())`` when it cannot be sent."""
    if not isinstance(body, Mapping):
        return None, ()
    if kind == "track":
        return _track(body)
    if kind in ("visitor", "account"):
        values, fixes = clean_metadata_values(body)
        return (values or None), fixes
    if kind == "webhook":
        safe, _ = json_safe(body)
        return (safe if isinstance(safe, dict) and isinstance(safe.get("type"), str) else None), ()
    return None, ()


def _track(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    visitor = _id(body.get("visitorId"))
    event = body.get("event")
    timestamp = body.get("timestamp")
    if visitor is None or not isinstance(event, str) or not event.strip():
        return None, ()
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        return None, ()
    properties = body.get("properties")
    cleaned, fixes = clean_properties(properties if isinstance(properties, Mapping) else {})
    out: dict[str, Any] = {"type": "track", "event": json_safe(event.strip())[0], "visitorId": visitor}
    if body.get("accountId") is not None:
        account = _id(body.get("accountId"))
        if account is None:
            return None, ()
        out["accountId"] = account
    context = body.get("context")
    context = context if isinstance(context, Mapping) else {}
    out["timestamp"] = timestamp
    out["properties"] = cleaned
    out["context"] = {
        key: json_safe(context[key])[0] for key in _TRACK_CONTEXT_KEYS if isinstance(context.get(key), str)
    }
    return out, fixes
