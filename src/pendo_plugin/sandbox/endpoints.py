"""Pendo's endpoints as the sandbox answers them (a base of :class:`~.server.Sandbox`): track events,
metadata rows, field schemas, token verify, the Segment webhook and Segment's own ``/v1/batch``."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from pendo_plugin.sandbox.records import Recordings
from pendo_plugin.sandbox.rules import (
    GROUPS,
    ID_FIELD,
    KEY_HEADER,
    KINDS,
    MAX_EVENT_NAMES,
    MAX_PROPERTY_KEYS,
    TRACK_OK,
    _row_problem,
    _secret_ok,
    _short,
    _track_errors,
    _track_warnings,
    _type_matches,
    _valid_field_name,
)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


async def _read_json(request: web.Request) -> tuple[bool, Any]:
    try:
        return True, json.loads(await request.read())
    except ValueError:
        return False, None


# ---------------------------------------------------------------- the server


class PendoEndpoints(Recordings):
    """The request handlers; the settings they read are set by :class:`~.server.Sandbox`."""

    _track_secret: str | None
    _integration_key: str | None
    _api_key: str | None
    _schema: dict[str, dict[str, str]] | None
    _write_access: bool
    _poison_rows: dict[str, int]
    _segment_latency: float

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
            poisoned = [self._poison_rows[i] for i in _row_ids(kind, rows) if i in self._poison_rows]
            if poisoned:
                return _text(poisoned[0], "the stand-in refuses a batch with this row (fail_rows)")
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


def _row_ids(kind: str, rows: list[Any]) -> list[str]:
    return [str(row.get(f"{kind}Id")) for row in rows if isinstance(row, dict)]
