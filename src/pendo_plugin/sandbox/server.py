"""The sandbox server: :class:`Sandbox`, Pendo's endpoints on ``aiohttp.web`` in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from importlib import resources

from aiohttp import web

from pendo_plugin.sandbox.endpoints import PendoEndpoints, _text
from pendo_plugin.sandbox.rules import (
    _PAGE_PATHS,
    MASK,
    SECRET_HEADERS,
    SECRET_QUERY,
    Handler,
    RecordedRequest,
    Schema,
    _Fault,
    _mask_path,
    allowed_hosts,
    request_problem,
    schema_problem,
)


class Sandbox(PendoEndpoints):
    """Local stand-in for Pendo (and Segment's /v1/batch) on 127.0.0.1, recording what it receives.

    ``schema`` is ``{"visitor": {"plan": "string", "logins": "number"}, "account": {...}}`` (types:
    string/text, number/integer/float, boolean, date as epoch ms); None, or a kind left out, accepts any
    field, and its schema endpoint then answers 404 so clients send every field unchecked. When a secret
    is given, requests must carry it (``x-pendo-integration-key`` header; ``api_key`` in the webhook path).
    ``log_limit`` bounds :meth:`request_log` (oldest entries dropped). ``rate_limit``: answer 429 with
    ``Retry-After: 1`` past that many requests to one Pendo path within any second (like Pendo's limit).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        track_secret: str | None = None,
        integration_key: str | None = None,
        api_key: str | None = None,
        latency: float = 0.0,
        segment_latency: float = 0.0,
        schema: Schema | None = None,
        write_access: bool = True,
        log_limit: int = 100_000,
        rate_limit: float | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._track_secret, self._integration_key, self._api_key = track_secret, integration_key, api_key
        self._latency, self._segment_latency = latency, segment_latency
        self._schema = self._copy_schema(schema)
        self._write_access = write_access
        self._cond = threading.Condition(threading.Lock())
        self._version = 0
        self._faults: list[_Fault] = []
        self._rate_limit = rate_limit
        self._recent: dict[str, deque[float]] = {}  # accepted request times per path, for rate_limit
        self._log: deque[RecordedRequest] = deque(maxlen=log_limit)
        self._clear()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._bound_port: int | None = None
        self._allowed_hosts: frozenset[str] | None = frozenset()  # set once bound
        self._page = resources.files("pendo_plugin.sandbox").joinpath("page.html").read_bytes()

    @staticmethod
    def _copy_schema(schema: Schema | None) -> dict[str, dict[str, str]] | None:
        if schema is None:
            return None
        problem = schema_problem(schema)
        if problem is not None:
            raise ValueError(f"sandbox schema: {problem}")
        return {kind: dict(fields) for kind, fields in schema.items()}

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Sandbox:
        """Serve from a background thread with its own event loop; return once listening."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name="pendo-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("sandbox did not start within 30 s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end; safe to call twice."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(15)
        self._thread = self._loop = self._stop_event = None
        self._notify()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._bound_port is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None

    def serve_forever(self, on_tick: Callable[[Sandbox], None] | None = None, interval: float = 1.0) -> None:
        """Serve in the foreground until Ctrl-C, SIGTERM or :meth:`stop`; call ``on_tick`` each interval."""
        self.start()
        with _sigterm_as_interrupt():
            try:
                while (thread := self._thread) is not None and thread.is_alive():
                    thread.join(interval)
                    if on_tick is not None:
                        on_tick(self)
            except KeyboardInterrupt:
                pass
            finally:
                self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            assert self._stop_event is not None
            loop.run_until_complete(self._stop_event.wait())
            loop.run_until_complete(runner.cleanup())
        finally:
            loop.close()

    async def _startup(self) -> web.AppRunner:
        self._stop_event = asyncio.Event()
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=2048)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._bound_port = int(runner.addresses[0][1])
        self._allowed_hosts = allowed_hosts(self._host, self._bound_port)
        return runner

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        routes = app.router
        routes.add_post("/data/track", self._handle_track)
        routes.add_post("/api/v1/metadata/{kind}/{group}/value", self._handle_metadata)
        routes.add_get("/api/v1/metadata/schema/{kind}", self._handle_schema)
        routes.add_get("/api/v1/token/verify", self._handle_verify)
        routes.add_post("/data/segmentio/{key}", self._handle_webhook)
        routes.add_post("/v1/batch", self._handle_segment_batch)
        routes.add_get("/", self._handle_page)
        routes.add_get("/_sandbox/state", self._handle_state)
        routes.add_get("/favicon.ico", self._handle_favicon)
        return app

    # -------------------------------------------------------------- latency, faults, logging

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = request_problem(request.headers, self._allowed_hosts)
        if refused is not None:
            return _text(*refused)
        path = request.path
        if path in _PAGE_PATHS or path.startswith("/_sandbox/"):
            return await handler(request)
        delay = self._segment_latency if path == "/v1/batch" else self._latency
        if delay > 0:
            await asyncio.sleep(delay)
        status = 500
        try:
            fault = self._take_fault(path) if self._faults else None
            if fault is None and self._rate_limit and self._over_rate(_mask_path(path)):
                fault = _Fault(path, 429, {"Retry-After": "1"}, 1)
            response = self._fault_response(fault) if fault else await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._record_request(request, status)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._cond:
            for fault in self._faults:
                if path.startswith(fault.prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _over_rate(self, path: str) -> bool:
        """Whether ``path`` had ``rate_limit`` accepted requests in the last second (else count this one);
        Segment's /v1/batch is not Pendo's and is never limited."""
        if path == "/v1/batch":
            return False
        now = time.monotonic()
        with self._cond:
            recent = self._recent.setdefault(path, deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= (self._rate_limit or 0):
                return True
            recent.append(now)
            return False

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        try:
            reason = HTTPStatus(fault.status).phrase
        except ValueError:
            reason = "Error"
        return web.Response(
            status=fault.status, headers=fault.headers, text=f"{reason} (injected by the sandbox)"
        )

    def _record_request(self, request: web.Request, status: int) -> None:
        headers = {k: MASK if k.lower() in SECRET_HEADERS else v for k, v in request.headers.items()}
        query = {k: MASK if k.lower() in SECRET_QUERY else v for k, v in request.query.items()}
        entry = RecordedRequest(
            request.method, _mask_path(request.path), query, headers, status, time.monotonic()
        )
        with self._cond:
            self._log.append(entry)
            self._request_count += 1
            self._version += 1
            self._cond.notify_all()

    async def _handle_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _handle_favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _handle_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    # -------------------------------------------------------------- waiting and fault injection

    def wait_for(self, predicate: Callable[[Sandbox], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` is true (re-checked on every recorded request); False on timeout.

        The predicate runs without the sandbox's lock, so it may call any method; requests that arrive
        while it runs trigger one more check.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._version
            if predicate(self):
                return True
            with self._cond:
                while self._version == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        path_prefix: str = "/data/track",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status`` and ``headers``.

        Those requests are logged in :meth:`request_log` but not recorded as accepted.
        """
        if count < 0 or not 100 <= status <= 599:
            raise ValueError("fail_next needs count >= 0 and an HTTP status 100-599")
        if count:
            with self._cond:
                self._faults.append(_Fault(path_prefix, status, dict(headers or {}), count))

    def set_rate_limit(self, per_second: float | None) -> None:
        """Answer 429 (``Retry-After: 1``) past ``per_second`` requests per path and second (None: off)."""
        self._rate_limit = per_second

    def set_latency(self, seconds: float) -> None:
        """Delay every Pendo endpoint's answer by ``seconds`` from now on."""
        self._latency = max(0.0, seconds)

    def set_segment_latency(self, seconds: float) -> None:
        """Delay /v1/batch answers by ``seconds`` from now on."""
        self._segment_latency = max(0.0, seconds)

    def set_schema(self, schema: Schema | None) -> None:
        """Replace the field schema (None accepts any field)."""
        copied = self._copy_schema(schema)
        with self._cond:
            self._schema = copied

    def reset(self) -> None:
        """Forget every recording, known id and pending fault; keep keys, latency and schema."""
        with self._cond:
            self._clear()
            self._faults.clear()
            self._log.clear()
            self._version += 1
            self._cond.notify_all()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, turn SIGTERM into KeyboardInterrupt so ``kill`` stops the sandbox cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
