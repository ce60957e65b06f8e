"""Celery: drain in prefork pool children, which billiard ends with ``os._exit()`` (no atexit, no
multiprocessing finalizers). Celery sends ``worker_process_shutdown`` in each child just before that.

Connected when a runtime is created in a process that has imported ``celery``, so a process that
never uses Celery imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def drain_at_process_shutdown(drain: Callable[[], None]) -> None:
    """Call ``drain`` when this Celery pool child is about to exit (connected once per process)."""
    try:
        from celery.signals import worker_process_shutdown
    except ImportError:  # a module named ``celery`` that is not Celery
        return

    def on_shutdown(**_: Any) -> None:
        drain()

    worker_process_shutdown.connect(on_shutdown, weak=False, dispatch_uid="pendo_plugin.drain")
