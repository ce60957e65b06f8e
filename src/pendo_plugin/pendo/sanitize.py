"""Pendo's rules on names and mappings, applied before anything is sent.

Pure functions: no I/O, no logging, no global mutable state but two bounded memos of names already
found valid (they change no result, only skip a check). Every function returns the repaired value
together with short, stable "fix" strings naming the kinds of repair made, so the caller can count them.
The rules, each with an example, are in ``docs/mapping.md``; single values are made JSON-safe by
:mod:`pendo_plugin.pendo.jsonsafe` (``json_safe`` is importable from here too).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from pendo_plugin.pendo.jsonsafe import _COMPACT, _MAX_INT, _MIN_INT, _clean_str, _key_text, _safe, json_safe

__all__ = [
    "MAX_FIELD_NAME_LENGTH",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_PROPERTIES_BYTES",
    "MAX_PROPERTY_NAME_LENGTH",
    "clean_field_name",
    "clean_metadata_values",
    "clean_properties",
    "clean_property_name",
    "is_valid_field_name",
    "is_valid_property_name",
    "json_safe",
    "properties_size",
]

MAX_PROPERTY_NAME_LENGTH = 32
"""Pendo: a Track Event property name has at most 32 characters."""
MAX_FIELD_NAME_LENGTH = 128
"""Our cap on metadata field names (Pendo documents none; keeps hostile keys bounded)."""
MAX_PROPERTIES_BYTES = 512
"""Pendo flags a Track Event whose properties JSON is larger than this."""
MAX_METADATA_VALUE_CHARS = 1500
"""Longer metadata text values are cut to this (Pendo recommends keeping them under 1,500 characters)."""
MAX_FLATTEN_DEPTH = 3
"""Nested objects are flattened up to ``a_b_c``; anything nested deeper becomes a JSON string."""
MIN_TRUNCATED_CHARS = 32
"""The 512-byte rule never shortens a string below this many characters; it drops the property instead."""
UNNAMED = "unnamed"
"""The name given to a key that has no usable character at all (``""``, ``"  "``, ``"???"``)."""

_BAD_RUN = re.compile(r"[^A-Za-z0-9_]+")
_BAD_EDGES = re.compile(r"^[^A-Za-z0-9_]+|[^A-Za-z0-9_]+$")


# --------------------------------------------------------------------------------------------- names


def is_valid_property_name(name: str) -> bool:
    """True if ``name`` obeys Pendo's Track Event property rule.

    Only ASCII letters, digits and ``_``; 1 to 32 characters; not starting with a digit; not both starting
    and ending with ``__``.
    """
    # For an ASCII string, isidentifier() is exactly [A-Za-z_][A-Za-z0-9_]*, and fast.
    return (
        type(name) is str
        and len(name) <= MAX_PROPERTY_NAME_LENGTH
        and name.isascii()
        and name.isidentifier()
        and not (name.startswith("__") and name.endswith("__"))
    )


def is_valid_field_name(name: str) -> bool:
    """True if ``name`` is a valid metadata field name: ``[A-Za-z_][A-Za-z0-9_]*``, at most 128 characters."""
    return type(name) is str and len(name) <= MAX_FIELD_NAME_LENGTH and name.isascii() and name.isidentifier()


def _ascii_word(name: str) -> str:
    """Accents dropped (``é`` -> ``e``), runs of other characters -> one ``_`` (none at either end)."""
    if not name.isascii():
        name = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    name = _BAD_RUN.sub("_", _BAD_EDGES.sub("", name))
    if not name:
        return UNNAMED
    return "_" + name if name[0].isdigit() else name


def clean_property_name(name: str) -> str:
    """``name`` made valid for Pendo Track Event properties (see ``is_valid_property_name``).

    ``"Plan Name"`` -> ``"Plan_Name"``, ``"1st"`` -> ``"_1st"``, ``"__x__"`` -> ``"__x_"``, ``""`` ->
    ``"unnamed"``; longer than 32 characters -> cut to 32. Valid names are returned unchanged.
    """
    if is_valid_property_name(name):
        return name
    name = _ascii_word(name)[:MAX_PROPERTY_NAME_LENGTH]
    if name.startswith("__") and name.endswith("__"):
        name = name.rstrip("_") + "_"
    return name


def clean_field_name(name: str) -> str:
    """``name`` made valid as a metadata field name (same cleaning as properties, up to 128 characters)."""
    if is_valid_field_name(name):
        return name
    return _ascii_word(name)[:MAX_FIELD_NAME_LENGTH]


def _with_suffix(base: str, n: int, max_len: int) -> str:
    suffix = f"_{n}"
    return base[: max_len - len(suffix)] + suffix


# -------------------------------------------------------------------------------- flat, clean mappings


_Path = tuple[Any, ...]


def _to_json_text(value: Any, fixes: set[str]) -> str:
    return json.dumps(_safe(value, fixes, []), ensure_ascii=False, separators=_COMPACT, allow_nan=False)


def _flatten(props: Mapping[Any, Any], fixes: set[str]) -> list[tuple[_Path, Any]]:
    """``[(path, leaf)]``: nested mappings flattened to depth 3, leaves JSON-safe scalars or JSON text.

    Values that only become None through repair (NaN, Infinity) are left out; an explicit None is kept.
    """
    out: list[tuple[_Path, Any]] = []
    stack: list[tuple[_Path, Mapping[Any, Any]]] = [((), props)]
    while stack:
        prefix, mapping = stack.pop()
        for key, value in mapping.items():
            path = (*prefix, key)
            if isinstance(value, Mapping):
                if len(path) < MAX_FLATTEN_DEPTH:
                    fixes.add("nested_flattened")
                    stack.append((path, value))
                    continue
                fixes.add("nested_stringified")
                out.append((path, _to_json_text(value, fixes)))
                continue
            _add_leaf(out, path, value, fixes)
    return out


def _add_leaf(out: list[tuple[_Path, Any]], path: _Path, value: Any, fixes: set[str]) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None or (kind is int and _MIN_INT <= value <= _MAX_INT):
        out.append((path, value if kind is not str or value.isascii() else _clean_str(value, fixes)))
        return
    if kind is float and math.isfinite(value):
        out.append((path, value))
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        fixes.add("list_stringified")
        out.append((path, _to_json_text(value, fixes)))
        return
    safe = _safe(value, fixes, [])
    if safe is None:
        fixes.add("value_dropped")
        return
    out.append((path, _to_json_text(safe, fixes) if isinstance(safe, (dict, list)) else safe))


def _path_key(path: _Path) -> tuple[tuple[str, str], ...]:
    return tuple((_key_text(k), type(k).__name__) for k in path)


def _assign_names(
    items: list[tuple[_Path, Any]], cleaner: Callable[[str], str], max_len: int, fixes: set[str]
) -> dict[str, Any]:
    """Cleaned, unique names for every flattened item, independent of the input's order.

    Per cleaned name, the winner is the item whose raw name already equals it, else the first by
    (path length, path text); the others get ``_2``, ``_3``... in that same order.
    """
    raw = ["_".join(_key_text(k) for k in path) for path, _ in items]
    clean = [cleaner(r) for r in raw]
    order = sorted(range(len(items)), key=lambda i: (clean[i], raw[i] != clean[i], len(items[i][0]),
                                                     _path_key(items[i][0])))
    names: dict[int, str] = {}
    taken: set[str] = set()
    losers: list[int] = []
    for i in order:
        if clean[i] in taken:
            losers.append(i)
        else:
            taken.add(clean[i])
            names[i] = clean[i]
        if raw[i] != clean[i]:
            fixes.add("property_renamed")
    for i in losers:
        fixes.add("property_name_collision")
        n = 2
        while (candidate := _with_suffix(clean[i], n, max_len)) in taken:
            n += 1
        taken.add(candidate)
        names[i] = candidate
    return {names[i]: items[i][1] for i in sorted(names, key=lambda i: names[i])}


_UNKNOWN_SIZE = 1 << 30
_BIG_INT = 10**17
MAX_KNOWN_NAMES = 4096
"""The bound of each memo of names already found valid (emptied when full)."""
_known_property_names: set[str] = set()
_known_field_names: set[str] = set()


def _flat_clean_bound(props: Mapping[Any, Any], valid: Callable[[str], bool], known: set[str]) -> int:
    """Fast path: -1 unless every key is a valid name and every value a plain JSON scalar (finite float,
    int within the float range, ASCII str); else an upper bound of the compact JSON size in bytes
    (``_UNKNOWN_SIZE`` if no cheap bound).

    ``known`` is a memo of plain ``str`` names ``valid`` accepted: a hit skips the check.
    """
    bound = 2
    for key, value in props.items():
        kind = type(value)
        if type(key) is not str or key not in known:
            if not valid(key):
                return -1
            if len(known) >= MAX_KNOWN_NAMES:
                known.clear()
            known.add(key)
        bound += len(key) + 4  # quotes, colon, comma
        if kind is str:
            if not value.isascii():
                return -1
            bound += 6 * len(value) + 2  # every character escaped, at worst
        elif kind is float:
            if not math.isfinite(value):
                return -1
            bound += 24
        elif kind is int:
            if not _MIN_INT <= value <= _MAX_INT:
                return -1
            bound += 19 if -_BIG_INT < value < _BIG_INT else _UNKNOWN_SIZE
        elif kind is bool or value is None:
            bound += 5
        else:
            return -1
    return bound


def _clean_mapping(
    props: Mapping[Any, Any],
    cleaner: Callable[[str], str],
    valid: Callable[[str], bool],
    known: set[str],
    max_len: int,
) -> tuple[dict[str, Any], set[str], int]:
    """``(clean mapping, fixes, upper bound of its JSON size or _UNKNOWN_SIZE)``."""
    fixes: set[str] = set()
    bound = _flat_clean_bound(props, valid, known)
    if bound >= 0:
        return dict(props), fixes, bound
    items = _flatten(props, fixes)
    return _assign_names(items, cleaner, max_len, fixes), fixes, _UNKNOWN_SIZE


# ------------------------------------------------------------------------------------ 512-byte rule


def properties_size(props: Mapping[str, Any]) -> int:
    """Size in bytes of the properties JSON as Pendo measures it here: compact separators, UTF-8."""
    return len(json.dumps(props, ensure_ascii=False, separators=_COMPACT, allow_nan=False).encode("utf-8"))


def _json_len(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=_COMPACT).encode("utf-8"))


def _truncate_to(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` (at least ``MIN_TRUNCATED_CHARS``) whose JSON fits ``max_bytes``."""
    lo, hi = MIN_TRUNCATED_CHARS, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _json_len(text[:mid]) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _fit(props: dict[str, Any], limit: int, fixes: set[str]) -> dict[str, Any]:
    """Apply the size rule: shorten the longest strings first, then drop the largest properties."""
    sizes = {k: _json_len(k) + 1 + _json_len(v) for k, v in props.items()}
    total = 1 + sum(sizes.values()) + max(len(sizes), 1)  # braces and commas

    def by_size(k: str) -> tuple[int, str]:
        return (sizes[k], k)  # sorted in reverse: largest first, ties by name from the end of the alphabet

    fixes.add("properties_too_large")
    long_strings = [k for k, v in props.items() if isinstance(v, str) and len(v) > MIN_TRUNCATED_CHARS]
    for key in sorted(long_strings, key=by_size, reverse=True):
        if total <= limit:
            break
        value_budget = _json_len(props[key]) - (total - limit)
        props[key] = _truncate_to(props[key], value_budget)
        new_size = _json_len(key) + 1 + _json_len(props[key])
        total += new_size - sizes[key]
        sizes[key] = new_size
        fixes.add("property_truncated")
    for key in sorted(sizes, key=by_size, reverse=True):
        if total <= limit:
            break
        total -= sizes.pop(key) + (1 if sizes else 0)
        del props[key]
        fixes.add("property_dropped")
    return props


def clean_properties(props: Mapping[Any, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Track Event properties that satisfy every Pendo rule, plus the sorted kinds of fix made.

    Nested mappings flattened (``{"a": {"b": 1}}`` -> ``{"a_b": 1}``, at most 3 levels, deeper -> JSON text),
    lists/sets -> JSON text, NaN/Infinity dropped, other values via ``json_safe``, names cleaned with
    ``clean_property_name`` (collisions -> ``_2``, ``_3``, in an order independent of the input's), and the
    properties JSON kept within 512 bytes (longest strings shortened first, then largest properties dropped).
    """
    out, fixes, bound = _clean_mapping(props, clean_property_name, is_valid_property_name,
                                       _known_property_names, MAX_PROPERTY_NAME_LENGTH)
    if bound > MAX_PROPERTIES_BYTES and properties_size(out) > MAX_PROPERTIES_BYTES:
        out = _fit(out, MAX_PROPERTIES_BYTES, fixes)
    return out, tuple(sorted(fixes)) if fixes else ()


def clean_metadata_values(values: Mapping[Any, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Visitor/account metadata values: the same rules as ``clean_properties`` without the 512-byte limit;
    text values (lists and objects too, as JSON text) longer than ``MAX_METADATA_VALUE_CHARS`` are cut to it
    (fix ``metadata_value_truncated``).

    Field names are cleaned with ``clean_field_name`` (up to 128 characters).
    """
    out, fixes, _ = _clean_mapping(values, clean_field_name, is_valid_field_name, _known_field_names,
                                   MAX_FIELD_NAME_LENGTH)
    for name, value in out.items():
        if type(value) is str and len(value) > MAX_METADATA_VALUE_CHARS:
            out[name] = value[:MAX_METADATA_VALUE_CHARS]
            fixes.add("metadata_value_truncated")
    return out, tuple(sorted(fixes))
