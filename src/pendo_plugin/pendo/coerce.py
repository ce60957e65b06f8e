"""Values Pendo must read as typed: timestamps in epoch milliseconds, and metadata values coerced to
the types of the field schema Pendo returns. Pure functions."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["coerce_metadata", "parse_timestamp_ms"]

from pendo_plugin.pendo.jsonsafe import _COMPACT, json_safe

# ------------------------------------------------------------------------------------ timestamps

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

_ISO = re.compile(
    r"\s*([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?"
    r"\s*([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?\s*"
)


def _parse_iso(text: str) -> _dt.datetime | None:
    """ISO 8601 date or date-time (any fraction length, ``Z`` or offset); naive means UTC."""
    m = _ISO.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = _dt.timezone.utc
    if zone and zone not in "Zz":
        digits = zone[1:].replace(":", "")
        offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        if offset >= _dt.timedelta(hours=24):
            return None
        tz = _dt.timezone(-offset if zone[0] == "-" else offset)
    try:
        return _dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                            int(second or 0), micro, tzinfo=tz)
    except ValueError:
        return None


def _datetime_ms(value: _dt.datetime) -> int:
    zone = value.tzinfo
    if zone is None or (type(zone) is not _dt.timezone and value.utcoffset() is None):
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - _EPOCH  # exact integer arithmetic: about half the time of dividing by a timedelta
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_timestamp_ms(value: Any) -> int | None:
    """Epoch milliseconds from an ISO 8601 string, a ``datetime`` or a ``date`` (naive = UTC); else None."""
    if isinstance(value, str):
        try:
            parsed: _dt.datetime | None = _dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = _parse_iso(value)
        return None if parsed is None else _datetime_ms(parsed)
    if isinstance(value, _dt.datetime):
        return _datetime_ms(value)
    if isinstance(value, _dt.date):
        return _datetime_ms(_dt.datetime(value.year, value.month, value.day))
    return None


# ------------------------------------------------------------------------------ schema coercion


TYPE_ALIASES = {  # every spelling of Pendo's four field types the schema may use -> the type
    "string": "text", "text": "text", "str": "text",
    "number": "number", "integer": "number", "int": "number", "float": "number", "double": "number",
    "boolean": "boolean", "bool": "boolean",
    "time": "date", "date": "date", "datetime": "date", "timestamp": "date",
}
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SECONDS_BELOW = 100_000_000_000
"""A number given for a date field below this is epoch seconds (before 5138), else epoch milliseconds."""
_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_MISSING = object()
_MAX_DIGITS = 300
"""A number written with more digits than this is not read (``int()`` of a long text is quadratic)."""


def _finite(number: int | float) -> int | float | Any:
    """``number`` if it is finite (an int of any size is), else ``_MISSING``; never raises."""
    if isinstance(number, int):
        return number
    return number if math.isfinite(number) else _MISSING


def _to_number(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return _finite(value)
    if isinstance(value, str) and len(value) <= 2 * _MAX_DIGITS and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        if text.lstrip("+-").isdigit() and len(text) <= _MAX_DIGITS:
            return int(text)
        return _finite(float(text))
    return _MISSING


def _to_text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=_COMPACT, allow_nan=False)


def _to_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else _MISSING
    return _MISSING


def _to_date(value: Any) -> Any:
    if isinstance(value, bool):
        return _MISSING
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = _to_number(value)
    if isinstance(value, (int, float)):
        number = value * 1000 if abs(value) < _SECONDS_BELOW else value
        # an int of any size is finite: math.isfinite(10**400) raises OverflowError, so ints skip it
        ms: int | None = int(number) if isinstance(number, int) or math.isfinite(number) else None
    else:
        ms = parse_timestamp_ms(value)
    return ms if ms is not None and _MIN_MS <= ms <= _MAX_MS else _MISSING


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "text": _to_text, "number": _to_number, "boolean": _to_boolean, "date": _to_date,
}


def coerce_metadata(
    values: Mapping[str, Any], schema: Mapping[str, str] | None
) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """Metadata values checked against the field schema: ``(values to send, fixes, unknown field names)``.

    ``schema`` maps field name -> Pendo type (``string``/``text``, ``number``/``integer``/``float``,
    ``boolean``/``bool``, ``time``/``date``/``datetime``); None means unknown: every field is kept as is.
    A field missing from the schema is left out and listed as unknown. A value of another type is coerced
    (fix ``coerced_<type>``); one that cannot be is left out (fix ``bad_value``), and so is one whose
    coercion raises, whatever the value: one field never costs the rest of the row. ``None`` is sent as
    null (it clears the field). Dates become epoch milliseconds. Unrecognised type names pass values through.
    """
    if schema is None:
        return dict(values), (), ()
    out: dict[str, Any] = {}
    fixes: set[str] = set()
    unknown: list[str] = []
    for name, value in values.items():
        kind = schema.get(name)
        if kind is None:
            unknown.append(name)
            continue
        alias = TYPE_ALIASES.get(str(kind).strip().lower())
        try:
            coerced = _coerce_one(value, alias)
        except Exception:  # a value no rule foresaw: left out like any other it cannot coerce
            coerced = _MISSING
        if coerced is _MISSING:
            fixes.add("bad_value")
            continue
        if alias is not None and (type(coerced) is not type(value) or coerced != value):
            fixes.add(f"coerced_{alias}")
        out[name] = coerced
    return out, tuple(sorted(fixes)), tuple(sorted(unknown))


def _coerce_one(value: Any, kind: str | None) -> Any:
    safe, _ = json_safe(value)
    if safe is None:
        return None if value is None else _MISSING
    coercer = _COERCERS.get(kind) if kind is not None else None
    return safe if coercer is None else coercer(safe)
