"""The default transport: a pool of HTTP/1.1 keep-alive connections
(:class:`~pendo_plugin.delivery.connection.Connection`, asyncio protocols parsed by ``httptools``).

Pendo takes one track event per request, so this runs once per event: it is kept to one
``write`` and one parse per request, with the request head encoded once per endpoint, one parser
per connection, and answers read into one buffer per transport. On an idle connection a request is
written at once and its future is the connection's (:meth:`HttpTransport.start`: no task). It replaces
an aiohttp session, which costs more process CPU per delivered event (``bench/clients.py``; figures
in docs/design.md).

What it keeps from a full client: a keep-alive pool per origin whose idle connections expire after
``IDLE_SECONDS``; Happy Eyeballs (RFC 8305, ``aiohappyeyeballs``: the next address is tried after
``HAPPY_EYEBALLS_DELAY``, families interleaved); TLS with the system's trust store plus
``PENDO_CA_BUNDLE``'s extra CAs and host name checks, a failure naming the certificate problem; proxies
from the environment (:mod:`~pendo_plugin.delivery.proxies`: ``CONNECT`` tunnels for https, absolute URLs
for http, ``Proxy-Authorization`` from the proxy URL's userinfo), a failure naming the proxy; a total
timeout per request (checked every ``DEADLINE_TICK`` by one timer per transport); bounded answers; no
redirects (:func:`~pendo_plugin.delivery.http.refuse_redirect`). A request is never sent twice by the
transport: a failure after it was written (the server may have processed it, RFC 9112 section 9.3.1) goes
to the senders, whose retries are counted and bounded by the retry settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohappyeyeballs

from pendo_plugin.delivery.connection import Connection, Key, Origin
from pendo_plugin.delivery.http import USER_AGENT, Request, Response
from pendo_plugin.delivery.proxies import Proxy, ProxyTable
from pendo_plugin.logs import log_once

READ_BUFFER_BYTES = 64 * 1024
DEADLINE_TICK = 0.05  # how often requests in flight are checked against their deadline (seconds)
MAX_HEADS_CACHED = 64
IDLE_SECONDS = 15.0  # a pooled connection unused this long is closed (aiohttp's default keep-alive)
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's recommended connection attempt delay
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})  # HEAD's answer has no body to read


class HttpTransport:
    """Keep-alive pooled HTTP/1.1 (see the module docstring); create it on the loop that will use it.
    ``ca_bundle``: a PEM file of CAs trusted besides the system's (``PENDO_CA_BUNDLE``)."""

    def __init__(self, pool_size: int = 100, ca_bundle: str | None = None) -> None:
        self._pool_size = max(1, pool_size)
        self._ca_bundle = ca_bundle
        self._idle: dict[Key, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._proxies = ProxyTable(os.environ)
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[bytes, Key]] = {}
        self._last_head: tuple[Mapping[str, str], str, str, tuple[bytes, Key]] | None = None
        self._ssl: ssl.SSLContext | None = None
        self.buffer = memoryview(bytearray(READ_BUFFER_BYTES))  # every connection reads into it
        self._watch: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None

    def _head(self, request: Request) -> tuple[bytes, Key]:
        """The request line and headers up to ``Content-Length``, encoded once per endpoint. The last
        one is matched by its headers object (requests are read-only, and the senders build one headers
        object per endpoint and settings): 0.3 us where the key of the cache below costs 0.8 us."""
        last = self._last_head
        if last is not None and last[0] is request.headers and last[1:3] == (request.url, request.method):
            return last[3]
        key = (request.method, request.url, tuple(request.headers.items()))
        cached = self._heads.get(key)
        if cached is None:
            if len(self._heads) >= MAX_HEADS_CACHED:
                self._heads.clear()
            cached = self._heads[key] = self._encode_head(request)
        self._last_head = (request.headers, request.url, request.method, cached)
        return cached

    def _encode_head(self, request: Request) -> tuple[bytes, Key]:
        if request.method not in METHODS:
            raise ValueError(f"method {request.method[:16]!r} is not supported")
        if any(char in request.url for char in "\0\r\n\t "):  # a space would end the request target
            raise ValueError("a space or control character in the URL")
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("only http and https URLs with a host are supported")
        if "@" in parts.netloc:  # it would be sent in the Host header (and to a proxy)
            raise ValueError("a user or password in the URL")
        origin: Origin = (
            parts.scheme,
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
        )
        proxy = self._proxies.for_origin(*origin)  # ProxyRefused (a ValueError) names the variable
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # through a plain proxy: the absolute form
        lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parts.netloc}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        if proxy is not None and parts.scheme == "http" and proxy.auth:
            lines.append(f"Proxy-Authorization: {proxy.auth}")
        if any(char in line for line in lines for char in "\0\r\n"):
            raise ValueError("a line break or NUL in the URL or a header")
        text = "\r\n".join(lines)
        return (text + "\r\nContent-Length: ").encode("utf-8"), (origin, proxy)

    def start(self, request: Request) -> asyncio.Future[Response]:
        """Send ``request``; the future gets its answer. On an idle keep-alive connection (the common
        case) the request is written at once and the future is that connection's: no task, no
        coroutine. Raises ValueError for a URL, method or header it will not send."""
        head, key = self._head(request)
        data = b"%s%d\r\n\r\n%s" % (head, len(request.body), request.body)
        connection = self._reuse(key)
        if connection is not None:  # its loop is the running one (asking asyncio costs a getpid call)
            return self._exchange(connection, data, connection.loop.time() + request.timeout)
        deadline = asyncio.get_running_loop().time() + request.timeout
        return asyncio.ensure_future(self._fresh(key, data, deadline))

    async def send(self, request: Request) -> Response:
        return await self.start(request)

    async def _fresh(self, key: Key, data: bytes, deadline: float) -> Response:
        """``data`` sent on a new connection."""
        connection = await self._connection(*key, deadline)
        if not connection.open:  # the server closed it as soon as it accepted it: nothing was written
            connection.abort()
            raise ConnectionResetError("connection closed by the server before the request was sent")
        return await self._exchange(connection, data, deadline)

    def _exchange(self, connection: Connection, data: bytes, deadline: float) -> asyncio.Future[Response]:
        self._busy.add(connection)
        if self._watch is None:
            self._watch = connection.loop.call_later(DEADLINE_TICK, self._expire_overdue)
        return connection.send(data, deadline)

    def done_with(self, connection: Connection) -> None:
        """``connection`` carries no request now: back to the pool if it can carry another (and the pool
        has room for it)."""
        self._busy.discard(connection)
        key = connection.key
        if key is None or not connection.open:
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._pool_size:
            connection.idle_since = connection.loop.time()
            idle.append(connection)
            if self._sweep is None:
                self._sweep = connection.loop.call_later(IDLE_SECONDS, self._close_idle, connection.loop)
        else:
            connection.abort()

    def _close_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the pooled connections unused for ``IDLE_SECONDS``: one timer per transport, armed
        while any connection is pooled."""
        self._sweep = None
        oldest = loop.time() - IDLE_SECONDS
        for key, idle in list(self._idle.items()):
            for connection in [connection for connection in idle if connection.idle_since <= oldest]:
                idle.remove(connection)
                connection.abort()
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweep = loop.call_later(IDLE_SECONDS / 3, self._close_idle, loop)

    def _expire_overdue(self) -> None:
        """Fail the requests whose time is up: one timer per transport while requests are in flight,
        instead of a timer armed and cancelled per request (within ``DEADLINE_TICK`` of the deadline)."""
        self._watch = None
        if not self._busy:
            return
        loop = next(iter(self._busy)).loop
        now = loop.time()
        for connection in [connection for connection in self._busy if connection.deadline <= now]:
            connection.expire()
        self._watch = loop.call_later(DEADLINE_TICK, self._expire_overdue)

    def _reuse(self, key: Key) -> Connection | None:
        """The most recently used idle connection for ``key`` (origin, proxy) that is still open and
        has not been idle for ``IDLE_SECONDS``, if any."""
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.open and connection.loop.time() - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.abort()
        return None

    async def _connection(self, origin: Origin, proxy: Proxy | None, deadline: float) -> Connection:
        """A new connection to ``origin``, made within ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        connection = Connection(asyncio.get_running_loop(), self)
        try:
            await asyncio.wait_for(self._connect(connection, origin, proxy), remaining)
        except BaseException as exc:
            connection.abort()
            if isinstance(exc, asyncio.TimeoutError) and proxy is not None:
                raise _noted(ConnectionError(f"proxy {proxy.shown}: no tunnel within the timeout")) from exc
            if isinstance(exc, asyncio.TimeoutError):
                raise TimeoutError(f"no connection to {origin[1]}:{origin[2]} within the timeout") from exc
            raise
        connection.key = (origin, proxy)
        return connection

    def _context(self) -> ssl.SSLContext:
        """The system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` as OpenSSL reads them) plus the
        CAs of ``PENDO_CA_BUNDLE``; certificate and host name verified."""
        if self._ssl is None:
            context = ssl.create_default_context()
            if self._ca_bundle:
                try:
                    context.load_verify_locations(cafile=self._ca_bundle)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    log_once(
                        "ca-bundle",
                        logging.ERROR,
                        "pendo_plugin: PENDO_CA_BUNDLE=%s could not be loaded (%s); only the system's "
                        "trust store is used",
                        self._ca_bundle,
                        exc.__class__.__name__,
                    )
            self._ssl = context
        return self._ssl

    async def _dial(
        self, connection: Connection, host: str, port: int, tls: ssl.SSLContext | None, name: str
    ) -> None:
        """Open ``connection`` to ``host``:``port``, each address tried in turn (Happy Eyeballs), TLS
        verified for ``name`` if ``tls``."""
        loop = connection.loop
        try:
            infos = _literal(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:  # its own text names no host
            raise socket.gaierror(exc.errno, f"{host} does not resolve: {exc.strerror}") from exc
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
        )
        try:
            await loop.create_connection(
                lambda: connection, sock=sock, ssl=tls, server_hostname=name if tls else None
            )
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise _tls_refused(name, port, exc) from exc
        except BaseException:
            sock.close()
            raise

    async def _connect(self, connection: Connection, origin: Origin, proxy: Proxy | None) -> None:
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        if proxy is None:
            try:
                await self._dial(connection, host, port, tls, host)
            except (socket.gaierror, ssl.SSLError) as exc:
                _noted(exc)  # the setup's problem (a typo, no DNS, a missing CA), logged as a proxy's is
                raise
            return
        try:
            via_tls = self._context() if proxy.tls else None
            await self._dial(connection, proxy.host, proxy.port, via_tls, proxy.host)
            if tls is None:
                return  # plain http through the proxy: absolute URLs on this connection
            await connection.tunnel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", proxy.auth)
        except (OSError, ValueError) as exc:
            raise _noted(ConnectionError(f"proxy {proxy.shown}: {_reason(exc)}")) from exc
        assert connection.transport is not None
        try:
            secured = await connection.loop.start_tls(
                connection.transport, connection, tls, server_hostname=host
            )
        except ssl.SSLCertVerificationError as exc:
            raise _noted(_tls_refused(host, port, exc)) from exc
        except OSError as exc:  # the proxy granted the tunnel, then closed it or sent what is not TLS
            tunnel = f"proxy {proxy.shown}: TLS with {host}:{port} through the tunnel failed"
            raise _noted(ConnectionError(f"{tunnel}: {_reason(exc)}")) from exc
        if secured is None:
            raise ConnectionError(f"TLS with {host}:{port} through proxy {proxy.shown} could not start")
        connection.transport = secured  # type: ignore[assignment]

    async def close(self) -> None:
        for timer in (self._watch, self._sweep):
            if timer is not None:
                timer.cancel()
        self._watch = self._sweep = None
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        for connection in list(self._busy):
            connection.abort()
        self._idle.clear()
        self._busy.clear()


def _literal(host: str, port: int) -> list[aiohappyeyeballs.AddrInfoType] | None:
    """The address of an IP literal without a lookup (which would wait for a thread), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


def _tls_refused(host: str, port: int, exc: ssl.SSLCertVerificationError) -> ssl.SSLError:
    """The error naming what was wrong with the certificate, as OpenSSL says it (``self-signed
    certificate``, ``certificate has expired``, ``Hostname mismatch, ...``). Made with an error number:
    an ``SSLError`` of one argument shows as a tuple (``('TLS with ...',)``)."""
    problem = exc.verify_message or exc.reason or "unknown reason"
    return ssl.SSLError(ssl.SSL_ERROR_SSL, f"TLS with {host}:{port}: certificate verify failed: {problem}")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _noted(error: OSError) -> OSError:
    """``error`` (a proxy or certificate problem: the setup's, not Pendo's) logged once by its text."""
    log_once(f"connect:{error}", logging.ERROR, "pendo_plugin: cannot reach Pendo: %s", error)
    return error
