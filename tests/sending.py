"""In-process send tests (the Sender, the Dispatcher) against the sandbox: their settings and payloads."""

from __future__ import annotations

import time
from typing import Any

from pendo_plugin import config
from pendo_plugin.config import Settings
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.sandbox import Sandbox
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET


def sandbox_settings(box: Sandbox, **extra: object) -> Settings:
    """Settings that send to ``box`` with its keys, no spool, a short retry budget; ``extra`` overrides."""
    values = {"track_secret": TRACK_SECRET, "integration_key": INTEGRATION_KEY, "data_url": box.url,
              "api_url": box.url, "spool_dir": "off", "max_retries": 3, "retry_budget": 10, **extra}
    return config.load(values, environ={})


def track_event(event: str, visitor: str, *, account: str | None = None, **properties: Any) -> Payload:
    """A track payload: ``event`` of ``visitor`` (in ``account``), timed now."""
    body: dict[str, Any] = {"type": "track", "event": event, "visitorId": visitor}
    if account is not None:
        body["accountId"] = account
    body.update(timestamp=int(time.time() * 1000), properties=properties, context={})
    return payload.event("track", body)


def track_payload(n: int) -> Payload:
    """Track event ``n`` of visitor ``u<n>``, timed now."""
    return track_event("Sent", f"u{n}", n=n)


def visitor_row(user: str, **values: Any) -> Payload:
    """A visitor metadata payload."""
    return payload.metadata("visitor", user, values)
