"""Pendo's custom metadata fields, read from ``/api/v1/metadata/schema/{visitor|account}`` and cached."""

from __future__ import annotations

import logging
import time
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.answers import read_json
from pendo_plugin.delivery.http import Request, Transport
from pendo_plugin.logs import log_once


def parse_schema(document: Any) -> dict[str, str]:
    """Field name -> Pendo type from a schema response's ``custom`` group (types lower-cased)."""
    custom = document.get("custom") if isinstance(document, dict) else None
    if not isinstance(custom, dict):
        return {}
    fields: dict[str, str] = {}
    for name, spec in custom.items():
        kind = spec.get("Type") or spec.get("type") if isinstance(spec, dict) else None
        fields[str(name)] = str(kind or "string").lower()
    return fields


async def fetch_schema(transport: Transport, settings: Settings, kind: str) -> dict[str, str] | None:
    """The custom fields of ``kind`` (visitor/account), or None when Pendo did not answer usefully."""
    request = Request(
        "GET",
        f"{settings.api_url}/api/v1/metadata/schema/{kind}",
        headers={"x-pendo-integration-key": settings.integration_key or "", "Accept": "application/json"},
        timeout=settings.request_timeout,
    )
    try:
        response = await transport.send(request)
        if response.status != 200:
            log_once(
                f"schema:{kind}:{response.status}",
                logging.WARNING,
                "pendo_plugin: reading the %s field schema got HTTP %d; sending every field unchecked",
                kind,
                response.status,
                family=f"schema:{kind}",  # the status is the answer's to choose: bounded keys
            )
            return None
        document = read_json(response.body)
    except Exception as exc:
        log_once(
            f"schema:{kind}:{type(exc).__name__}",
            logging.WARNING,
            "pendo_plugin: could not read the %s field schema (%s); sending every field unchecked",
            kind,
            type(exc).__name__,
        )
        return None
    if not isinstance(document, dict):
        counters.record("answer_unreadable", kind=kind)
        log_once(
            f"schema:{kind}:unreadable",
            logging.WARNING,
            "pendo_plugin: the %s field schema Pendo answered could not be read (not bounded JSON); "
            "sending every field unchecked",
            kind,
        )
        return None
    return parse_schema(document)


class SchemaCache:
    """Per-kind field schemas, refreshed after ``settings.schema_ttl`` seconds."""

    def __init__(self) -> None:
        self._fields: dict[str, dict[str, str] | None] = {}
        self._fetched_at: dict[str, float] = {}

    async def fields(self, transport: Transport, settings: Settings, kind: str) -> dict[str, str] | None:
        """Known fields of ``kind``; None means unknown (send every field and let Pendo judge)."""
        if not settings.schema_check:
            return None
        now = time.monotonic()
        fetched = self._fetched_at.get(kind)
        if fetched is None or now - fetched > settings.schema_ttl:
            self._fetched_at[kind] = now
            fresh = await fetch_schema(transport, settings, kind)
            if fresh is not None or kind not in self._fields:
                self._fields[kind] = fresh
        return self._fields.get(kind)
