"""Pendo's answers are untrusted: a huge body is read only up to a bound, and a ``Location`` is reduced to
its host before it is logged. Real HTTP on loopback (a tiny ``http.server`` started by the test)."""

from __future__ import annotations

import asyncio
import http.server
from collections.abc import Iterator

import pytest

from pendo_plugin import counters
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import MAX_RESPONSE_BYTES, Request, location_host
from tests.http_servers import threaded_server

BODY_BYTES = MAX_RESPONSE_BYTES * 3


class _Huge(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(BODY_BYTES))
        self.end_headers()
        chunk = b"[" * (1024 * 1024)
        try:
            for _ in range(BODY_BYTES // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: the point of the test

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def huge_server() -> Iterator[str]:
    with threaded_server(_Huge) as url:
        yield url


def test_a_huge_answer_is_read_only_up_to_the_bound(huge_server: str) -> None:
    counters.reset()

    async def fetch() -> bytes:
        transport = HttpTransport(pool_size=1)
        try:
            response = await transport.send(Request("GET", f"{huge_server}/api/v1/metadata/schema/visitor"))
            return response.body
        finally:
            await transport.close()

    body = asyncio.run(fetch())
    assert len(body) == MAX_RESPONSE_BYTES
    assert counters.snapshot()["response_truncated"] == 1


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("http://user:pw@evil.example:8443/steal?token=s3cret#x", "evil.example:8443"),
        ("https://EVIL.example/path", "evil.example"),
        ("/data/track?token=s3cret", "(the same host)"),
        (None, "(no Location)"),
        ("http://[::1", "(unparsable Location)"),
    ],
)
def test_a_location_is_shown_as_its_host_only(location: str | None, shown: str) -> None:
    assert location_host(location) == shown
