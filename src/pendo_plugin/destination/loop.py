"""The worker's event loop: uvloop's (``PENDO_EVENT_LOOP=uvloop``, the default, where it is installed),
else an asyncio loop whose default executor keeps working while the interpreter exits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pendo_plugin.delivery.http import DaemonPool


class WorkerLoop(asyncio.SelectorEventLoop):
    """The worker's event loop: ``run_in_executor(None, ...)`` (DNS lookups)
    runs on a :class:`DaemonPool`, which keeps working while the interpreter exits."""

    def __init__(self) -> None:
        super().__init__()
        self._pool = DaemonPool()

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        return asyncio.wrap_future(self._pool.submit(func, *args), loop=self)

    def close(self) -> None:
        self._pool.close()
        super().close()


def new_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """An event loop for the worker. ``uvloop``: uvloop's where it is installed (it runs the loop and
    the socket I/O in C; its DNS lookups run on libuv's threads, which keep working while the interpreter
    exits), else a :class:`WorkerLoop`. ``asyncio``: a :class:`WorkerLoop`. uvloop cannot be imported
    once the interpreter has begun exiting (it loads the thread pool, which registers an exit hook): a
    worker first started then (the exit drain) runs on a :class:`WorkerLoop`."""
    if kind == "asyncio":
        return WorkerLoop()
    try:
        import uvloop
    except (ImportError, RuntimeError):
        return WorkerLoop()
    return uvloop.new_event_loop()
