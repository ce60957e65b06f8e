"""The plugin's logger, and logging a kind of problem once per process, in bounded memory.

Keys come from untrusted input too (a trait name, a flag's problem), so both what is remembered and
what is logged are bounded: at most :data:`MAX_KEYS` keys in all, and at most :data:`MAX_PER_FAMILY`
keys of one ``family`` (one line per unknown trait name, for the first 20 names of a kind). Past a bound,
one line says so and later problems of that family (or any new key) are only counted by their caller.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pendo_plugin import _fork

log = logging.getLogger("pendo_plugin")

MAX_KEYS = 1024
MAX_PER_FAMILY = 20

_FULL = "\0full"
_FULL_MESSAGE = "pendo_plugin: %d distinct problems logged; later new ones are only counted (see stats())"
_FAMILY_MESSAGE = "pendo_plugin: %d distinct problems of kind %s logged; later ones are only counted"

_seen: set[str] = set()
_families: dict[str, int] = {}  # family -> keys of it logged (bounded by MAX_KEYS as well)
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A forked child gets a fresh lock: another thread of the parent may have held this one."""
    global _lock
    _lock = threading.Lock()


_fork.register(after_in_child=_new_lock_in_child)


def log_once(key: str, level: int, message: str, *args: Any, family: str | None = None) -> None:
    """Log ``message`` the first time ``key`` is seen in this process; later calls are silent. With
    ``family``, at most :data:`MAX_PER_FAMILY` keys of that family are logged."""
    lines: list[tuple[int, str, tuple[Any, ...]]] = [(level, message, args)]
    with _lock:
        if key in _seen:
            return
        if len(_seen) >= MAX_KEYS:
            if _FULL in _seen:
                return
            key, lines = _FULL, [(logging.WARNING, _FULL_MESSAGE, (MAX_KEYS,))]
        elif family is not None:
            logged = _families.get(family, 0)
            if logged >= MAX_PER_FAMILY:
                return
            _families[family] = logged + 1
            if logged + 1 == MAX_PER_FAMILY:
                lines.append((level, _FAMILY_MESSAGE, (MAX_PER_FAMILY, family)))
        _seen.add(key)
    for line in lines:
        log.log(*line[:2], *line[2])


def forget() -> None:
    """Let every kind be logged again (tests, and a new configuration)."""
    with _lock:
        _seen.clear()
        _families.clear()
