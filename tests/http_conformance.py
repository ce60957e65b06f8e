"""Fixtures and helpers of the HTTP conformance suite (``tests/test_http_conformance*.py``): the servers
(nginx, squid, HAProxy in front of the sandbox; a TLS listener per certificate of a temp CA), both event
loops, and the one send path (``Sender`` under a ``Dispatcher``) on a loop of either kind."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pendo_plugin import config, counters, logs
from pendo_plugin.config import Settings
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.dispatch import Dispatcher
from pendo_plugin.delivery.http import Request, Response
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.destination.loop import new_loop
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.sandbox import Sandbox
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.http_servers import OK, Pki, haproxy, make_pki, nginx, running, squid

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
def proxy(pki: Pki) -> Iterator[Squid]:
    """squid: its ports (plain, https, with authentication) and its access log."""
    root = Path(tempfile.mkdtemp(prefix="pendo-squid-"))  # squid's own user must reach it
    argv, ports = squid(root, pki.files["good"])
    try:
        with running(argv, ports["plain"], root / "cache.log"):
            yield Squid(ports["plain"], ports["tls"], ports["auth"], root / "access.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hints(box: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """HAProxy answering 103 Early Hints, then the sandbox's answer."""
    root = tmp_path_factory.mktemp("haproxy")
    argv, port = haproxy(root, int(box.url.rsplit(":", 1)[1]))
    with running(argv, port, root / "haproxy.log"):
        yield port


class Squid(NamedTuple):
    port: int
    tls_port: int
    auth_port: int
    access_log: Path


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
