"""Pendo's rules as the sandbox checks them: limits, request and row checks, pure functions."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pendo_plugin.config import is_loopback
from pendo_plugin.pendo.coerce import TYPE_ALIASES

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


# Pendo's custom field types (text, number, boolean, date) in every spelling the plugin reads them in
FIELD_TYPES = frozenset(TYPE_ALIASES)


def schema_problem(schema: Schema) -> str | None:
    """Why ``schema`` is not one Pendo could have (a field type Pendo does not have), or None."""
    for kind, fields in schema.items():
        for name, type_name in fields.items():
            if str(type_name).lower() not in FIELD_TYPES:
                return (f"{kind} field {name!r} has the type {type_name!r}, which Pendo does not have "
                        "(text, number, boolean or date)")
    return None


def _type_matches(expected: str, value: Any) -> bool:
    """Whether ``value`` fits a Pendo field type (:data:`FIELD_TYPES`); None clears any field."""
    if value is None:
        return True
    if expected.lower() == "integer":
        return _is_int(value)
    kind = TYPE_ALIASES.get(expected.lower())
    if kind == "text":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("number", "date"):  # dates are epoch milliseconds
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
