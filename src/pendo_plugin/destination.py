"""The Pendo destination: a ``segment_analytics`` plugin registered through its own entry point.

On the app thread it only appends the message to the delivery runtime's intake; the rollout
decision, translation and HTTP all happen in the worker. ``sync_mode`` clients get their
message delivered before the call returns. After ``os.fork()`` the child starts with a fresh
runtime and never resends what the parent had queued.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.hookspecs import hookimpl

_lock = threading.Lock()
_runtime: Any = None
_pid = os.getpid()


def runtime() -> Any:
    """This process's delivery runtime (created on first use, re-created in a forked child)."""
    global _runtime, _pid
    current = _runtime
    if current is not None and _pid == os.getpid():
        return current
    with _lock:
        if _runtime is None or _pid != os.getpid():
            from pendo_plugin.delivery.runtime import Runtime

            _runtime = Runtime()
            _pid = os.getpid()
        return _runtime


def _after_fork_in_child() -> None:
    """Forget the parent's queue and worker; drain ours at exit even under multiprocessing."""
    global _runtime, _pid
    _runtime = None
    _pid = os.getpid()
    counters.after_fork()
    multiprocessing_util = sys.modules.get("multiprocessing.util")
    if multiprocessing_util is not None:
        # multiprocessing's children leave through os._exit(), which skips atexit handlers.
        multiprocessing_util.Finalize(None, _shutdown_at_exit, exitpriority=10)


def _shutdown_at_exit() -> None:
    current = _runtime
    if current is not None:
        current.shutdown(config.current().shutdown_timeout)


os.register_at_fork(after_in_child=_after_fork_in_child)


@hookimpl
def segment_message(client: Any, message: Mapping[str, Any]) -> None:
    """Queue the message for Pendo (or deliver it now for a ``sync_mode`` client)."""
    settings = config.current()
    if not settings.active:
        if settings.problems:
            counters.incr("skipped:misconfigured")
        else:
            counters.incr("rollout:off:kill_switch" if not settings.rollout.enabled else "skipped:no_secret")
        return
    if getattr(client, "sync_mode", False):
        runtime().deliver_now(message, settings.flush_timeout)
    else:
        runtime().submit(message, settings.queue_size)


@hookimpl
def segment_flush(client: Any, timeout: float) -> None:
    """Wait until Pendo's queue is drained (or ``timeout`` passes)."""
    if _runtime is not None and _pid == os.getpid():
        _runtime.flush(timeout)


@hookimpl
def segment_shutdown(client: Any, timeout: float) -> None:
    """Drain within ``timeout``, leave the rest in the spool, stop the worker."""
    if _runtime is not None and _pid == os.getpid():
        _runtime.shutdown(timeout)
