"""The one place the package hooks ``os.fork()``: modules register what must happen around a fork here,
and a single ``os.register_at_fork`` runs it (``before`` in reverse order of registration, the others in
order, as ``os.register_at_fork`` itself does). Mostly fresh locks in the child: a lock another thread of
the parent held at the fork would stay held forever in the child."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

Handler = Callable[[], None]

_before: list[Handler] = []
_after_in_parent: list[Handler] = []
_after_in_child: list[Handler] = []


def register(
    *,
    before: Handler | None = None,
    after_in_parent: Handler | None = None,
    after_in_child: Handler | None = None,
) -> None:
    """Run these around every later ``os.fork()`` of this process."""
    for handlers, handler in ((_before, before), (_after_in_parent, after_in_parent),
                              (_after_in_child, after_in_child)):
        if handler is not None:
            handlers.append(handler)


def child() -> None:
    """Run the after-fork-in-child handlers now, in a process forked without Python's at-fork hooks
    (uWSGI forks its workers from C)."""
    _run(_after_in_child)


def _run(handlers: list[Handler]) -> None:
    for handler in handlers:
        try:
            handler()
        except Exception as exc:  # like os.register_at_fork: report it, run the others
            sys.stderr.write(f"pendo_plugin: at-fork handler {handler.__qualname__} failed: {exc!r}\n")


os.register_at_fork(
    before=lambda: _run(_before[::-1]),
    after_in_parent=lambda: _run(_after_in_parent),
    after_in_child=lambda: _run(_after_in_child),
)
