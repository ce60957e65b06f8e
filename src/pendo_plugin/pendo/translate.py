"""Segment message -> Pendo payloads. Pure: no I/O, no logging, no global mutable state.

``translate`` turns one normalised Segment message (a dict as ``segment-analytics-python`` queues it) into
Track Events and metadata rows that satisfy Pendo's rules (see ``sanitize`` and ``docs/mapping.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pendo_plugin.pendo.coerce import parse_timestamp_ms
from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.pendo.sanitize import clean_metadata_values, clean_properties

__all__ = [
    "ANONYMOUS_PREFIX",
    "MAX_ID_LENGTH",
    "MetadataRow",
    "TrackEvent",
    "Translation",
    "account_id_of",
    "to_webhook_body",
    "translate",
    "visitor_id_of",
]

ANONYMOUS_PREFIX = "_PENDO_T_"
"""Pendo's prefix for anonymous visitors: ``anonymousId`` ``"a1"`` -> visitorId ``"_PENDO_T_a1"``."""
MAX_ID_LENGTH = 256
"""Visitor and account ids longer than this (in characters) are not sent (``id_too_long``)."""
_DAY_MS = 86_400_000
_EMPTY: Mapping[str, Any] = {}
_SKIPPED_CALLS = frozenset({"page", "screen", "alias"})
_CONTEXT_KEYS = ("ip", "userAgent")
_PAGE_KEYS = ("url", "title")


class TrackEvent(NamedTuple):
    """One ``POST /data/track`` body, ready to ``json.dumps`` (no ``default=`` hook needed).

    This and the other values here are named tuples: immutable like a frozen dataclass, and about four
    times cheaper to create, which matters once per event."""

    message_id: str
    visitor_id: str
    body: dict[str, Any]


class MetadataRow(NamedTuple):
    """Values for one visitor or account; field names clean, values JSON-safe, not yet schema-coerced."""

    kind: Literal["visitor", "account"]
    entity_id: str
    values: dict[str, Any]
    message_id: str


class Translation(NamedTuple):
    """What one Segment message becomes.

    ``skipped`` is the reason when ``payloads`` is empty (else None); ``fixes`` are the sorted kinds of repair
    made; ``account_link`` is a ``(visitor_id, account_id)`` pair the caller should remember for later
    track events of that visitor (from a group call, or identify ``context.groupId``/``traits.groupId``).
    """

    payloads: tuple[TrackEvent | MetadataRow, ...]
    skipped: str | None = None
    fixes: tuple[str, ...] = ()
    account_link: tuple[str, str] | None = None


_new = tuple.__new__  # builds a named tuple without its Python-level __new__ (a track event builds two)


# ----------------------------------------------------------------------------------------------- ids


_ID_BITS = 4 * MAX_ID_LENGTH
"""An integer id of more bits has more digits than an id may have: it is not written out (``str()`` of
one over 4,300 digits raises ValueError)."""
_TOO_LONG_ID = "9" * (MAX_ID_LENGTH + 1)
"""What such an id stands as: one over the length bound, skipped as ``id_too_long``."""


def _id_text(value: Any) -> str | None:
    """An id as text: strings as they are, numbers stringified (``12.0`` -> ``"12"``); blank/other -> None."""
    if value is None:
        return None
    if type(value) is str:  # the common case first: this runs several times per message
        return value if value and not value.isspace() else None
    if isinstance(value, str):
        text = value if type(value) is str else str.__str__(value)
    elif isinstance(value, bool) or value is None:
        return None
    elif isinstance(value, int):
        text = str(int(value)) if value.bit_length() <= _ID_BITS else _TOO_LONG_ID
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return None
        if value.adjusted() > MAX_ID_LENGTH:  # int() of Decimal("1e100000") is slow, and str() of it raises
            return _TOO_LONG_ID
        text = str(int(value)) if value == value.to_integral_value() else str(value)
    else:
        return None
    return text if text and not text.isspace() else None


def _mapping(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # the common case, without the ABC check
        return value
    return value if isinstance(value, Mapping) else _EMPTY


def _id_problem(value: str) -> str | None:
    """Why an id cannot be sent, or None."""
    if len(value) > MAX_ID_LENGTH:
        return "id_too_long"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "bad_id"
    return None


def visitor_id_of(message: Mapping[str, Any]) -> str | None:
    """Pendo visitorId: ``userId``, else ``"_PENDO_T_" + anonymousId``; numbers stringified; blank -> None."""
    user_id = _id_text(message.get("userId"))
    if user_id is not None:
        return user_id
    anonymous_id = _id_text(message.get("anonymousId"))
    return None if anonymous_id is None else ANONYMOUS_PREFIX + anonymous_id


def account_id_of(message: Mapping[str, Any], remembered: str | None = None) -> str | None:
    """Pendo accountId: ``context.groupId``, ``properties.groupId``, ``properties.accountId``, (group call:
    ``groupId``), else ``remembered``. Blank candidates are passed over; numbers are stringified.
    """
    properties = _mapping(message.get("properties"))
    for candidate in (
        _mapping(message.get("context")).get("groupId"),
        properties.get("groupId"),
        properties.get("accountId"),
    ):
        if candidate is not None:
            account_id = _id_text(candidate)
            if account_id is not None:
                return account_id
    if message.get("type") == "group":
        account_id = _id_text(message.get("groupId"))
        if account_id is not None:
            return account_id
    return _id_text(remembered)


# ----------------------------------------------------------------------------------------- translate


def _message_id(message: Mapping[str, Any]) -> str:
    value = message.get("messageId")
    return value if isinstance(value, str) else "" if value is None else str(json_safe(value)[0])


def _skip(
    reason: str, fixes: tuple[str, ...] | set[str] = (), link: tuple[str, str] | None = None
) -> Translation:
    return Translation(payloads=(), skipped=reason, fixes=tuple(sorted(fixes)), account_link=link)


def translate(
    message: Mapping[str, Any],
    *,
    remembered_account: str | None = None,
    now_ms: int,
    max_age_days: float | None = 7.0,
    ids: tuple[str | None, str | None] | None = None,
) -> Translation:
    """Translate one Segment message into Pendo payloads (never raises for a mapping input).

    identify -> visitor metadata row; group -> account metadata row and an account link; track -> one
    Track Event. page/screen/alias and unknown calls are skipped (``call:<type>``). ``remembered_account``
    is the account last linked to this visitor; ``now_ms`` is "now" in epoch ms; track events older than
    ``max_age_days`` are skipped as ``too_old`` (None: never). ``ids``, when the caller already resolved
    them, is ``(visitor_id_of(message), account_id_of(message, remembered_account))``: a track call then
    does not resolve them again.
    """
    call = message.get("type")
    if call == "track":
        return _translate_track(message, remembered_account, ids, now_ms, max_age_days)
    if call == "identify":
        return _translate_identify(message)
    if call == "group":
        return _translate_group(message)
    if isinstance(call, str) and call in _SKIPPED_CALLS:
        return _skip(f"call:{call}")
    return _skip("call:unknown")


def _checked_visitor(visitor_id: str | None) -> tuple[str | None, str | None]:
    """``(visitor_id, None)`` or ``(None, skip reason)`` for an id from :func:`visitor_id_of`."""
    if visitor_id is None:
        return None, "no_visitor_id"
    problem = _id_problem(visitor_id)
    return (None, problem) if problem else (visitor_id, None)


def _translate_identify(message: Mapping[str, Any]) -> Translation:
    visitor_id, problem = _checked_visitor(visitor_id_of(message))
    if visitor_id is None:
        return _skip(problem or "no_visitor_id")
    traits = _mapping(message.get("traits"))
    values, fixes = clean_metadata_values(traits) if traits else ({}, ())
    link = None
    group_id = _id_text(_mapping(message.get("context")).get("groupId")) or _id_text(traits.get("groupId"))
    if group_id is not None and _id_problem(group_id) is None:
        link = (visitor_id, group_id)
    if not values:
        return _skip("no_traits", fixes, link)
    row = MetadataRow(kind="visitor", entity_id=visitor_id, values=values, message_id=_message_id(message))
    return Translation(payloads=(row,), fixes=fixes, account_link=link)


def _translate_group(message: Mapping[str, Any]) -> Translation:
    account_id = _id_text(message.get("groupId"))
    if account_id is None:
        return _skip("blank_account_id")
    problem = _id_problem(account_id)
    if problem is not None:
        return _skip(problem)
    visitor_id, _ = _checked_visitor(visitor_id_of(message))
    link = None if visitor_id is None else (visitor_id, account_id)
    traits = _mapping(message.get("traits"))
    values, fixes = clean_metadata_values(traits) if traits else ({}, ())
    if not values:
        return _skip("no_traits", fixes, link)
    row = MetadataRow(kind="account", entity_id=account_id, values=values, message_id=_message_id(message))
    return Translation(payloads=(row,), fixes=fixes, account_link=link)


def _event_name(message: Mapping[str, Any]) -> str | None:
    event = message.get("event")
    if isinstance(event, (int, float, Decimal)) and not isinstance(event, bool):
        event = _id_text(event)
    if not isinstance(event, str):
        return None
    if event.isascii():  # no lone surrogate to repair
        return event.strip() or None
    name, _ = json_safe(event.strip())  # repairs lone surrogates
    return name or None


def _timestamp(message: Mapping[str, Any], now_ms: int, fixes: set[str]) -> int:
    raw = message.get("timestamp")
    ms = parse_timestamp_ms(raw)
    if ms is None:
        fixes.add("timestamp_missing" if raw is None else "timestamp_invalid")
        return now_ms
    return ms


def _event_context(message: Mapping[str, Any]) -> dict[str, str]:
    context = _mapping(message.get("context"))
    out: dict[str, str] = {}
    _copy_texts(context, _CONTEXT_KEYS, out)
    page = context.get("page")
    if page is not None:
        _copy_texts(_mapping(page), _PAGE_KEYS, out)
    return out


def _copy_texts(source: Mapping[str, Any], keys: tuple[str, ...], out: dict[str, str]) -> None:
    """The non-empty text values of ``keys`` in ``source``, into ``out`` (lone surrogates repaired)."""
    for key in keys:
        value = source.get(key)
        if isinstance(value, str) and value:
            out[key] = value if value.isascii() else json_safe(value)[0]


def _translate_track(
    message: Mapping[str, Any],
    remembered: str | None,
    ids: tuple[str | None, str | None] | None,
    now_ms: int,
    max_age_days: float | None,
) -> Translation:
    visitor_id, problem = _checked_visitor(visitor_id_of(message) if ids is None else ids[0])
    if visitor_id is None:
        return _skip(problem or "no_visitor_id")
    event = _event_name(message)
    if event is None:
        return _skip("no_event_name")
    fixes: set[str] = set()
    timestamp = _timestamp(message, now_ms, fixes)
    if max_age_days is not None and now_ms - timestamp > max_age_days * _DAY_MS:
        return _skip("too_old", fixes)
    properties, prop_fixes = clean_properties(_mapping(message.get("properties")))
    if prop_fixes:
        fixes.update(prop_fixes)
    body: dict[str, Any] = {"type": "track", "event": event, "visitorId": visitor_id}
    account_id = account_id_of(message, remembered) if ids is None else ids[1]
    if account_id is not None:
        if _id_problem(account_id) is None:
            body["accountId"] = account_id
        else:
            fixes.add("account_id_dropped")
    body["timestamp"] = timestamp
    body["properties"] = properties
    body["context"] = _event_context(message)
    track = _new(TrackEvent, (_message_id(message), visitor_id, body))
    return _new(Translation, ((track,), None, tuple(sorted(fixes)) if fixes else (), None))


# ------------------------------------------------------------------------------------------ webhook


def to_webhook_body(message: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of the raw Segment message for Pendo's segmentio webhook.

    datetime -> ISO string, Decimal -> float, UUID -> str, NaN/Infinity -> null, sets -> lists, and so on
    (see ``jsonsafe.json_safe``). The input is not modified.
    """
    body, _ = json_safe(message)
    return body if isinstance(body, dict) else {}
