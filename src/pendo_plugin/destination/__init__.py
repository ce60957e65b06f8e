"""The Pendo destination: a ``segment_analytics`` plugin registered through its own entry point.

On the app thread it only appends the message to the delivery runtime's intake; the rollout
decision, translation and HTTP all happen in the worker. ``sync_mode`` clients get their
message delivered before the call returns. After ``os.fork()`` the child starts with a fresh
runtime and never resends what the parent had queued; it delivers its own messages when it
exits normally (atexit), including multiprocessing children (a multiprocessing finalizer).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pendo_plugin import _fork, config, counters
from pendo_plugin.segment.hookspecs import hookimpl

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
            from pendo_plugin.destination.intake import Runtime

            _runtime = Runtime()
            _pid = os.getpid()
            _register_multiprocessing_exit()
        return _runtime


def _register_multiprocessing_exit() -> None:
    """Drain at exit in a multiprocessing child too: those leave through ``os._exit()``, which skips
    atexit handlers, after running multiprocessing's own finalizers. Registered when the runtime is
    created, because a forked child clears the finalizer registry after the at-fork hooks ran."""
    multiprocessing_util = sys.modules.get("multiprocessing.util")
    if multiprocessing_util is not None:
        multiprocessing_util.Finalize(None, _shutdown_at_exit, exitpriority=10)


def _after_fork_in_child() -> None:
    """Forget the parent's queue and worker: the child starts afresh and never resends them."""
    global _runtime, _pid, _lock
    _lock = threading.Lock()
    _runtime = None
    _pid = os.getpid()


def _shutdown_at_exit() -> None:
    current = _runtime
    if current is not None and _pid == os.getpid():
        current.shutdown(config.current().shutdown_timeout)


_fork.register(after_in_child=_after_fork_in_child)


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
    """Wait until this process's own Pendo queue is drained (or ``timeout`` passes).

    Unlike ``pendo_plugin.flush()`` it does not wait for a replay of the spool (events an earlier
    process left), so the app's ``analytics.flush()`` never waits on an old backlog.
    """
    if _runtime is not None and _pid == os.getpid():
        _runtime.flush(timeout, replay_spool=False)


@hookimpl
def segment_shutdown(client: Any, timeout: float) -> None:
    """Drain within ``timeout``, leave the rest in the spool, stop the worker."""
    if _runtime is not None and _pid == os.getpid():
        _runtime.shutdown(timeout)
