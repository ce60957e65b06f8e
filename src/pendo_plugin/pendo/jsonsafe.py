"""Any Python value as plain JSON types, with the kinds of repair made: ``json_safe``.

Pure functions: no I/O, no logging, no global mutable state. The fix strings each repair reports are
counted by the caller (``docs/mapping.md`` lists them); :mod:`pendo_plugin.pendo.sanitize` applies these
to Track Event properties and metadata values.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "json_safe"]

MAX_JSON_DEPTH = 32
"""``json_safe`` replaces containers nested deeper than this (or cyclic ones) with ``None``."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_COMPACT = (",", ":")
_EXACT_INT = 2**53
_MAX_INT = int(sys.float_info.max)
_MIN_INT = -_MAX_INT
"""Integers outside this range (no JSON reader's number holds one; ``10**400``) become None."""


def _key_text(key: object) -> str:
    """``str(key)`` that never raises (a hostile ``__str__`` gives the type's name)."""
    if type(key) is str:
        return key
    try:
        return str(key)
    except Exception:
        return type(key).__name__


def _clean_str(value: str, fixes: set[str]) -> str:
    if type(value) is not str:
        value = str.__str__(value)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fixes.add("value_surrogate")
        return _SURROGATE.sub("\ufffd", value)
    return value


def _clean_float(value: float, fixes: set[str]) -> float | None:
    if math.isfinite(value):
        return float.__float__(value)  # a subclass's own __float__ may raise
    fixes.add("value_nan" if math.isnan(value) else "value_infinity")
    return None


def _clean_int(value: int, fixes: set[str]) -> int | None:
    """An integer within the float range as is; None past it (``10**400``: ``float()`` of it raises
    OverflowError, ``math.isfinite`` too, and ``str()`` of one over 4,300 digits ValueError)."""
    value = int.__int__(value)  # a subclass's own __int__ may raise
    if _MIN_INT <= value <= _MAX_INT:
        return value
    fixes.add("value_huge_int")
    return None


def _clean_decimal(value: Decimal, fixes: set[str]) -> float | None:
    if value.is_nan():
        fixes.add("value_nan")
        return None
    fixes.add("value_decimal")
    if value == value.to_integral_value() and abs(value) < _EXACT_INT:
        return int(value)
    return _clean_float(float(value), fixes)


def _clean_datetime(value: _dt.date | _dt.time, fixes: set[str]) -> str:
    fixes.add("value_datetime")
    return value.isoformat()


def _clean_bytes(value: bytes | bytearray | memoryview, fixes: set[str]) -> str:
    fixes.add("value_bytes")
    return _clean_str(bytes(value).decode("utf-8", errors="replace"), fixes)


def _clean_uuid(value: uuid.UUID, fixes: set[str]) -> str:
    fixes.add("value_uuid")
    return str(value)


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=_COMPACT)


def _safe(value: Any, fixes: set[str], path: list[int]) -> Any:
    """The recursive worker behind ``json_safe``; ``path`` holds the ids of the enclosing containers."""
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _clean_str(value, fixes)
    if kind is int:
        return value if _MIN_INT <= value <= _MAX_INT else _clean_int(value, fixes)
    if kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else _clean_float(value, fixes)
    if len(path) >= MAX_JSON_DEPTH or id(value) in path:
        fixes.add("value_too_deep")
        return None
    path.append(id(value))
    try:
        if isinstance(value, Mapping):
            return _safe_dict(value, fixes, path)
        if kind is list or kind is tuple:
            return [_safe(item, fixes, path) for item in value]
        return _safe_other(value, fixes, path)
    except Exception:  # an object of the app's whose methods raise: this value alone is left out
        fixes.add("value_unreadable")
        return None
    finally:
        path.pop()


def _safe_dict(value: Mapping[Any, Any], fixes: set[str], path: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    odd: list[tuple[Any, Any]] = []
    for key, item in value.items():
        if type(key) is str:
            out[_clean_str(key, fixes)] = _safe(item, fixes, path)
        else:
            odd.append((key, item))
    for key, item in odd:  # non-string keys: str(key), never overwriting a real string key
        fixes.add("value_key")
        out.setdefault(_clean_str(_key_text(key), fixes), _safe(item, fixes, path))
    return out


def _safe_other(value: Any, fixes: set[str], path: list[int]) -> Any:
    """Everything that is not already a JSON type."""
    if isinstance(value, enum.Enum):
        fixes.add("value_other")
        return _safe(value.value, fixes, path)
    if isinstance(value, int):
        return _clean_int(value, fixes)
    if isinstance(value, float):
        return _clean_float(value, fixes)
    if isinstance(value, str):
        return _clean_str(value, fixes)
    handler = _HANDLERS.get(type(value))
    if handler is None:
        handler = next((h for t, h in _HANDLERS.items() if isinstance(value, t)), None)
    if handler is not None:
        return handler(value, fixes)
    if isinstance(value, (set, frozenset)):
        fixes.add("value_set")
        return sorted((_safe(item, fixes, path) for item in value), key=_sort_key)
    if isinstance(value, (list, tuple)):
        return [_safe(item, fixes, path) for item in value]
    fixes.add("value_other")
    return _clean_str(_key_text(value), fixes)


_HANDLERS: dict[type, Callable[[Any, set[str]], Any]] = {
    Decimal: _clean_decimal,
    uuid.UUID: _clean_uuid,
    _dt.datetime: _clean_datetime,
    _dt.date: _clean_datetime,
    _dt.time: _clean_datetime,
    bytes: _clean_bytes,
    bytearray: _clean_bytes,
    memoryview: _clean_bytes,
}


def json_safe(value: Any) -> tuple[Any, frozenset[str]]:
    """``value`` as plain JSON types (dict with str keys, list, str, int, float, bool, None), plus fix kinds.

    Decimal -> float (int when integral), UUID -> str, datetime/date/time -> ISO string, bytes -> UTF-8
    text (bad bytes -> U+FFFD), set -> sorted list, tuple -> list, Enum -> its value, NaN/±Infinity -> None,
    an integer beyond the float range (``10**400``) -> None, lone surrogates -> U+FFFD,
    non-string keys -> ``str(key)``, nesting deeper than 32 (or a cycle) -> None, anything else -> ``str()``;
    a value whose conversion raises (an object whose ``items()`` or ``__float__`` raises) -> None.
    The result is ``json.dumps``-able with ``allow_nan=False`` and no ``default=`` hook.
    """
    fixes: set[str] = set()
    return _safe(value, fixes, []), frozenset(fixes)
