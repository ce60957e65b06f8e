"""The HTTP transport: one method, ``send``, so everything above it can be tested with faults.

The default transport (:class:`~pendo_plugin.delivery.client.HttpTransport`) keeps a pool of
keep-alive connections on the worker's event loop.

The worker's loop runs blocking helpers (DNS lookups) on a :class:`DaemonPool` rather
than asyncio's default pool: the default pool refuses new work once the interpreter has started
exiting ("cannot schedule new futures after interpreter shutdown"), which is exactly when the
worker delivers what is left (atexit).

Redirects are never followed: every request carries a secret (a header, or the API key in the
path), and a redirect would take it, and the payload, to whatever host the ``Location`` names.
A 3xx answer raises :class:`RedirectRefused`, a network failure to the layers above: it is
retried like one, and what still fails stays in the spool. Nothing is counted as sent.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from pendo_plugin import counters
from pendo_plugin.logs import log_once

USER_AGENT = "segment-pendo-plugin"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Answers are read up to this size; the rest is not read (an answer is untrusted input too)."""


@dataclass(slots=True)
class Request:
    """One HTTP request; ``headers`` may carry secrets and are never logged. Read-only by convention:
    one is made per event, and a frozen dataclass costs four times as much to create."""

    method: str
    url: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0


@dataclass(slots=True)
class Response:
    """The parts of an HTTP response the senders look at (read-only by convention, like ``Request``)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class RedirectRefused(OSError):
    """Pendo answered with a redirect, which is not followed; the message names only the target host."""

    def __init__(self, status: int, location_host: str) -> None:
        super().__init__(f"HTTP {status} redirect to {location_host} refused (redirects are never followed)")
        self.status = status
        self.location_host = location_host


def location_host(location: str | None) -> str:
    """The host (and port) a ``Location`` header names, never its path, query or userinfo."""
    if not location:
        return "(no Location)"
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "(unparsable Location)"
    if not host:
        return "(the same host)"
    host = host if host.isascii() and host.isprintable() else "(unprintable host)"
    return f"{host}:{port}" if port else host


def refuse_redirect(response: Response) -> None:
    """Raise :class:`RedirectRefused` (logged once per status, counted) if ``response`` is a 3xx."""
    if not 300 <= response.status < 400:
        return
    target = location_host(response.headers.get("Location"))
    counters.record("redirect_refused", f"http_{response.status}")
    log_once(
        f"redirect:{response.status}",  # not per host: the Location is the other side's to choose
        logging.ERROR,
        "pendo_plugin: Pendo answered HTTP %d with a redirect to %s; redirects are never followed (the "
        "request carries a secret), so nothing was sent there: check PENDO_DATA_URL / PENDO_API_URL",
        response.status,
        target[:200],
        family="redirect",
    )
    raise RedirectRefused(response.status, target[:200])


class Transport(Protocol):
    """Sends one request; raises (OSError, TimeoutError, ValueError) on network failure or a bad URL.
    A transport may also have ``start(request) -> asyncio.Future[Response]``, which begins the request
    without a task where it can (see :func:`start`)."""

    async def send(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


Start = Callable[[Request], "asyncio.Future[Response]"]


def starter(transport: Transport) -> Start:
    """How ``transport`` begins a request: its ``start`` if it has one, else a task of its ``send``;
    the future gets the answer or the error. Looked up once per transport, not per request."""
    begin: Start | None = getattr(transport, "start", None)
    if begin is not None:
        return begin
    return lambda request: asyncio.ensure_future(transport.send(request))


class DaemonPool:
    """A few daemon threads for the worker loop's blocking helpers, usable during interpreter exit.

    asyncio's default pool (``concurrent.futures.ThreadPoolExecutor``) refuses new work once the
    interpreter has started exiting, and cannot even be imported then; this one has neither limit.
    """

    def __init__(self, max_workers: int = 4) -> None:
        self._limit = max(1, max_workers)
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a pool thread; its result or exception arrives in the future."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._jobs.put((future, lambda: fn(*args)))
            if self._idle == 0 and self._workers < self._limit:
                self._workers += 1
                threading.Thread(target=self._work, name="pendo-plugin-io", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Let the threads finish what they have and end."""
        with self._lock:
            self._closed = True
            workers = self._workers
        for _ in range(workers):
            self._jobs.put(None)
