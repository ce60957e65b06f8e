"""A pytest plugin for apps that use ``pendo_plugin``: the ``pendo_capture`` fixture.

Installed with the package (entry point ``pytest11``), so any test can ask for ``pendo_capture``. It
routes the plugin's HTTP to an in-memory transport that answers like Pendo, so the payloads the code
under test produces are captured without a network. It registers no autouse fixture, and importing this
module loads nothing beyond what pytest already has: the plugin's own modules load when the fixture runs.

Example::

    def test_signup_reaches_pendo(pendo_capture, segment_client):
        signup(segment_client, "u1", plan="pro")          # your code, calling Segment
        pendo_capture.assert_tracked("Signed Up", plan="pro")
        assert pendo_capture.visitors()["u1"]["plan"] == "pro"
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from pendo_plugin.delivery.http import Request, Response

TRACK_SECRET = "test-track-secret"
INTEGRATION_KEY = "test-integration-key"
TRACK_OK = b"Track event was sent as requested"


class MemoryTransport:
    """A :class:`~pendo_plugin.delivery.http.Transport` that records requests and answers like Pendo.

    Track 200 with Pendo's text; metadata 200 with ``{"total", "updated", "failed": 0, ...}``; the field
    schema 404 (so every field is sent unchecked); token verify valid with write access.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.track_bodies: list[dict[str, Any]] = []
        self.metadata_rows: list[tuple[str, dict[str, Any]]] = []
        self.webhook_bodies: list[dict[str, Any]] = []

    async def send(self, request: Request) -> Response:
        from pendo_plugin.delivery.http import Response

        status, body = self._answer(request.method, urlsplit(request.url).path, request.body)
        content = "text/plain" if isinstance(body, bytes) else "application/json"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Response(status, {"Content-Type": content}, data)

    async def close(self) -> None:
        return None

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes | dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and path.endswith("/data/track"):
            with self._lock:
                self.track_bodies.append(json.loads(body))
            return 200, TRACK_OK
        if method == "POST" and parts[-5:-3] == ["v1", "metadata"] and parts[-1] == "value":
            return 200, self._metadata(parts[-3], json.loads(body))
        if method == "POST" and "segmentio" in parts:
            with self._lock:
                self.webhook_bodies.append(json.loads(body))
            return 200, b"OK"
        if method == "GET" and path.endswith("/token/verify"):
            return 200, {"valid": True, "writeAccess": True}
        return 404, b"Not Found"

    def _metadata(self, kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            self.metadata_rows.extend((kind, row) for row in rows)
        return {"total": len(rows), "updated": len(rows), "failed": 0, "missing": [], "errors": []}

    def tracked(self) -> list[dict[str, Any]]:
        """Track event bodies received, in order."""
        with self._lock:
            return list(self.track_bodies)

    def merged(self, kind: str) -> dict[str, dict[str, Any]]:
        """id -> values merged over every row of ``kind`` (``visitor`` or ``account``), in order."""
        merged: dict[str, dict[str, Any]] = {}
        with self._lock:
            for row_kind, row in self.metadata_rows:
                if row_kind == kind:
                    merged.setdefault(str(row.get(f"{kind}Id")), {}).update(row.get("values") or {})
        return merged

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self.track_bodies.clear()
            self.metadata_rows.clear()
            self.webhook_bodies.clear()


class PendoCapture:
    """What ``pendo_capture`` gives a test: the captured payloads and assertions about them."""

    def __init__(self, transport: MemoryTransport | None = None, timeout: float = 10.0) -> None:
        self.transport = transport or MemoryTransport()
        self.timeout = timeout
        self._baseline: dict[str, int] = {}

    def configure(self, **settings: Any) -> None:
        """Apply settings (e.g. ``rollout_percent=10``) on top of the capture's own."""
        import pendo_plugin

        chosen: dict[str, Any] = {
            "transport": self.transport,
            "track_secret": TRACK_SECRET,
            "integration_key": INTEGRATION_KEY,
            "spool_dir": "off",
            "rollout_percent": 100,
            "enabled": True,
            "mode": "api",
            "shadow": False,
            "schema_check": False,  # every trait is sent as a field, without a "schema 404" warning
        }
        chosen.update(settings)
        pendo_plugin.configure(reset=True, **chosen)

    def start(self) -> None:
        """Route the plugin to the in-memory transport with a fresh account memory."""
        import pendo_plugin
        from pendo_plugin import counters, destination
        from pendo_plugin.destination.route import Router

        self.configure()
        pendo_plugin.install()
        destination.runtime().router = Router()  # no account remembered from an earlier test
        self._baseline = counters.snapshot()

    def stop(self) -> None:
        """Deliver what is queued (to memory), then drop the capture's settings."""
        import pendo_plugin

        try:
            pendo_plugin.flush(self.timeout)
        finally:
            pendo_plugin.configure(reset=True)

    def flush(self) -> None:
        """Wait until everything the code under test sent has reached the capture."""
        __tracebackhide__ = True
        import pendo_plugin

        if not pendo_plugin.flush(self.timeout):
            raise AssertionError(f"pendo_plugin did not deliver everything within {self.timeout:g} s")

    def track_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Track event bodies as Pendo would receive them (optionally only those named ``event``)."""
        self.flush()
        return [body for body in self.transport.tracked() if event is None or body.get("event") == event]

    def visitors(self) -> dict[str, dict[str, Any]]:
        """visitorId -> metadata values, merged over every row sent."""
        self.flush()
        return self.transport.merged("visitor")

    def accounts(self) -> dict[str, dict[str, Any]]:
        """accountId -> metadata values, merged over every row sent."""
        self.flush()
        return self.transport.merged("account")

    def stats(self) -> dict[str, int]:
        """``pendo_plugin.stats()`` counted from the start of this test."""
        from pendo_plugin import counters

        self.flush()
        now = counters.snapshot()
        changed = {name: value - self._baseline.get(name, 0) for name, value in now.items()}
        return {name: value for name, value in changed.items() if value}

    def clear(self) -> None:
        """Forget what was captured so far."""
        self.flush()
        self.transport.clear()

    def assert_tracked(self, event: str, **properties: Any) -> dict[str, Any]:
        """The first track event named ``event`` whose properties include ``properties``; else fail."""
        __tracebackhide__ = True  # pytest shows the failure at the test's own line
        events = self.track_events()
        for body in events:
            props = body.get("properties") or {}
            if body.get("event") == event and all(props.get(k, _ABSENT) == v for k, v in properties.items()):
                return body
        wanted = f"{event!r}" + (f" with properties {properties!r}" if properties else "")
        seen = "\n".join(f"  {body.get('event')!r} {body.get('properties') or {}!r}" for body in events)
        raise AssertionError(f"no Pendo track event {wanted}; captured {len(events)} event(s)"
                             + (f":\n{seen}" if seen else ""))


_ABSENT = object()


@pytest.fixture
def pendo_capture() -> Iterator[PendoCapture]:
    """Capture, in memory, every Pendo payload the code under test produces (see :class:`PendoCapture`)."""
    capture = PendoCapture()
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()
