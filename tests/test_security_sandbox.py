"""The sandbox answers only requests addressed to its own host and port (no DNS rebinding of
``/_sandbox/state``) and refuses cross-site browser requests such as a text/plain POST; real HTTP on
loopback with hand-set headers."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from pendo_plugin.sandbox import Sandbox, allowed_hosts, request_problem

SECRET = "sandbox-hardening-secret"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET) as sandbox:
        yield sandbox


def request(box: Sandbox, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    port = int(box.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def track_body() -> bytes:
    event = {"type": "track", "event": "Forged", "visitorId": "v1", "accountId": "a1",
             "timestamp": int(time.time() * 1000), "properties": {}, "context": {}}
    return json.dumps(event).encode()


def test_state_is_not_served_to_another_host_name(box: Sandbox) -> None:
    own = box.url.removeprefix("http://")
    port = own.rsplit(":", 1)[1]
    assert request(box, "GET", "/_sandbox/state", {"Host": f"attacker.example:{port}"}) == 421
    assert request(box, "GET", "/_sandbox/state", {"Host": "attacker.example"}) == 421
    assert request(box, "GET", "/_sandbox/state", {}) in (400, 421)  # no Host: aiohttp refuses it first
    assert request(box, "GET", "/_sandbox/state", {"Host": own}) == 200
    assert request(box, "GET", "/_sandbox/state", {"Host": f"localhost:{port}"}) == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_text_plain_posts_are_refused_and_not_recorded(
    box: Sandbox, headers: dict[str, str]
) -> None:
    own = box.url.removeprefix("http://")
    sent = {"Host": own, "Content-Type": "text/plain", "x-pendo-integration-key": SECRET, **headers}
    assert request(box, "POST", "/data/track", sent, track_body()) == 403
    assert box.track_events() == [] and box.request_log() == []
    same_site = {"Host": own, "Content-Type": "application/json", "x-pendo-integration-key": SECRET,
                 "Origin": box.url}
    assert request(box, "POST", "/data/track", same_site, track_body()) == 200
    assert [event["event"] for event in box.track_events()] == ["Forged"]


def test_allowed_hosts_follow_the_bind_address() -> None:
    assert allowed_hosts("127.0.0.1", 8787) == frozenset({"127.0.0.1:8787", "localhost:8787"})
    assert allowed_hosts("0.0.0.0", 8787) is None
    assert request_problem({"Host": "127.0.0.1:1"}, allowed_hosts("127.0.0.1", 8787)) is not None
    assert request_problem({"Host": "anything"}, None) is None
