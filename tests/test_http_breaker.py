"""What an outside review of the HTTP client found (issue 25b), on real loopback sockets and both event
loops: a ``101`` answer that escaped into the loop's error handler, proxy failures that did not name the
proxy (a tunnel granted then closed, a plain proxy's 407 taken for Pendo's answer, a TLS proxy's bad
certificate), a proxy answer without a head end taken as a granted tunnel, URLs sent as they cannot be
written, uvloop failing a complete answer over TLS, and errors without a word (certificates shown as a
tuple, connect timeouts, names that do not resolve). The same through a real app:
``test_http_breaker_apps.py``.

The servers are stand-ins for what no real server does on purpose: each reads a request (or a
``CONNECT``), answers a fixed byte string, and counts what it read."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pendo_plugin import logs
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.http import Request, Response
from pendo_plugin.delivery.proxies import ProxyRefused, ProxyTable
from pendo_plugin.destination.loop import new_loop

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
GRANTED = b"HTTP/1.1 200 Connection established\r\n\r\n"


class Scripted:
    """A loopback server that reads each request head (and its ``Content-Length`` body), counts it and
    answers ``answer``; then closes the connection if ``close``."""

    def __init__(self, answer: bytes, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.requests = 0
        self.heads: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        with client, client.makefile("rb") as reader, contextlib.suppress(OSError, ValueError):
            while head := self._read_request(reader):
                self.requests += 1
                self.heads.append(head)
                client.sendall(self.answer)
                if self.close:
                    return

    @staticmethod
    def _read_request(reader: BinaryIO) -> bytes:
        """The request's head (its body read and skipped), or b"" at the end of the connection."""
        lines = [reader.readline()]
        while lines[-1] not in (b"\r\n", b""):
            lines.append(reader.readline())
        head = b"".join(lines[:-1]).rstrip(b"\r\n")
        length = [int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")]
        reader.read(length[0] if length else 0)
        return head if lines[-1] else b""

    def stop(self) -> None:
        self._sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(answer: bytes, close: bool = False) -> Scripted:
        servers.append(Scripted(answer, close))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in (*PROXY_VARS, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return str(request.param)


def _post(
    loop_kind: str, url: str, timeout: float = 5.0, ca_bundle: str | None = None
) -> Response | Exception:
    """The answer to one POST to ``url``, or the error it fails with, on a new loop of ``loop_kind``."""

    async def post() -> Response | Exception:
        transport = HttpTransport(pool_size=2, ca_bundle=ca_bundle)
        headers = {"Content-Type": "application/json"}
        try:
            return await transport.send(Request("POST", url, b'{"a":1}', headers, timeout))
        except Exception as exc:  # what the senders receive
            return exc
        finally:
            await transport.close()

    loop = new_loop(loop_kind)
    try:
        return loop.run_until_complete(post())
    finally:
        loop.close()


def _failure(loop_kind: str, url: str, timeout: float = 5.0, ca_bundle: str | None = None) -> Exception:
    outcome = _post(loop_kind, url, timeout, ca_bundle)
    assert isinstance(outcome, Exception), outcome
    return outcome


def _tls_once(directory: Path, answer: bytes, expired: bool = False) -> tuple[int, Path]:
    """A TLS server on 127.0.0.1 for one connection: it reads a request, sends ``answer`` and closes
    without ``close_notify`` (a plain TCP close). Its port, and its certificate (self-signed)."""
    cert_path, key_path = _certificate(directory, expired)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, contextlib.suppress(OSError):
            client, _ = listener.accept()
            with context.wrap_socket(client, server_side=True) as secured:
                secured.recv(65536)
                secured.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], cert_path


def test_a_protocol_switch_fails_the_request_without_a_loop_error(
    loop_kind: str, scripted: Callable[..., Scripted], caplog: pytest.LogCaptureFixture
) -> None:
    """A ``101`` with ``Upgrade`` to a POST: httptools raises ``HttpParserUpgrade``, which is not an
    ``HttpParserError``. It escaped ``buffer_updated`` into the loop ("Fatal error: protocol.buffer_updated()
    call failed", a traceback at ERROR in the app's log) and the request failed as "closed by the server"."""
    server = scripted(SWITCH + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        error = _failure(loop_kind, f"http://127.0.0.1:{server.port}/data/track")
    assert isinstance(error, ConnectionError)
    assert "protocol switch (101)" in str(error)
    assert [record.getMessage() for record in caplog.records if record.name == "asyncio"] == []
    assert server.requests == 1, "sent once"


def test_a_proxy_that_grants_the_tunnel_then_closes_is_named(
    loop_kind: str, scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``200 Connection established`` and then a close: the TLS handshake inside fails. It was an
    empty ``ConnectionResetError('')``, naming neither the proxy nor the host."""
    proxy = scripted(GRANTED, close=True)
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:s3cret@127.0.0.1:{proxy.port}")
    error = _failure(loop_kind, "https://pendo.invalid/data/track")
    text = str(error)
    assert isinstance(error, ConnectionError)
    assert f"proxy http://user:****@127.0.0.1:{proxy.port}: TLS with pendo.invalid:443" in text
    assert "s3cret" not in text
    assert proxy.heads[0].startswith(b"CONNECT pendo.invalid:443 HTTP/1.1")


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 200_000, "the proxy's answer has a head over 65536 bytes"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "the proxy refused the tunnel (HTTP 2000)"),
    ],
    ids=["head-without-end", "four-digit-status"],
)
def test_a_proxy_answer_that_is_not_a_2xx_head_is_no_tunnel(
    loop_kind: str,
    scripted: Callable[..., Scripted],
    monkeypatch: pytest.MonkeyPatch,
    answer: bytes,
    named: str,
) -> None:
    """Past 64 KiB without an end, or a status that is not three digits starting with 2, the proxy's
    answer to ``CONNECT`` was taken as granted (its status line began with "2") and TLS was started on
    the rest of its head (``WRONG_VERSION_NUMBER``, the proxy not named)."""
    proxy = scripted(answer)
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")
    error = _failure(loop_kind, "https://pendo.invalid/data/track")
    assert isinstance(error, ConnectionError)
    assert str(error) == f"proxy http://127.0.0.1:{proxy.port}: {named}"


def _certificate(directory: Path, expired: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (``expired``: yesterday, else in a day), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now + datetime.timedelta(days=-1 if expired else 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "cert.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_a_certificate_problem_reads_as_a_sentence(loop_kind: str, tmp_path: Path) -> None:
    """``ssl.SSLError(text)`` shows as ``('TLS with ...',)`` (its ``__str__`` is its args' tuple), in the
    log line and in doctor's output."""
    port, cert_path = _tls_once(tmp_path, b"", expired=True)
    error = _failure(loop_kind, f"https://127.0.0.1:{port}/data/track", ca_bundle=str(cert_path))
    assert str(error) == f"TLS with 127.0.0.1:{port}: certificate verify failed: certificate has expired"


def test_a_connection_not_made_in_time_says_where_to(loop_kind: str, tmp_path: Path) -> None:
    """A server that accepts and never finishes the TLS handshake: the request failed with an empty
    ``TimeoutError()``, which the log and doctor showed as a bare class name."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener:
        error = _failure(loop_kind, f"https://127.0.0.1:{port}/data/track", timeout=0.5)
    assert isinstance(error, TimeoutError)
    assert str(error) == f"no connection to 127.0.0.1:{port} within the timeout"


@pytest.mark.parametrize("value", ["http:// proxy.corp:3128", "http://proxy.corp :3128", "proxy .corp:3128"])
def test_a_proxy_url_with_a_space_inside_is_refused_at_start_up(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A space inside a proxy URL (leading and trailing ones are trimmed) was kept in the host name: every
    request looked ``' proxy.corp'`` up and failed, with no line at start-up saying why."""
    logs.forget()  # the line is logged once per variable and process
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        table = ProxyTable({"HTTPS_PROXY": value})
    with pytest.raises(ProxyRefused, match="a space inside the proxy URL"):
        table.for_origin("https", "app.pendo.io", 443)
    assert any("HTTPS_PROXY=" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ("http://127.0.0.1:{port}/data/segmentio/a key", "a space"),
        ("http://user:s3cret@127.0.0.1:{port}/data/track", "a user or password"),
    ],
    ids=["space-in-path", "userinfo"],
)
def test_a_url_that_cannot_be_sent_as_written_is_refused_before_sending(
    loop_kind: str, scripted: Callable[..., Scripted], template: str, refused: str
) -> None:
    """A space in the path (the webhook URL carries the API key in it) made the request line
    ``POST /data/segmentio/a key HTTP/1.1``; a userinfo went out in the ``Host`` header
    (``Host: user:s3cret@127.0.0.1:port``). Both are refused before a byte is written."""
    server = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    error = _failure(loop_kind, template.format(port=server.port))
    assert isinstance(error, ValueError)
    assert refused in str(error) and "s3cret" not in str(error)
    assert server.requests == 0


PROXY_REFUSAL = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=corp\r\n"
    b"Content-Length: 6\r\n\r\ndenied"
)


def test_a_plain_proxy_that_asks_for_authentication_is_named_not_taken_for_pendo(
    loop_kind: str, scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` with a wrong password, for an ``http://`` Pendo (a local stand-in or forwarder):
    the proxy's 407 was handed up as Pendo's answer, a permanent refusal."""
    proxy = scripted(PROXY_REFUSAL)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:wrong@127.0.0.1:{proxy.port}")
    error = _failure(loop_kind, "http://127.0.0.1:9/data/track")
    assert isinstance(error, ConnectionError)
    assert (
        str(error)
        == f"proxy http://user:****@127.0.0.1:{proxy.port}: proxy authentication required (HTTP 407)"
    )
    assert proxy.heads[0].startswith(b"POST http://127.0.0.1:9/data/track HTTP/1.1")
    assert proxy.requests == 1


def test_an_answer_read_to_its_end_over_tls_without_close_notify_is_complete(
    loop_kind: str, tmp_path: Path
) -> None:
    """An answer without a length ends when the server closes. Over TLS without ``close_notify`` (a
    plain TCP close, as many servers do), asyncio's loop gave the answer and uvloop's failed the request
    ("connection closed by the server (EOF)": no ``eof_received``), so the senders sent again a request
    the server had processed."""
    port, cert_path = _tls_once(tmp_path, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}")
    response = _post(loop_kind, f"https://127.0.0.1:{port}/data/track", ca_bundle=str(cert_path))
    assert isinstance(response, Response), response
    assert (response.status, response.body) == (200, b"{}")


def test_a_pendo_host_that_does_not_resolve_is_named(
    caplog: pytest.LogCaptureFixture, loop_kind: str
) -> None:
    """A typo in ``PENDO_DATA_URL`` or a container without DNS: the error was ``[Errno -2] Name or
    service not known`` and the app's log said only ``network:gaierror``, naming no host."""
    logs.forget()
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        error = _failure(loop_kind, "https://pendo.invalid/data/track")
    assert isinstance(error, socket.gaierror)
    assert "pendo.invalid does not resolve" in str(error)
    assert any(
        "cannot reach Pendo" in r.getMessage() and "pendo.invalid" in r.getMessage() for r in caplog.records
    )


def test_a_tls_proxy_with_a_bad_certificate_is_one_line_naming_it(
    loop_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``HTTPS_PROXY=https://...`` whose certificate has expired: two lines were logged for one failure, the
    first ("cannot reach Pendo: TLS with localhost:port: ...") not saying it was the proxy."""
    port, cert_path = _tls_once(tmp_path, b"", expired=True)
    monkeypatch.setenv("HTTPS_PROXY", f"https://user:s3cret@127.0.0.1:{port}")
    logs.forget()
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        error = _failure(loop_kind, "https://pendo.invalid/data/track", ca_bundle=str(cert_path))
    expected = (
        f"proxy https://user:****@127.0.0.1:{port}: TLS with 127.0.0.1:{port}: certificate verify failed"
    )
    assert str(error).startswith(expected)
    assert [record.getMessage() for record in caplog.records] == [
        f"pendo_plugin: cannot reach Pendo: {error}"
    ]
