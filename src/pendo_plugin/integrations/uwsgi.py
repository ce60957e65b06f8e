"""uWSGI: never start the worker thread in a process that is about to fork.

Without ``--lazy-apps`` uWSGI imports the app in its master (or, without ``--master``, in the
process that becomes worker 1) and then forks the workers from C: Python's at-fork hooks do not
run, and a thread started before the fork (holding the GIL or a lock at that instant) deadlocks
every worker. So while uWSGI has not forked yet, the runtime only queues messages; uWSGI's
post-fork hook then starts the worker thread in each worker.

What the master queued before the fork (import-time events) is delivered exactly once: by worker 1
in its first life. Without ``--master`` that is the loading process itself (no fork happened);
with ``--master`` it is the first fork of worker 1, which adopts the inherited queue. Every other
worker, and worker 1 when uWSGI respawns it, drops its inherited copy.

At exit a worker drains through ``uwsgi.atexit``, which uWSGI calls before Python's atexit
handlers: those include the Segment client's ``join()``, which never returns in a worker whose
client was created in the master (its consumer thread was not forked), and would stop the drain.

This module imports nothing: ``uwsgi`` exists only inside a uWSGI process, and is looked up in
``sys.modules``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _uwsgi() -> Any:
    return sys.modules.get("uwsgi")


def before_fork() -> bool:
    """True in the uWSGI master, or in the process that loads the app before uWSGI forks the workers.

    Mules and spoolers are not held: they do not fork further.
    """
    uwsgi = _uwsgi()
    if uwsgi is None:
        return False
    try:
        return bool(uwsgi.worker_id() == 0 and uwsgi.mule_id() == 0 and not uwsgi.i_am_the_spooler())
    except Exception:  # an embedding that lacks these calls: behave as outside uWSGI
        return False


def inherits_master_queue() -> bool:
    """True in worker 1's first life after uWSGI forked it from the master: the one worker that
    delivers what the master queued before the fork."""
    uwsgi = _uwsgi()
    if uwsgi is None:
        return False
    try:
        if uwsgi.worker_id() != 1:
            return False
        return any(worker["id"] == 1 and worker["respawn_count"] == 0 for worker in uwsgi.workers())
    except Exception:
        return False


def after_fork(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every process uWSGI forks (and in worker 1 without ``--master``).

    With ``--master`` through ``uwsgidecorators.postfork``, so an app that imports
    ``uwsgidecorators`` later keeps the hook; without it (``uwsgidecorators`` refuses to load then)
    by chaining ``uwsgi.post_fork_hook``.
    """
    uwsgi = _uwsgi()
    if uwsgi is None:
        return
    if uwsgi.masterpid():
        try:
            import uwsgidecorators
        except ImportError:
            pass
        else:
            uwsgidecorators.postfork(hook)
            return
    previous = getattr(uwsgi, "post_fork_hook", None)

    def chained() -> None:
        hook()
        if previous is not None:
            previous()

    uwsgi.post_fork_hook = chained


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when a uWSGI worker ends, before Python's atexit handlers (``uwsgi.atexit``)."""
    uwsgi = _uwsgi()
    if uwsgi is None:
        return
    previous = getattr(uwsgi, "atexit", None)

    def chained() -> None:
        hook()
        if previous is not None:
            previous()

    uwsgi.atexit = chained
