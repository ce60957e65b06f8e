"""The default HTTP transport on real loopback sockets: keep-alive reuse, TLS verification, proxies
(``HTTPS_PROXY`` CONNECT tunnels with credentials, plain ``HTTP_PROXY``), timeouts, and a connection
the server closes after its answer replaced (tests/test_http_conformance*.py: real servers and proxies)."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import ipaddress
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import Request, Response
from pendo_plugin.destination.loop import new_loop

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every POST with what it received; counts connections and requests."""

    protocol_version = "HTTP/1.1"
    close_after_answer = False

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        answer = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Seen", str(len(body)))
        if self.server.close_after_answer:  # type: ignore[attr-defined]
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer + self.server.trailing)  # type: ignore[attr-defined]
        if self.server.close_after_answer:  # type: ignore[attr-defined]
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.connections = 0
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.close_after_answer = False
        self.trailing = b""  # bytes sent after each answer, which nobody asked for
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(10)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def plain(no_proxy_env: None) -> Iterator[_Server]:
    server = _Server()
    yield server
    server.stop()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, valid from now for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(cert: tuple[Path, Path], no_proxy_env: None) -> Iterator[_Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    server = _Server(context)
    yield server
    server.stop()


class _ConnectProxy:
    """A CONNECT-only proxy on loopback that relays bytes and records each CONNECT request's head."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.heads: list[str] = []
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head.decode("latin-1"))
            authority = head.split(b" ")[1].decode()
            host, _, port = authority.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(client, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.2)
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test on both of the worker's event loops (``PENDO_EVENT_LOOP``): TLS, tunnels and timeouts
    go through each loop's own transports."""
    global _LOOP_KIND
    _LOOP_KIND = str(request.param)
    yield _LOOP_KIND
    _LOOP_KIND = "asyncio"


_LOOP_KIND = "asyncio"


def _run(coroutine: Any) -> Any:
    """``coroutine`` run to its end on a new loop of the kind under test."""
    loop = new_loop(_LOOP_KIND)
    if _LOOP_KIND == "uvloop":
        import uvloop

        assert isinstance(loop, uvloop.Loop)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def _post(url: str, count: int = 1, timeout: float = 5.0, body: bytes = b'{"a":1}') -> list[Response]:
    async def run() -> list[Response]:
        transport = HttpTransport(pool_size=4)
        try:
            headers = {"Content-Type": "application/json", "x-pendo-integration-key": "s3cret"}
            return [await transport.send(Request("POST", url, body, headers, timeout)) for _ in range(count)]
        finally:
            await transport.close()

    return list(_run(run()))


def test_requests_reuse_one_keep_alive_connection(plain: _Server) -> None:
    answers = _post(f"http://127.0.0.1:{plain.port}/data/track?x=1", count=20, body=b'{"event":"e"}')
    assert [answer.status for answer in answers] == [200] * 20
    assert answers[0].body == b'{"ok":true}' and answers[0].headers["x-seen"] == "13"
    assert plain.connections == 1
    path, headers, body = plain.seen[0]
    assert (path, body) == ("/data/track?x=1", b'{"event":"e"}')
    assert headers["x-pendo-integration-key"] == "s3cret"
    assert headers["Host"] == f"127.0.0.1:{plain.port}"


def test_a_connection_the_server_closes_after_its_answer_is_replaced(plain: _Server) -> None:
    plain.close_after_answer = True
    answers = _post(f"http://127.0.0.1:{plain.port}/data/track", count=5)
    assert [answer.status for answer in answers] == [200] * 5
    assert len(plain.seen) == 5 and plain.connections == 5


def test_bytes_after_an_answer_drop_the_connection(plain: _Server) -> None:
    plain.trailing = b"HTTP/1.1 500 Stale\r\nContent-Length: 0\r\n\r\n"
    answers = _post(f"http://127.0.0.1:{plain.port}/data/track", count=3)
    assert [answer.status for answer in answers] == [200] * 3  # never the stray answer
    assert plain.connections == 3  # a connection out of step is not reused


def test_tls_is_verified_against_the_trust_store(
    tls_server: _Server, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/data/track"
    with pytest.raises(ssl.SSLError, match="certificate verify failed: self-signed certificate"):
        _post(url)  # a self-signed certificate the system does not trust: nothing is sent
    assert tls_server.seen == []
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    assert [answer.status for answer in _post(url, count=3)] == [200] * 3
    assert len(tls_server.seen) == 3 and tls_server.connections == 1


def test_https_goes_through_a_connect_tunnel_with_proxy_credentials(
    tls_server: _Server, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _ConnectProxy()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        answers = _post(f"https://localhost:{tls_server.port}/data/track", count=3)
    finally:
        proxy.stop()
    assert [answer.status for answer in answers] == [200] * 3
    assert len(proxy.heads) == 1  # one tunnel, kept alive for all three
    assert proxy.heads[0].startswith(f"CONNECT localhost:{tls_server.port} HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in proxy.heads[0]  # user:p@ss
    assert "s3cret" not in proxy.heads[0]  # the secret travels inside the tunnel only
    assert tls_server.seen[0][1]["x-pendo-integration-key"] == "s3cret"


def test_plain_http_goes_to_the_http_proxy_in_absolute_form(
    plain: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _Server()  # it records what it is asked for, and answers itself
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        answers = _post("http://pendo.invalid:8080/data/track")
    finally:
        proxy.stop()
    assert answers[0].status == 200
    assert proxy.seen[0][0] == "http://pendo.invalid:8080/data/track"
    assert plain.seen == []


def test_no_proxy_is_honoured(plain: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _post(f"http://127.0.0.1:{plain.port}/data/track")[0].status == 200
    assert len(plain.seen) == 1


def test_a_silent_server_times_out(no_proxy_env: None) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            _post(f"http://127.0.0.1:{silent.getsockname()[1]}/data/track", timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_line_break_in_a_header_is_refused_before_sending(plain: _Server) -> None:
    async def run() -> None:
        transport = HttpTransport()
        try:
            await transport.send(
                Request("POST", f"http://127.0.0.1:{plain.port}/x", b"{}", {"x-key": "a\r\nInjected: 1"})
            )
        finally:
            await transport.close()

    with pytest.raises(ValueError, match="line break"):
        _run(run())
    assert plain.seen == []


def test_answer_headers_are_read_from_its_head_when_asked_for(plain: _Server) -> None:
    [answer] = _post(f"http://127.0.0.1:{plain.port}/data/track")

    assert answer.status == 200
    assert answer.body == b'{"ok":true}'
    assert answer.headers["x-seen"] == answer.headers["X-Seen"] == "7"
    assert answer.headers["Content-Length"] == "11"
    assert "Server" in answer.headers


@pytest.fixture
def huge_head_url() -> Iterator[str]:
    """A server whose answer head is larger than the transport reads (128 KiB of header lines)."""
    listener = socket.create_server(("127.0.0.1", 0))
    lines = b"".join(b"X-Filler-%05d: %s\r\n" % (number, b"v" * 48) for number in range(2048))

    def serve() -> None:
        listener.settimeout(10)
        try:
            client, _ = listener.accept()
        except OSError:
            return
        with client:
            client.recv(65536)
            with contextlib.suppress(OSError):  # the transport hangs up once the head passed its bound
                client.sendall(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/data/track"
    listener.close()
    thread.join(10)


def test_an_answer_head_past_the_bound_fails_the_request(huge_head_url: str, no_proxy_env: None) -> None:
    with pytest.raises(ConnectionError, match="head too large"):
        _post(huge_head_url)
