"""The HTTP client against real servers on 127.0.0.1, on both event loops: nginx and HAProxy from Debian in
front of the sandbox (the Pendo stand-in), and stand-ins only for what no server does on purpose (record a
request then drop the connection, 100 Continue then 503, a short body, accept then close). Each case
asserts what reached the server and what the plugin counted (track events go through the one send path).
Proxies and TLS: ``test_http_conformance_proxies.py``; the helpers: ``http_conformance.py``."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from pendo_plugin import counters
from pendo_plugin.delivery import client as client_module
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import Request
from pendo_plugin.sandbox import Sandbox
from tests import http_conformance as conformance
from tests.http_conformance import deliver, numbers, post, run, settings_for
from tests.http_servers import OK, StandIn
from tests.sending import track_event, track_payload

# the suite's fixtures (tests/http_conformance.py), by name
box = conformance.box
clean = conformance.clean
front = conformance.front
hints = conformance.hints
loop_kind = conformance.loop_kind
pki = conformance.pki
proxy = conformance.proxy
tls_listener = conformance.tls_listener

# ----- what held, against real servers


def test_nginx_keep_alive_rotation_delivers_every_event(
    loop_kind: str, box: Sandbox, front: dict[str, int]
) -> None:
    box.reset()
    outcomes = deliver(
        loop_kind, settings_for(f"http://127.0.0.1:{front['plain']}"), [track_payload(n) for n in range(5)]
    )
    assert outcomes == ["sent"] * 5  # nginx closes every second connection (keepalive_requests 2)
    assert numbers(box) == [0, 1, 2, 3, 4]
    assert counters.snapshot().get("sent:track") == 5


def test_nginx_413_before_the_body_is_dropped_and_counted(loop_kind: str, front: dict[str, int]) -> None:
    big = track_event("Sent", "u0", n=0, pad="x" * 8000)  # over nginx's client_max_body_size
    outcomes = deliver(loop_kind, settings_for(f"http://127.0.0.1:{front['plain']}"), [big])
    assert outcomes == ["rejected"]
    assert counters.snapshot().get("dropped:http_413:track") == 1


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n", b"{}"),
        (b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"until":"eof"}', b'{"until":"eof"}'),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked-with-trailers", "body-until-eof", "204"],
)
def test_answers_that_held(loop_kind: str, answer: bytes, body: bytes) -> None:
    server = StandIn(lambda number, request: answer, close_after=b"Connection: close" in answer)
    try:
        answers = post(loop_kind, f"http://127.0.0.1:{server.port}/data/track", count=2)
    finally:
        server.stop()
    assert [(one.status, one.body) for one in answers] == [(int(answer[9:12]), body)] * 2
    assert len(server.requests) == 2


# ----- 1. interim answers


def test_103_early_hints_from_haproxy_are_skipped(loop_kind: str, box: Sandbox, hints: int) -> None:
    box.reset()
    outcomes = deliver(
        loop_kind, settings_for(f"http://127.0.0.1:{hints}"), [track_payload(n) for n in range(3)]
    )
    assert outcomes == ["sent"] * 3
    assert numbers(box) == [0, 1, 2]
    stats = counters.snapshot()
    assert stats.get("sent:track") == 3 and not any(name.startswith("dropped") for name in stats)


def test_100_continue_then_503_is_retried_not_dropped(loop_kind: str) -> None:
    def answer(number: int, request: bytes) -> bytes:
        if number == 1:
            busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
            return b"HTTP/1.1 100 Continue\r\n\r\n" + busy
        return OK

    server = StandIn(answer)
    try:
        outcomes = deliver(
            loop_kind,
            settings_for(f"http://127.0.0.1:{server.port}", max_retries=1),
            [track_payload(0), track_payload(1)],
        )
    finally:
        server.stop()
    assert outcomes == ["sent", "sent"]  # the second event got its own answer, not the 503
    assert len(server.requests) == 3
    stats = counters.snapshot()
    assert stats.get("retried") == 1 and stats.get("sent:track") == 2
    assert not any(name.startswith("dropped") for name in stats)


# ----- 3. a request the server may have processed is never resent by the transport


@pytest.mark.parametrize("retries", [0, 1])
def test_a_request_recorded_then_dropped_is_resent_only_as_a_counted_retry(
    loop_kind: str, retries: int
) -> None:
    server = StandIn(lambda number, request: None if number == 2 else OK)  # the 2nd: recorded, then dropped
    try:
        outcomes = deliver(
            loop_kind,
            settings_for(f"http://127.0.0.1:{server.port}", max_retries=retries),
            [track_payload(0), track_payload(1)],
        )
    finally:
        server.stop()
    sent_1 = [body for body in server.bodies() if b'"n":1' in body]
    stats = counters.snapshot()
    if retries == 0:
        assert outcomes == ["sent", "failed"]
        assert len(sent_1) == 1  # once: the server may have processed it
        assert stats.get("retries_exhausted:track") == 1 and stats.get("sent:track") == 1
    else:
        assert outcomes == ["sent", "sent"]
        assert len(sent_1) == 2 and stats.get("retried") == 1 and stats.get("sent:track") == 2


# ----- 4. Happy Eyeballs


def test_an_unreachable_first_address_costs_the_happy_eyeballs_delay(loop_kind: str, box: Sandbox) -> None:
    """The name resolves to a SYN black hole (a listener whose backlog is full) and then to the sandbox:
    the second address is tried after the delay, well within the timeout (only DNS is stood in for)."""
    hole = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(hole.getsockname())
    sandbox_port = int(box.url.rsplit(":", 1)[1])
    addresses = [hole.getsockname(), ("127.0.0.1", sandbox_port)]
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address) for address in addresses]

    async def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host != "pendo.test":  # uvloop's sock_connect resolves the numeric address again
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        return infos

    try:
        [answer] = post(loop_kind, f"http://pendo.test:{sandbox_port}/", timeout=2.5, resolve=resolve)
    finally:
        for filler in fillers:
            filler.close()
        hole.close()
    assert answer.status == 421  # the sandbox answered (it wants its own Host)


# ----- 5. accept then close


def test_a_server_that_accepts_then_closes_fails_at_once(loop_kind: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def close_each() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=close_each, daemon=True).start()
    try:
        for _ in range(5):  # the close races the first write: a few tries (uvloop raised RuntimeError)
            with pytest.raises(ConnectionError):  # not a wait until the timeout, not RuntimeError
                post(loop_kind, f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=30)
    finally:
        listener.close()


# ----- 6. truncated answers


def test_a_body_shorter_than_its_content_length_is_an_error(loop_kind: str) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"  # then EOF
    server = StandIn(lambda number, request: answer, close_after=True)
    try:
        outcomes = deliver(loop_kind, settings_for(f"http://127.0.0.1:{server.port}"), [track_payload(0)])
    finally:
        server.stop()
    assert outcomes == ["failed"]
    stats = counters.snapshot()
    assert stats.get("retries_exhausted:track") == 1 and "sent:track" not in stats


# ----- smaller points


def test_head_is_refused_before_anything_is_sent(loop_kind: str) -> None:
    server = StandIn(lambda number, request: OK)
    try:
        with pytest.raises(ValueError, match="HEAD"):
            post(loop_kind, f"http://127.0.0.1:{server.port}/", method="HEAD")
    finally:
        server.stop()
    assert server.requests == []


def test_idle_pooled_connections_are_closed(loop_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "IDLE_SECONDS", 0.3)
    server = StandIn(lambda number, request: OK)

    async def go() -> None:
        transport = HttpTransport(4)
        try:
            await transport.send(Request("POST", f"http://127.0.0.1:{server.port}/", b"{}", {}, 5))
            deadline = time.monotonic() + 5
            while server.closed_by_client == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await transport.close()

    try:
        run(loop_kind, go())
    finally:
        server.stop()
    assert server.closed_by_client == 1
