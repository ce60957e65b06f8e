"""The delivery runtime as the app sees it: a bounded intake the app thread appends to, and the
worker thread (see :mod:`pendo_plugin.destination.worker`) it starts.

The app thread's whole cost is a length check and a ``deque.append`` (atomic under the GIL): no
lock, no syscall, no translation. This module imports only light standard-library modules, so
the app's first ``track()`` does not pay for asyncio, aiohttp or the translation code: the worker
thread imports those itself.

It imports them while holding ``_import_guard``, and ``os.fork()`` waits for that guard (for at
most ``IMPORT_WAIT`` seconds). Otherwise a fork in the middle of the worker's imports would leave
the child a half-initialised module in ``sys.modules``, imported by a thread the child does not
have, and the child's own worker would fail on it. ``concurrent.futures.thread`` (which asyncio imports)
is imported here, on the app's thread, for that reason too: it registers an at-fork pair of its own
(``acquire`` before, ``release`` after). Imported by the worker while a fork waits for the guard, its
``release`` would run after that fork without its ``acquire``, and the app's stderr would show
"Exception ignored ... RuntimeError: release unlocked lock" (0.8 ms once per process, -X importtime).

A runtime created where uWSGI is about to fork from C (its master, no ``--lazy-apps``) is *held*:
it queues but starts no thread until :meth:`Runtime.release` (see :mod:`pendo_plugin.integrations.uwsgi`).
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (its at-fork pair: see the module's docstring)
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pendo_plugin import _fork, config, counters
from pendo_plugin.destination.queues import Intake
from pendo_plugin.integrations import gevent, uwsgi
from pendo_plugin.logs import log, log_once

if TYPE_CHECKING:
    import asyncio

    from pendo_plugin.destination.route import Router
    from pendo_plugin.destination.worker import Worker

IMPORT_WAIT = 5.0
READY_WAIT = 10.0

_NOT_RUN = object()
_import_guard = threading.Lock()
_fork_holds_guard = False


def _before_fork() -> None:
    global _fork_holds_guard
    _fork_holds_guard = _import_guard.acquire(timeout=IMPORT_WAIT)


def _after_fork_in_parent() -> None:
    global _fork_holds_guard
    if _fork_holds_guard:
        _fork_holds_guard = False
        _import_guard.release()


def _after_fork_in_child() -> None:
    global _import_guard, _fork_holds_guard
    _import_guard = threading.Lock()
    _fork_holds_guard = False


_fork.register(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def new_thread(target: Callable[[], None]) -> threading.Thread | gevent.NativeThread:
    """The worker's thread: a real OS thread, also where gevent has patched ``threading``."""
    if gevent.patched_threading():
        return gevent.NativeThread(target, "pendo-plugin-worker")
    return threading.Thread(target=target, name="pendo-plugin-worker", daemon=True)


def is_current(thread: threading.Thread | gevent.NativeThread) -> bool:
    """Whether the caller runs on ``thread``."""
    if isinstance(thread, threading.Thread):
        return thread is threading.current_thread()
    return thread.is_current()


class Runtime:
    """Owns the intake queue and the worker thread; everything else happens in the worker."""

    def __init__(self, router: Router | None = None) -> None:
        self.intake = Intake(router=router)  # the worker creates a router if none is given
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | gevent.NativeThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._ready = threading.Event()
        self._broken = False  # the worker cannot even start (e.g. a dependency fails to import)
        self.held = uwsgi.before_fork()  # a process about to fork from C: queue, start no thread

    @property
    def router(self) -> Router | None:
        """The worker's router (tests may swap it to forget what it remembered)."""
        return self.intake.router

    @router.setter
    def router(self, router: Router | None) -> None:
        self.intake.router = router

    # ----- app thread -----------------------------------------------------------------------

    def submit(self, message: Mapping[str, Any], capacity: int) -> None:
        """Hand one message to the worker; never blocks. Overflow goes to the spool, else is counted."""
        intake = self.intake
        if len(intake.live) < capacity:
            intake.live.append(message)
        elif len(intake.overflow) < capacity:
            intake.overflow.append(message)
        else:
            counters.record("dropped", "queue_full")
        if self._thread is None:
            self.prepare()

    def prepare(self) -> None:
        """Start the worker if it is not running, without waiting for it (not when held or broken)."""
        if self._thread is None and not self._broken and not self.held:
            self.start(wait=False)

    def release(self, inherited: Runtime | None = None) -> None:
        """Lift the hold (the fork happened), take over ``inherited``'s queue, start if anything waits."""
        if inherited is not None:
            self.intake.live.extend(inherited.intake.live)
            self.intake.overflow.extend(inherited.intake.overflow)
        self.held = False
        if self.intake.live or self.intake.overflow:
            self.start(wait=False)

    def start(self, *, wait: bool = True) -> None:
        """Start the worker thread if it is not running (``wait``: until its loop is ready)."""
        if self.held:
            return
        with self._start_lock:
            if self._thread is None:
                self._ready.clear()
                thread = new_thread(self._run)
                try:
                    thread.start()
                except RuntimeError as exc:  # e.g. "can't create new thread at interpreter shutdown"
                    log_once("worker-start", logging.ERROR, "pendo_plugin: cannot start the worker: %s", exc)
                    return
                self._thread = thread
        if wait:
            self._ready.wait(READY_WAIT)

    def _call(self, coroutine_factory: Callable[[Worker], Any], timeout: float) -> Any:
        """Run a worker coroutine on its loop and wait for it; ``_NOT_RUN`` if the worker is not
        there, None if it did not finish within ``timeout``."""
        import asyncio
        from concurrent.futures import TimeoutError as FutureTimeout

        self.start()
        loop, thread, worker = self._loop, self._thread, self._worker
        if loop is None or worker is None or thread is None or not thread.is_alive():
            return _NOT_RUN
        if is_current(thread):
            return _NOT_RUN
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine_factory(worker), loop)
        except RuntimeError:  # the loop closed meanwhile
            return _NOT_RUN
        try:
            return future.result(timeout)
        except FutureTimeout:
            return None

    def flush(self, timeout: float, *, replay_spool: bool = True) -> bool:
        """Wait until everything queued so far was delivered, refused for good, dropped or given up on
        for now (then it waits in the spool), waiting out the retries and Retry-After pauses that end
        within ``timeout``. ``replay_spool``: also replay what waits in the spool (an earlier process's
        events) and wait for that; else do not wait for a replay under way. False if the time ran out
        first, or what is left can only be retried after it (it goes on in the background)."""
        return (
            self._call(
                lambda worker: worker.drain(timeout, replay_spool=replay_spool, replays=replay_spool),
                timeout + 1.0,
            )
            is True
        )

    def shutdown(self, timeout: float) -> bool:
        """Deliver what fits in ``timeout`` seconds, spool the rest, stop the worker."""
        if self._thread is None and not (self.intake.live or self.intake.overflow):
            return True
        if self.held:  # the uWSGI master: what it queued is worker 1's to deliver
            return False
        result = self._call(lambda worker: worker.shutdown(timeout), timeout + 5.0)
        thread = self._thread
        if thread is not None and not is_current(thread):
            thread.join(2.0)
        with self._start_lock:
            alive = thread is not None and thread.is_alive()
            self._thread = None
            self._loop = None
            self._worker = None
        if not alive and (self.intake.live or self.intake.overflow):
            self._spool_leftovers()  # the worker is gone: persist what it never took, from here
        return result is True

    def deliver_now(self, message: Mapping[str, Any], timeout: float) -> None:
        """Route and send one message before returning (the SDK's ``sync_mode``)."""
        self._call(lambda worker: worker.deliver_now(message), timeout)

    def _spool_leftovers(self) -> None:
        """Route the intake on the calling thread and write it to the spool unsent (worker not running)."""
        from pendo_plugin.destination.leftovers import spool_unrouted

        live, overflow = self.intake.live, self.intake.overflow
        messages = [live.popleft() for _ in range(len(live))]
        messages += [overflow.popleft() for _ in range(len(overflow))]
        spool_unrouted(self.intake, messages, config.current())

    # ----- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with _import_guard:
                from pendo_plugin.destination.loop import new_loop
                from pendo_plugin.destination.worker import Worker

                loop = new_loop(config.current().event_loop)
                worker = Worker(self.intake)
        except Exception as exc:
            log.error("pendo_plugin: worker could not start: %s: %s", type(exc).__name__, exc)
            self._broken = True
            self._forget_thread()
            self._ready.set()
            return
        self._loop, self._worker = loop, worker
        try:
            loop.run_until_complete(worker.main(self._ready))
        except Exception as exc:  # a bug must not reach the app; say so, and let submit() restart us
            log.error("pendo_plugin: worker stopped: %s: %s", type(exc).__name__, exc)
            self._forget_thread()
        finally:
            worker.close_loop(loop)

    def _forget_thread(self) -> None:
        with self._start_lock:
            if self._thread is not None and is_current(self._thread):
                self._thread = None
