"""gevent: under ``monkey.patch_all()`` a ``threading.Thread`` is a greenlet on the app's hub, so the
worker's first-use imports (asyncio, the HTTP client, the translation code) and its CPU work would stall
every request of that process. The worker runs on a real OS thread instead, started with the
original ``_thread.start_new_thread`` (as gevent's own thread pool does); gevent's patched locks and
events work across native threads, and the worker's loop waits in gevent's selector on a hub of its
own thread.

Looked up in ``sys.modules`` only: a process that does not use gevent imports nothing from it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def patched_threading() -> bool:
    """Whether gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:
        return False


class NativeThread:
    """A real OS thread with the parts of ``threading.Thread`` the runtime uses."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        from gevent import monkey

        self.name = name
        self._target = target
        self._start_new: Any = monkey.get_original("_thread", "start_new_thread")
        self._get_ident: Any = monkey.get_original("_thread", "get_ident")
        self._running: Any = monkey.get_original("_thread", "allocate_lock")()
        self.ident: int | None = None

    def start(self) -> None:
        """Start the thread (raises RuntimeError if the interpreter cannot start one)."""
        self._running.acquire()
        try:
            self._start_new(self._bootstrap, ())
        except BaseException:
            self._running.release()
            raise

    def _bootstrap(self) -> None:
        self.ident = self._get_ident()
        try:
            self._target()
        finally:
            self._running.release()

    def is_alive(self) -> bool:
        """Whether the thread has not finished yet."""
        return bool(self._running.locked())

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to finish."""
        if self._running.acquire(timeout=timeout):
            self._running.release()

    def is_current(self) -> bool:
        """Whether the caller runs on this thread."""
        return self.ident == self._get_ident()
