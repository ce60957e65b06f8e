"""The HTTP client against real servers and proxies on 127.0.0.1, on both event loops: nginx, squid and
HAProxy from Debian, in front of the sandbox (the Pendo stand-in), and stand-ins only for what no server
does on purpose. Each case asserts what reached the server and what the plugin counted (track events go
through the one send path: a ``Sender`` under a ``Dispatcher``). Pure proxy-selection rules are at the
end."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pendo_plugin import config, counters, logs
from pendo_plugin.config import Settings
from pendo_plugin.delivery import client as client_module
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.dispatch import Dispatcher
from pendo_plugin.delivery.http import Request, Response
from pendo_plugin.delivery.proxies import ProxyTable, masked
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.destination.loop import new_loop
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.sandbox import Sandbox
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.http_servers import OK, Pki, StandIn, haproxy, make_pki, nginx, running, squid
from tests.sending import track_event, track_payload

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    counters.reset()
    logs.forget()
    yield
    counters.reset()


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def front(box: Sandbox, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """nginx in front of the sandbox: ``plain`` and ``tls`` (the temp CA's certificate) ports."""
    argv, ports = nginx(tmp_path_factory.mktemp("nginx"), box.url, pki.files["good"])
    with running(argv, ports["plain"], Path(argv[2]) / "error.log"):
        yield ports


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """squid's port and its access log."""
    root = Path(tempfile.mkdtemp(prefix="pendo-squid-"))  # squid's own user must reach it
    argv, port = squid(root)
    try:
        with running(argv, port, root / "cache.log"):
            yield port, root / "access.log"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hints(box: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """HAProxy answering 103 Early Hints, then the sandbox's answer."""
    root = tmp_path_factory.mktemp("haproxy")
    argv, port = haproxy(root, int(box.url.rsplit(":", 1)[1]))
    with running(argv, port, root / "haproxy.log"):
        yield port


def settings_for(url: str, **extra: object) -> Settings:
    values = {
        "track_secret": TRACK_SECRET,
        "integration_key": INTEGRATION_KEY,
        "data_url": url,
        "api_url": url,
        "spool_dir": "off",
        "max_retries": 0,
        "retry_budget": 10,
        **extra,
    }
    return config.load(values, environ={})


def run(kind: str, coroutine: Any, resolve: Any = None) -> Any:
    """``coroutine`` on a new loop of ``kind`` (``resolve``: its ``getaddrinfo``, standing in for DNS)."""
    loop = new_loop(kind)
    if resolve is not None:
        loop.getaddrinfo = resolve  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, 60))
    finally:
        loop.close()


def deliver(kind: str, settings: Settings, payloads: list[Payload]) -> list[Outcome]:
    """Each payload sent and settled before the next, on a loop of ``kind``."""

    async def go() -> list[Outcome]:
        sender = Sender.for_settings(settings, asyncio.Event())
        dispatcher = Dispatcher(sender)
        outcomes: list[Outcome] = []
        try:
            for item in payloads:
                dispatcher.submit(item, settings, lambda item, outcome: outcomes.append(outcome), retry=True)
                await dispatcher.wait()
            return outcomes
        finally:
            await sender.transport.close()

    return list(run(kind, go()))


def post(
    kind: str,
    url: str,
    count: int = 1,
    timeout: float = 10.0,
    ca_bundle: str | None = None,
    method: str = "POST",
    resolve: Any = None,
) -> list[Response]:
    async def go() -> list[Response]:
        transport = HttpTransport(4, ca_bundle)
        try:
            return [
                await transport.send(Request(method, url, b'{"n":%d}' % n, {}, timeout)) for n in range(count)
            ]
        finally:
            await transport.close()

    return list(run(kind, go(), resolve))


def numbers(box: Sandbox) -> list[int]:
    return sorted(event["properties"]["n"] for event in box.track_events())


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


# ----- 7. proxies


def test_a_scheme_less_https_proxy_is_http_and_ipv6_is_bracketed(
    loop_kind: str,
    box: Sandbox,
    front: dict[str, int],
    proxy: tuple[int, Path],
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box.reset()
    port, access_log = proxy
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")
    settings = settings_for(f"https://[::1]:{front['tls']}", ca_bundle=str(pki.ca))
    outcomes = deliver(loop_kind, settings, [track_payload(n) for n in range(2)])
    assert outcomes == ["sent", "sent"]
    assert numbers(box) == [0, 1]
    deadline = time.monotonic() + 10  # squid writes its log line when the tunnel closes
    while f"[::1]:{front['tls']}" not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"CONNECT [::1]:{front['tls']}" in access_log.read_text()


def test_all_proxy_is_used_and_a_failing_proxy_is_named_with_its_password_masked(
    loop_kind: str, closed_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = closed_url.removeprefix("http://")
    monkeypatch.setenv("ALL_PROXY", f"http://me:hunter2@{closed}")
    with caplog.at_level(logging.ERROR, "pendo_plugin"), pytest.raises(ConnectionError) as failure:
        post(loop_kind, "https://pendo.invalid/data/track", timeout=5)
    assert f"proxy http://me:****@{closed}" in str(failure.value)
    assert "hunter2" not in str(failure.value) + caplog.text
    assert f"proxy http://me:****@{closed}" in caplog.text


def test_no_proxy_cidr_sends_directly(
    loop_kind: str, box: Sandbox, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.reset()
    monkeypatch.setenv("HTTP_PROXY", closed_url)
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")
    assert deliver(loop_kind, settings_for(box.url), [track_payload(7)]) == ["sent"]
    assert numbers(box) == [7]


def test_an_unknown_proxy_scheme_is_refused_with_one_clear_line(
    loop_kind: str, box: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.reset()
    monkeypatch.setenv("HTTPS_PROXY", "socks5://u:pw@127.0.0.1:1080")
    with caplog.at_level(logging.ERROR, "pendo_plugin"):
        outcomes = deliver(loop_kind, settings_for("https://pendo.invalid"), [track_payload(0)])
        assert deliver(loop_kind, settings_for(box.url), [track_payload(1)]) == ["sent"]  # http unaffected
    assert outcomes == ["failed"]
    assert (
        "HTTPS_PROXY='socks5://u:****@127.0.0.1:1080': proxy scheme 'socks5' is not supported" in caplog.text
    )
    assert "pw@" not in caplog.text


# ----- TLS: named certificate problems, PENDO_CA_BUNDLE


@pytest.fixture
def tls_listener(pki: Pki) -> Iterator[Any]:
    """Start a TLS server with one of the PKI's certificates: ``start(label) -> port``."""
    listeners: list[socket.socket] = []

    def start(label: str) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pki.files[label])
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    raw, _ = listener.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(raw, server_side=True) as secured:
                        secured.recv(65536)
                        secured.sendall(OK)
                except OSError:
                    raw.close()

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("self_signed", "certificate verify failed: self-signed certificate"),
        ("expired", "certificate verify failed: certificate has expired"),
        ("other_name", "certificate verify failed: IP address mismatch"),
    ],
)
def test_tls_errors_name_the_certificate_problem(
    loop_kind: str, tls_listener: Any, pki: Pki, label: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = tls_listener(label)
    with caplog.at_level(logging.ERROR, "pendo_plugin"), pytest.raises(ssl.SSLError, match=problem):
        post(loop_kind, f"https://127.0.0.1:{port}/", ca_bundle=str(pki.ca))
    assert problem in caplog.text


def test_pendo_ca_bundle_adds_a_private_ca_to_the_system_store(
    loop_kind: str, tls_listener: Any, pki: Pki
) -> None:
    port = tls_listener("good")
    with pytest.raises(ssl.SSLError, match="unable to get local issuer certificate"):
        post(loop_kind, f"https://127.0.0.1:{port}/")
    assert post(loop_kind, f"https://127.0.0.1:{port}/", ca_bundle=str(pki.ca))[0].status == 200
    system = len(ssl.create_default_context().get_ca_certs())
    added = HttpTransport(1, str(pki.ca))._context().get_ca_certs()
    assert len(added) == system + 1  # added to the system's CAs, not replacing them


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


def test_cr_lf_in_a_configured_url_is_refused_with_a_clear_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "pendo_plugin"):
        settings = config.load(
            {"track_secret": TRACK_SECRET, "data_url": "https://app.pen\r\ndo.io"}, environ={}
        )
    assert not settings.active
    assert "PENDO_DATA_URL: the URL has a control character" in caplog.text


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("pendo.io:443", "app.pendo.io", 443, True),
        ("pendo.io:443", "app.pendo.io", 8443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("[::1]", "::1", 443, True),
        ("[::1]:8443", "::1", 443, False),
        ("::1", "::1", 443, True),
        (".example.com", "a.example.com", 443, True),
        ("*.example.com", "example.com", 443, True),
        ("*", "anything", 443, True),
        ("", "app.pendo.io", 443, False),
    ],
)
def test_no_proxy_forms(no_proxy: str, host: str, port: int, direct: bool) -> None:
    table = ProxyTable({"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": no_proxy})
    chosen = table.for_origin("https", host, port)
    assert (chosen is None) is direct
    if chosen is not None:
        assert (chosen.host, chosen.port, chosen.tls) == ("proxy.corp", 3128, False)


def test_lower_case_proxy_variables_win_and_all_proxy_is_the_fallback() -> None:
    table = ProxyTable({"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2", "ALL_PROXY": "https://c:3"})
    assert table.for_origin("https", "x", 443).host == "a"  # type: ignore[union-attr]
    assert table.for_origin("http", "x", 80).url == "https://c:3"  # type: ignore[union-attr]


def test_masked_hides_only_the_password() -> None:
    assert masked("http://user:s3cret@proxy:3128") == "http://user:****@proxy:3128"
    assert masked("http://proxy:3128") == "http://proxy:3128"
