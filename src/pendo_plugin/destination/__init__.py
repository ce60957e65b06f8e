"""The Pendo destination: a ``segment_analytics`` plugin registered through its own entry point.

A Segment client that sends starts the worker when it is created; on the app thread a message is
only appended to the delivery runtime's intake. The rollout decision, translation and HTTP all
happen in the worker. ``sync_mode`` clients get their
message delivered before the call returns. After ``os.fork()`` the child starts with a fresh
runtime and never resends what the parent had queued; it delivers its own messages when it
exits normally (atexit), including multiprocessing children (a multiprocessing finalizer) and
Celery pool children (its ``worker_process_shutdown`` signal). Under uWSGI, no thread starts before
uWSGI forks the workers (see :mod:`pendo_plugin.integrations.uwsgi`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from pendo_plugin import _fork, config, counters
from pendo_plugin.integrations import celery, uwsgi
from pendo_plugin.logs import log
from pendo_plugin.segment import sdks
from pendo_plugin.segment.hookspecs import hookimpl

_lock = threading.Lock()
_runtime: Any = None
_pid = os.getpid()
_uwsgi_exit_registered = False
_held_at_fork: Any = None  # the uWSGI master's held runtime, in a worker until uWSGI's post-fork hook
_announced = 0  # the pid that logged "pendo_plugin is live" (once per process)


def runtime() -> Any:
    """This process's delivery runtime (created on first use, re-created in a forked child)."""
    global _runtime
    current = _runtime
    if current is not None and _pid == os.getpid():
        return current
    if _pid != os.getpid():  # forked without the at-fork hooks (uWSGI forks from C): run them first
        _fork.child()
    with _lock:
        if _runtime is None:
            from pendo_plugin.destination.intake import Runtime

            _runtime = Runtime()
            _register_multiprocessing_exit()
            _register_celery_exit()
            _register_uwsgi_hooks(_runtime.held)
        return _runtime


def _register_multiprocessing_exit() -> None:
    """Drain at exit in a multiprocessing child too: those leave through ``os._exit()``, which skips
    atexit handlers, after running multiprocessing's own finalizers. Registered when the runtime is
    created, because a forked child clears the finalizer registry after the at-fork hooks ran."""
    multiprocessing_util = sys.modules.get("multiprocessing.util")
    if multiprocessing_util is not None:
        multiprocessing_util.Finalize(None, _shutdown_at_exit, exitpriority=10)


def _register_celery_exit() -> None:
    """Drain in Celery's pool children, which billiard ends with ``os._exit()``."""
    if "celery" in sys.modules:
        celery.drain_at_process_shutdown(_shutdown_at_exit)


def _register_uwsgi_hooks(held: bool) -> None:
    """Under uWSGI: drain at a worker's exit (once per process tree), and, in a process about to
    fork, start delivering after the fork."""
    global _uwsgi_exit_registered
    if "uwsgi" not in sys.modules:
        return
    if not _uwsgi_exit_registered:  # inherited by forked workers, which keep the master's hook
        uwsgi.at_exit(_shutdown_at_exit)
        _uwsgi_exit_registered = True
    if held:
        uwsgi.after_fork(_after_uwsgi_fork)


def _after_uwsgi_fork() -> None:
    """uWSGI forked this worker (or, without ``--master``, turned the loading process into worker 1):
    start delivering. What the master queued goes with worker 1's first life only."""
    global _held_at_fork
    current = _runtime
    if current is not None and _pid == os.getpid():  # no fork happened: this process queued it
        if current.held:
            current.release()
        return
    if _pid != os.getpid():  # uWSGI forked from C without Python's at-fork hooks: run them now
        _fork.child()
    held, _held_at_fork = _held_at_fork, None  # --py-call-uwsgi-fork-hooks: they ran before this hook
    if held is not None:
        runtime().release(held if uwsgi.inherits_master_queue() else None)


def _after_fork_in_child() -> None:
    """Forget the parent's queue and worker: the child starts afresh and never resends them. A queue
    held for after a uWSGI fork is kept aside for :func:`_after_uwsgi_fork`, which gives it to worker 1."""
    global _runtime, _pid, _lock, _held_at_fork
    _held_at_fork = _runtime if _runtime is not None and _runtime.held else None
    _lock = threading.Lock()
    _runtime = None
    _pid = os.getpid()


def _shutdown_at_exit() -> None:
    current = _runtime
    if current is not None and _pid == os.getpid():
        current.shutdown(config.current().shutdown_timeout)


_fork.register(after_in_child=_after_fork_in_child)


def _announce(client: Any, settings: config.Settings) -> None:
    """One INFO line per process when the plugin goes live: the SDK, the mode and the rollout."""
    global _announced
    if _announced == os.getpid():
        return
    _announced = os.getpid()
    sdk = sdks.sdk_of(type(client))
    name = sdk.distribution if sdk is not None else type(client).__module__
    with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
        name += " " + metadata.version(name)
    rules = settings.rollout
    redis = config.redacted_url(settings.redis_url)
    fleet = f"fleet mode on {redis}" if redis else "no fleet mode"
    log.info(
        "pendo_plugin is live in this process (pid %d): SDK %s, mode %s, %s, rollout %s%% of %ss%s",
        _announced, name, settings.mode, fleet, f"{rules.percent:g}", rules.unit,
        ", shadow (nothing is sent)" if settings.shadow else "",
    )


@hookimpl
def segment_startup(client: Any) -> None:
    """Load the settings and start the worker now, so the app's first message pays for neither: the
    worker's thread start and imports happen while the app creates its client, not in its first call.
    Nothing starts when the plugin is off, nor in a process about to fork from C (uWSGI's master)."""
    settings = config.current()
    if settings.active:
        runtime().prepare()
        _announce(client, settings)
    else:
        config.warn_no_secret(settings)


@hookimpl
def segment_message(client: Any, message: Mapping[str, Any]) -> None:
    """Queue the message for Pendo (or deliver it now for a ``sync_mode`` client)."""
    settings = config.current()
    if not settings.active:
        if settings.problems:
            counters.record("skipped", "misconfigured")
        elif not settings.rollout.enabled:
            counters.record("rollout", "off_kill_switch")
        else:  # no secret at all: one warning names the variable
            config.warn_no_secret(settings)
            counters.record("skipped", "no_secret", counters.call_kind(message.get("type")))
        return
    current = runtime()
    if _announced != _pid:
        _announce(client, settings)
    if getattr(client, "sync_mode", False) and not current.held:  # held: queued for after the fork
        current.deliver_now(message, settings.flush_timeout)
    else:
        current.submit(message, settings.queue_size)


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
