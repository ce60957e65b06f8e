"""A local stand-in for Pendo's APIs (and Segment's ``/v1/batch``) on 127.0.0.1.

It answers like Pendo does (status codes and bodies from ``pendo-api.md``), checks every request against
Pendo's rules, records what it accepted, and can inject latency and failures. It runs on ``aiohttp.web`` in a
background thread with its own event loop, so one process sustains thousands of requests per second.

Endpoints: ``POST /data/track``, ``POST /api/v1/metadata/{visitor|account}/{agent|custom}/value``,
``GET /api/v1/metadata/schema/{visitor|account}``, ``GET /api/v1/token/verify``,
``POST /data/segmentio/{api_key}``, ``POST /v1/batch`` (Segment), ``GET /`` (live page) and
``GET /_sandbox/state`` (the page's JSON snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any, TextIO

from aiohttp import web

from pendo_plugin.config import is_loopback

__all__ = ["RecordedRequest", "Sandbox", "main_sandbox", "property_name_problem"]

Schema = Mapping[str, Mapping[str, str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEY_HEADER = "x-pendo-integration-key"
TRACK_OK = "Track event was sent as requested"
MASK = "***"
SECRET_HEADERS = frozenset({KEY_HEADER, "authorization", "proxy-authorization", "cookie", "x-api-key"})
SECRET_QUERY = frozenset({"key", "api_key", "apikey", "token", "secret", "integration_key"})
KINDS = ("visitor", "account")
GROUPS = ("agent", "custom")
ID_FIELD = {"visitor": "visitorId", "account": "accountId"}
MAX_PROPERTY_NAME = 32
MAX_PROPERTIES_BYTES = 512
MAX_EVENT_NAMES = 5_000  # distinct track event names per app
MAX_PROPERTY_KEYS = 10_000  # distinct track property keys per subscription
MAX_EVENT_AGE_MS = 7 * 24 * 3600 * 1000
SECONDS_NOT_MS = 10**11  # an epoch timestamp below this is in seconds, not milliseconds
STATE_ROWS = 500  # visitors/accounts per /_sandbox/state snapshot
STATE_EVENTS = 200  # track events and violations per snapshot
MAX_VIOLATIONS = 10_000
_PAGE_PATHS = frozenset({"/", "/favicon.ico"})  # served without latency, faults or logging
_PROPERTY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sandbox answered; secrets in headers, query and path are masked."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    at: float  # time.monotonic() when answered


@dataclass
class _Fault:
    prefix: str
    status: int
    headers: dict[str, str]
    remaining: int


# ---------------------------------------------------------------- pure rule checks


def property_name_problem(name: str) -> str | None:
    """Why Pendo rejects a track property name (e.g. ``"starts with a digit"``), or None if it is fine."""
    problems = []
    if not name:
        return "is empty"
    if not _PROPERTY_CHARS.issuperset(name):
        problems.append("has characters other than letters, digits and underscore")
    if len(name) > MAX_PROPERTY_NAME:
        problems.append(f"is longer than {MAX_PROPERTY_NAME} characters ({len(name)})")
    if name[0].isdigit():
        problems.append("starts with a digit")
    if len(name) >= 4 and name.startswith("__") and name.endswith("__"):
        problems.append("both starts and ends with '__'")
    return "; ".join(problems) or None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _track_errors(body: Any) -> list[str]:
    """Breaches that make Pendo refuse a track event (answered 400)."""
    if not isinstance(body, dict):
        return ["track body is not a JSON object"]
    errors = []
    if body.get("type") != "track":
        errors.append(f"track type must be 'track', got {_short(body.get('type'))}")
    for key in ("event", "visitorId"):
        if not isinstance(body.get(key), str) or not body[key]:
            errors.append(f"track {key} must be a non-empty string, got {_short(body.get(key))}")
    if not _is_int(body.get("timestamp")):
        errors.append(f"track timestamp must be an integer (epoch ms), got {_short(body.get('timestamp'))}")
    if not isinstance(body.get("context"), dict):
        errors.append("track context must be an object (it may be {})")
    if body.get("properties") is not None and not isinstance(body["properties"], dict):
        errors.append("track properties must be an object")
    return errors


def _track_warnings(body: dict[str, Any], now_ms: int) -> list[str]:
    """Breaches Pendo accepts (200) but flags or silently drops."""
    warnings = []
    properties = body.get("properties") or {}
    for name in properties:
        problem = property_name_problem(name)
        if problem:
            warnings.append(f"track property name {_short(name)} {problem}")
    if properties:
        size = len(json.dumps(properties, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_PROPERTIES_BYTES:
            warnings.append(
                f"track properties of event {_short(body['event'])} are {size} bytes of JSON, "
                f"over Pendo's {MAX_PROPERTIES_BYTES}-byte limit (flagged 'too large')"
            )
    timestamp = body["timestamp"]
    if timestamp < SECONDS_NOT_MS:
        warnings.append(f"track timestamp {timestamp} looks like seconds; Pendo expects epoch milliseconds")
    elif now_ms - timestamp > MAX_EVENT_AGE_MS:
        warnings.append(f"track timestamp {timestamp} is more than 7 days old; Pendo does not process it")
    account = body.get("accountId")
    if account is not None and (not isinstance(account, str) or not account):
        warnings.append(f"track accountId must be a non-empty string, got {_short(account)}")
    return warnings


def _type_matches(expected: str, value: Any) -> bool:
    """Whether ``value`` fits a Pendo field type; None clears any field; unknown types accept anything."""
    kind = expected.lower()
    if value is None:
        return True
    if kind in ("string", "text"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return _is_int(value)
    if kind in ("number", "float", "date"):  # dates are epoch milliseconds
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def _valid_field_name(name: str) -> bool:
    return bool(name) and _PROPERTY_CHARS.issuperset(name) and not name[0].isdigit()


def _row_problem(row: Any, id_field: str) -> str | None:
    if not isinstance(row, dict):
        return f"row is not an object: {_short(row)}"
    if not isinstance(row.get(id_field), str) or not row[id_field]:
        return f"row has no {id_field} string: {_short(row.get(id_field))}"
    if not isinstance(row.get("values"), dict):
        return f"{row[id_field]}: values must be an object"
    return None


def _mask_path(path: str) -> str:
    if path.startswith("/data/segmentio/"):
        return "/data/segmentio/" + MASK
    return path


def _secret_ok(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def allowed_hosts(bind_host: str, port: int) -> frozenset[str] | None:
    """``Host`` header values the sandbox answers (lower case), or None to answer any (bound to all
    interfaces, where its names are unknown). A loopback bind also answers ``localhost``."""
    if bind_host in ("", "0.0.0.0", "::"):
        return None
    names = {bind_host.lower(), f"[{bind_host.lower()}]" if ":" in bind_host else bind_host.lower()}
    if is_loopback(bind_host):
        names.add("localhost")
    return frozenset(f"{name}:{port}" for name in names) | (frozenset(names) if port == 80 else frozenset())


def request_problem(headers: Mapping[str, str], allowed: frozenset[str] | None) -> tuple[int, str] | None:
    """Why a request must not be answered: a ``Host`` other than the sandbox's own (DNS rebinding), or a
    browser request from another site (``Origin`` or ``Sec-Fetch-Site``): a cross-site text/plain POST."""
    host = headers.get("Host", "").strip().lower()
    if allowed is not None and host not in allowed:
        return 421, "this sandbox answers only requests addressed to its own host and port"
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() != f"http://{host}":
        return 403, "cross-site requests are refused"
    if headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return 403, "cross-site requests are refused"
    return None


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


async def _read_json(request: web.Request) -> tuple[bool, Any]:
    try:
        return True, json.loads(await request.read())
    except ValueError:
        return False, None


# ---------------------------------------------------------------- the server


class Sandbox:
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
        self._page = resources.files("pendo_plugin").joinpath("sandbox_page.html").read_bytes()

    def _clear(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._event_names: set[str] = set()
        self._property_keys: set[str] = set()
        self._values: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._known: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self._metadata: list[tuple[str, list[Any]]] = []
        self._webhook: list[dict[str, Any]] = []
        self._segment: list[dict[str, Any]] = []
        self._violations: list[str] = []
        self._violation_count = 0
        self._request_count = 0

    @staticmethod
    def _copy_schema(schema: Schema | None) -> dict[str, dict[str, str]] | None:
        if schema is None:
            return None
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

    def _notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _violate(self, messages: list[str]) -> None:
        """Record breaches of Pendo's rules; call with the lock held."""
        self._violation_count += len(messages)
        room = MAX_VIOLATIONS - len(self._violations)
        self._violations.extend(messages[: max(room, 0)])

    def _api_auth(self, request: web.Request) -> web.Response | None:
        if self._integration_key is None:
            return None
        given = request.headers.get(KEY_HEADER)
        if not given:
            return _text(401, f"Unauthorized: missing {KEY_HEADER} header")
        if not _secret_ok(self._integration_key, given):
            return _text(403, "Forbidden: invalid integration key")
        return None

    # -------------------------------------------------------------- Pendo endpoints

    async def _handle_track(self, request: web.Request) -> web.Response:
        if not _secret_ok(self._track_secret, request.headers.get(KEY_HEADER)):
            return _text(403, "Forbidden: invalid or missing track event shared secret")
        parsed, body = await _read_json(request)
        if not parsed:
            return _text(400, "Bad Request: body is not valid JSON")
        errors = _track_errors(body)
        if errors:
            with self._cond:
                self._violate(errors)
            return _text(400, "Bad Request: " + "; ".join(errors))
        warnings = _track_warnings(body, int(time.time() * 1000))
        if request.content_type != "application/json":
            warnings.append(f"track sent with Content-Type {request.content_type!r}, not application/json")
        with self._cond:
            self._violate(warnings)
            self._accept_track(body)
        return _text(200, TRACK_OK)

    def _accept_track(self, body: dict[str, Any]) -> None:
        """Record an accepted event and the names it adds; call with the lock held."""
        self._events.append(body)
        self._known["visitor"].add(body["visitorId"])
        if isinstance(body.get("accountId"), str) and body["accountId"]:
            self._known["account"].add(body["accountId"])
        if body["event"] not in self._event_names:
            self._event_names.add(body["event"])
            if len(self._event_names) > MAX_EVENT_NAMES:
                name = _short(body["event"])
                self._violate(
                    [f"track event name {name} goes over Pendo's {MAX_EVENT_NAMES:,} names per app"]
                )
        new_keys = (body.get("properties") or {}).keys() - self._property_keys
        if new_keys:
            self._property_keys.update(new_keys)
            if len(self._property_keys) > MAX_PROPERTY_KEYS:
                keys = ", ".join(sorted(map(repr, new_keys)))
                self._violate([f"track property {keys} goes over Pendo's {MAX_PROPERTY_KEYS:,} keys"])

    async def _handle_metadata(self, request: web.Request) -> web.Response:
        kind, group = request.match_info["kind"], request.match_info["group"]
        if kind not in KINDS or group not in GROUPS:
            return _text(404, f"Not Found: no metadata endpoint for {kind}/{group}")
        denied = self._api_auth(request)
        if denied is not None:
            return denied
        if not self._write_access:
            return _text(403, "Forbidden: this integration key has no write access")
        parsed, rows = await _read_json(request)
        if not parsed or not isinstance(rows, list):
            return _text(400, "Bad Request: body must be a JSON array of rows")
        create = request.query.get("create", "").lower() == "true"
        with self._cond:
            unmapped = self._unmapped_fields(kind, rows)
            if unmapped:
                self._violate(
                    [f"metadata {kind} field {name!r} has no field mapping in Pendo" for name in unmapped]
                )
                return _text(400, f"missing field mappings for {kind}: {', '.join(unmapped)}")
            result = self._apply_rows(kind, rows, create)
            self._metadata.append((kind, rows))
        return web.json_response(result)

    def _unmapped_fields(self, kind: str, rows: list[Any]) -> list[str]:
        fields = None if self._schema is None else self._schema.get(kind)
        if fields is None:
            return []
        seen: dict[str, None] = {}
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("values"), dict):
                seen.update((name, None) for name in row["values"] if name not in fields)
        return list(seen)

    def _apply_rows(self, kind: str, rows: list[Any], create: bool) -> dict[str, Any]:
        """Apply metadata rows like Pendo; call with the lock held."""
        id_field = ID_FIELD[kind]
        known, store = self._known[kind], self._values[kind]
        updated, missing, errors = 0, [], []
        for row in rows:
            problem = _row_problem(row, id_field) or self._value_problem(kind, row[id_field], row["values"])
            if problem:
                errors.append(problem)
            elif row[id_field] not in known and not create:
                missing.append(row[id_field])
            else:
                known.add(row[id_field])
                store.setdefault(row[id_field], {}).update(row["values"])
                updated += 1
        self._violate([f"metadata {kind} {error}" for error in errors])
        failed = len(missing) + len(errors)
        return {
            "total": updated + failed,
            "updated": updated,
            "failed": failed,
            "missing": missing,
            "errors": errors,
        }

    def _value_problem(self, kind: str, row_id: str, values: dict[str, Any]) -> str | None:
        fields = None if self._schema is None else self._schema.get(kind)
        for name, value in values.items():
            if fields is None:
                if not _valid_field_name(name):
                    self._violate([f"metadata {kind} field {name!r} is not a valid Pendo field name"])
            elif not _type_matches(fields[name], value):
                return f"{row_id}: field {name!r} expects {fields[name]}, got {_short(value)}"
        return None

    async def _handle_schema(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return _text(404, f"Not Found: no metadata schema for {kind}")
        denied = self._api_auth(request)
        if denied is not None:
            return denied
        with self._cond:
            fields = None if self._schema is None else self._schema.get(kind)
            custom = None if fields is None else {name: {"Type": type_} for name, type_ in fields.items()}
        if custom is None:  # "any field": Pendo's schema format cannot say that, so answer like no schema
            return _text(
                404, f"Not Found: no {kind} field schema configured in the sandbox (any field is accepted)"
            )
        return web.json_response({"auto": {}, "agent": {}, "custom": custom})

    async def _handle_verify(self, request: web.Request) -> web.Response:
        denied = self._api_auth(request)
        if denied is not None:
            return _text(403, denied.text or "Forbidden")
        return web.json_response({"valid": True, "writeAccess": self._write_access})

    async def _handle_webhook(self, request: web.Request) -> web.Response:
        if not _secret_ok(self._api_key, request.match_info["key"]):
            return _text(403, "Forbidden: unknown API key")
        parsed, body = await _read_json(request)
        if not parsed or not isinstance(body, dict):
            return _text(400, "Bad Request: body must be one JSON object (a Segment message)")
        with self._cond:
            if body.get("type") not in ("identify", "group", "track", "page", "screen", "alias"):
                self._violate(
                    [f"webhook message type {_short(body.get('type'))} is not a Segment message type"]
                )
            self._webhook.append(body)
        return _text(200, "OK")

    async def _handle_segment_batch(self, request: web.Request) -> web.Response:
        parsed, body = await _read_json(request)
        if not parsed or not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            return web.json_response(
                {"code": "invalid_request", "message": "expected {batch: [...]}"}, status=400
            )
        with self._cond:
            self._segment.extend(message for message in body["batch"] if isinstance(message, dict))
        return web.json_response({})

    # -------------------------------------------------------------- the page

    async def _handle_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _handle_favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _handle_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    def state(self) -> dict[str, Any]:
        """The page's snapshot: counts, the latest visitors/accounts, last events and violations."""
        with self._cond:
            return {
                "counts": self._counts(),
                "visitors": self._latest_rows("visitor"),
                "accounts": self._latest_rows("account"),
                "events": self._events[-STATE_EVENTS:],
                "violations": self._violations[-STATE_EVENTS:],
            }

    def _latest_rows(self, kind: str) -> list[dict[str, Any]]:
        store = self._values[kind]
        ids = list(store)[-STATE_ROWS:]
        return [{"id": row_id, "values": dict(store[row_id])} for row_id in ids]

    # -------------------------------------------------------------- recordings

    def counts(self) -> dict[str, int]:
        """Cheap totals: visitors, accounts, track_events, metadata_requests, webhook/segment messages, ..."""
        with self._cond:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        return {
            "visitors": len(self._values["visitor"]),
            "accounts": len(self._values["account"]),
            "track_events": len(self._events),
            "metadata_requests": len(self._metadata),
            "webhook_messages": len(self._webhook),
            "segment_messages": len(self._segment),
            "violations": self._violation_count,
            "requests": self._request_count,
        }

    def track_events(self) -> list[dict[str, Any]]:
        """Bodies accepted at /data/track, in order (treat the dicts as read-only)."""
        with self._cond:
            return list(self._events)

    def visitors(self) -> dict[str, dict[str, Any]]:
        """visitorId -> metadata values merged over every accepted row (agent and custom)."""
        with self._cond:
            return {row_id: dict(values) for row_id, values in self._values["visitor"].items()}

    def accounts(self) -> dict[str, dict[str, Any]]:
        """accountId -> metadata values merged over every accepted row (agent and custom)."""
        with self._cond:
            return {row_id: dict(values) for row_id, values in self._values["account"].items()}

    def metadata_requests(self, kind: str | None = None) -> list[list[Any]]:
        """Row arrays of the metadata requests answered 200, in order; ``kind`` filters visitor/account."""
        with self._cond:
            return [list(rows) for row_kind, rows in self._metadata if kind is None or row_kind == kind]

    def webhook_messages(self) -> list[dict[str, Any]]:
        """Bodies accepted at /data/segmentio/<key>."""
        with self._cond:
            return list(self._webhook)

    def segment_messages(self) -> list[dict[str, Any]]:
        """Every message inside the /v1/batch bodies (the Segment stand-in)."""
        with self._cond:
            return list(self._segment)

    def violations(self) -> list[str]:
        """Human-readable breaches of Pendo's rules seen so far (the first 10,000)."""
        with self._cond:
            return list(self._violations)

    def request_log(self) -> list[RecordedRequest]:
        """Every request answered (except the page's), secrets masked, oldest first."""
        with self._cond:
            return list(self._log)

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


# ---------------------------------------------------------------- command line


_ROWS = (
    ("visitors", "visitors"),
    ("accounts", "accounts"),
    ("track_events", "track events"),
    ("webhook_messages", "webhook messages"),
    ("segment_messages", "segment messages"),
    ("violations", "violations"),
    ("requests", "requests"),
)


def format_counts(counts: Mapping[str, int], url: str) -> list[str]:
    """The live table's lines: one count per row, then the page URL."""
    lines = [f"{'what':<18}{'count':>10}", "-" * 28]
    lines += [f"{label:<18}{counts.get(key, 0):>10,}" for key, label in _ROWS]
    lines.append(f"page: {url}/")
    return lines


class _LiveTable:
    """Reprints the counts once a tick: in place on a terminal, only on change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._printed = 0
        self._last: dict[str, int] | None = None

    def __call__(self, sandbox: Sandbox) -> None:
        counts = sandbox.counts()
        if counts == self._last and not self._tty:
            return
        self._last = counts
        lines = format_counts(counts, sandbox.url)
        if self._tty and self._printed:
            self._out.write(f"\x1b[{self._printed}F")
        self._out.write("".join(line + ("\x1b[K\n" if self._tty else "\n") for line in lines))
        self._out.flush()
        self._printed = len(lines)


def _describe(name: str, secret: str | None) -> str:
    return f"  {name}: {'required (set)' if secret else 'not required'}"


def main_sandbox(
    port: int,
    latency: float,
    track_secret: str | None,
    integration_key: str | None,
    api_key: str | None,
    live: bool,
    *,
    schema: Schema | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the sandbox in the foreground until Ctrl-C; print the URL and, when ``live``, a counts table."""
    out = out or sys.stdout
    sandbox = Sandbox(
        port=port,
        latency=latency,
        track_secret=track_secret,
        integration_key=integration_key,
        api_key=api_key,
        schema=schema,
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(f"sandbox: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    banner = [
        f"Pendo sandbox listening on {sandbox.url} (page: {sandbox.url}/), latency {latency * 1000:.0f} ms",
        f"  PENDO_DATA_URL={sandbox.url} PENDO_API_URL={sandbox.url}",
        _describe("track secret", track_secret),
        _describe("integration key", integration_key),
        _describe("API key (webhook path)", api_key),
        "Ctrl-C to stop.",
    ]
    print("\n".join(banner), file=out, flush=True)
    sandbox.serve_forever(on_tick=_LiveTable(out) if live else None)
    totals = ", ".join(f"{label} {sandbox.counts().get(key, 0)}" for key, label in _ROWS)
    print(f"\nSandbox stopped: {totals}.", file=out, flush=True)
    return 0
