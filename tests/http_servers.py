"""Real servers for the HTTP conformance suite, on 127.0.0.1 with temp configs and free ports: nginx,
squid and HAProxy from Debian (skipped only when the binary is missing), a temp CA with its certificates,
and small stand-ins for what no server does on purpose (record a request then drop the connection, an
interim answer then a 503, a body shorter than its Content-Length, accept then close)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

START_SECONDS = 20.0  # bounded wait for a server's port


@contextmanager
def threaded_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Python's threading HTTP server with ``handler`` on a free loopback port, for answers no real
    server gives (hostile bodies); yields its base URL and stops it after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited: {log.read_text(errors='replace')[-2000:]}")
        with suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args[0]} did not listen on {port} in {START_SECONDS} s")


@contextmanager
def running(argv: list[str], port: int, log: Path) -> Iterator[None]:
    """``argv`` started, waited for until ``port`` accepts, stopped afterwards."""
    binary = shutil.which(argv[0]) or (
        f"/usr/sbin/{argv[0]}" if Path(f"/usr/sbin/{argv[0]}").exists() else None
    )
    if binary is None:
        pytest.skip(f"{argv[0]} is not installed")
    with log.open("ab") as out:
        process = subprocess.Popen([binary, *argv[1:]], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# ----- certificates


@dataclass
class Pki:
    """A temp CA and PEM files: ``ca`` (the CA), ``good`` (localhost, 127.0.0.1, ::1), ``expired`` (by the
    CA, ended yesterday), ``other_name`` (by the CA, for example.invalid only), ``self_signed``."""

    root: Path
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(root: Path) -> Pki:
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pendo test CA"))
        .issuer_name(_name("pendo test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(root)
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(
        label: str,
        names: list[x509.GeneralName],
        start: datetime.datetime,
        end: datetime.datetime,
        self_signed: bool = False,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(label))
            .issuer_name(_name(label) if self_signed else ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        certificate = builder.sign(key if self_signed else ca_key, hashes.SHA256())
        cert_path, key_path = root / f"{label}.pem", root / f"{label}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pki.files[label] = (cert_path, key_path)

    local: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    leaf("good", local, now - day, now + day)
    leaf("expired", local, now - 3 * day, now - day)
    leaf("other_name", [x509.DNSName("example.invalid")], now - day, now + day)
    leaf("self_signed", local, now - day, now + day, self_signed=True)
    return pki


# ----- Debian's servers


def nginx(root: Path, upstream: str, cert: tuple[Path, Path]) -> tuple[list[str], dict[str, int]]:
    """argv and ports of an nginx in front of ``upstream``: ``plain`` (keep-alive rotated every 2
    requests, bodies over 4 KiB refused with 413) and ``tls`` (127.0.0.1 and [::1], ``cert``)."""
    ports = {"plain": free_port(), "tls": free_port()}
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / name).mkdir(exist_ok=True)
    (root / "nginx.conf").write_text(f"""
daemon off; master_process off; worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {root}/access.log;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  keepalive_requests 2; client_max_body_size 4k;
  server {{ listen 127.0.0.1:{ports["plain"]};
           location / {{ proxy_pass {upstream}; proxy_http_version 1.1; }} }}
  server {{ listen 127.0.0.1:{ports["tls"]} ssl; listen [::1]:{ports["tls"]} ssl;
           ssl_certificate {cert[0]}; ssl_certificate_key {cert[1]};
           location / {{ proxy_pass {upstream}; proxy_http_version 1.1; }} }}
}}
""")
    return ["nginx", "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")], ports


PROXY_USER, PROXY_PASSWORD = "pendo", "s3cret-proxy"


def squid(root: Path, cert: tuple[Path, Path]) -> tuple[list[str], dict[str, int]]:
    """argv and ports of a squid that caches nothing and allows CONNECT to any port but 9: ``plain``
    (http), ``tls`` (an https proxy with ``cert``) and ``auth`` (basic proxy authentication, ``PROXY_USER``
    and ``PROXY_PASSWORD``)."""
    ports = {"plain": free_port(), "tls": free_port(), "auth": free_port()}
    root.chmod(0o777)  # squid drops to its own user, which must read what it needs here
    for source, name in ((cert[0], "proxy.pem"), (cert[1], "proxy.key")):
        shutil.copyfile(source, root / name)
        (root / name).chmod(0o644)
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (squid's password file is made with it)")
    digest = subprocess.run(  # MD5-crypt, which squid's basic_ncsa_auth reads
        ["openssl", "passwd", "-1", "-salt", "pendo25", PROXY_PASSWORD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (root / "passwd").write_text(f"{PROXY_USER}:{digest}\n")
    (root / "passwd").chmod(0o644)
    (root / "squid.conf").write_text(f"""
http_port 127.0.0.1:{ports["plain"]}
https_port 127.0.0.1:{ports["tls"]} tls-cert={root}/proxy.pem tls-key={root}/proxy.key
http_port 127.0.0.1:{ports["auth"]} name=authport
auth_param basic program /usr/lib/squid/basic_ncsa_auth {root}/passwd
auth_param basic realm pendo
acl authed proxy_auth REQUIRED
acl auth_port myportname authport
pid_filename {root}/squid.pid
cache_log {root}/cache.log
access_log stdio:{root}/access.log
coredump_dir {root}
cache deny all
cache_mem 4 MB
acl refused_port port 9
http_access deny CONNECT refused_port
http_access deny auth_port !authed
http_access allow all
shutdown_lifetime 0 seconds
""")
    return ["squid", "-N", "-f", str(root / "squid.conf")], ports


def haproxy(root: Path, upstream_port: int) -> tuple[list[str], int]:
    """argv and port of an HAProxy that answers ``103 Early Hints`` before forwarding to the upstream."""
    port = free_port()
    (root / "haproxy.cfg").write_text(f"""
defaults
  mode http
  timeout connect 5s
  timeout client 20s
  timeout server 20s
frontend hints
  bind 127.0.0.1:{port}
  http-request early-hint Link "</style.css>; rel=preload"
  default_backend app
backend app
  http-request set-header Host 127.0.0.1:{upstream_port}
  server app 127.0.0.1:{upstream_port}
""")
    return ["haproxy", "-db", "-f", str(root / "haproxy.cfg")], port


# ----- stand-ins for what no server does


Answer = Callable[[int, bytes], "bytes | None"]  # (request number, request) -> bytes to send, None: drop


class StandIn:
    """A loopback server that reads whole requests (head and Content-Length body), records them, and
    answers each with ``answer(number, request)``: bytes, or None to drop the connection unanswered."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after  # close the connection after each answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        with client:
            client.settimeout(20)
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = self._recv(client)
                    if not chunk:
                        self.closed_by_client += 1
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(buffer) < length:
                    chunk = self._recv(client)
                    if not chunk:
                        return
                    buffer += chunk
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.requests.append(request)
                reply = self.answer(len(self.requests), request)
                if reply is None:
                    return
                with suppress(OSError):
                    client.sendall(reply)
                if self.close_after:
                    return

    @staticmethod
    def _recv(client: socket.socket) -> bytes:
        try:
            return client.recv(65536)
        except OSError:
            return b""

    def bodies(self) -> list[bytes]:
        return [request.partition(b"\r\n\r\n")[2] for request in self.requests]

    def stop(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        self._listener.close()
        self._thread.join(5)


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
