"""Process-wide counters: messages seen, sent, skipped and dropped, by reason."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from pendo_plugin import _fork

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (e.g. ``"sent:track"``, ``"dropped:queue_full"``)."""
    with _lock:
        _counts[name] += amount


def add(amounts: Mapping[str, int]) -> None:
    """Add several counts at once (a slice's worth), under one lock."""
    if amounts:
        with _lock:
            _counts.update(amounts)


def snapshot() -> dict[str, int]:
    """A copy of every counter, sorted by name."""
    with _lock:
        return dict(sorted(_counts.items()))


def reset() -> None:
    """Set every counter back to zero (tests, and a forked child)."""
    with _lock:
        _counts.clear()


def after_fork() -> None:
    """In a forked child: a fresh lock (the parent's may have been held) and counters from zero."""
    global _lock
    _lock = threading.Lock()
    _counts.clear()


_fork.register(after_in_child=after_fork)
