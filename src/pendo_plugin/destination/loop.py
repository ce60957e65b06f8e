"""The worker's event loop: uvloop's with the ``fast`` extra, else an asyncio loop whose default executor
keeps working while the interpreter exits."""

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


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop for the worker: uvloop's with the ``fast`` extra (its DNS lookups run on libuv's
    threads, which keep working while the interpreter exits), else a :class:`WorkerLoop`. uvloop cannot
    be imported once the interpreter has begun exiting (it loads the thread pool, which registers an exit
    hook): a worker first started then (the exit drain) runs on a :class:`WorkerLoop`."""
    try:
        import uvloop
    except (ImportError, RuntimeError):
        return WorkerLoop()
    return uvloop.new_event_loop()
