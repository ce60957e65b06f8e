"""Reading untrusted bytes with bounds: lines of a limited length, JSON of a limited nesting depth.

Used for everything read back from disk (spool files, exports). A line longer than the limit is
skipped while it is read, in fixed-size chunks, so memory stays bounded however long it is.
Hand-written: the standard library's ``readline(limit)`` splits a long line instead of skipping it,
and ``json`` bounds depth only by the interpreter's recursion limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64
"""JSON nested deeper than this (arrays and objects) is refused."""
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Oversized:
    """Stands for a line longer than the limit, which was skipped unread; ``size`` in bytes."""

    size: int


def lines(
    read: Callable[[int], bytes], max_line: int, chunk: int = CHUNK_BYTES
) -> Iterator[bytes | Oversized]:
    """Lines, without their ``\\n``, from ``read(n)``; a line longer than ``max_line`` bytes comes as
    :class:`Oversized`. Holds at most about twice ``max_line + chunk`` bytes."""
    pending = b""
    skipped = 0  # > 0 while skipping the rest of an oversized line
    while data := read(chunk):
        if skipped:
            end = data.find(b"\n")
            if end < 0:
                skipped += len(data)
                continue
            yield Oversized(skipped + end)
            skipped = 0
            data = data[end + 1 :]
        parts = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = parts.pop()
        for part in parts:
            yield part if len(part) <= max_line else Oversized(len(part))
        if len(pending) > max_line:
            skipped, pending = len(pending), b""
    if skipped:
        yield Oversized(skipped)
    elif pending:
        yield pending


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (a scalar is 0); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ValueError (never RecursionError) for JSON nested deeper than ``max_depth``;
    UnicodeDecodeError (a ValueError) for bytes that are not UTF-8."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    brackets = data.count(b"[") + data.count(b"{")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    if brackets > max_depth and depth(value) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return value
