"""The plugin's logger, and logging a kind of problem once per process."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pendo_plugin import _fork

log = logging.getLogger("pendo_plugin")

_seen: set[str] = set()
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A forked child gets a fresh lock: another thread of the parent may have held this one."""
    global _lock
    _lock = threading.Lock()


_fork.register(after_in_child=_new_lock_in_child)


def log_once(key: str, level: int, message: str, *args: Any) -> None:
    """Log ``message`` the first time ``key`` is seen in this process; later calls are silent."""
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    log.log(level, message, *args)


def forget() -> None:
    """Let every kind be logged again (tests, and a new configuration)."""
    with _lock:
        _seen.clear()
