"""The default transport: HTTP/1.1 keep-alive connections as asyncio protocols, answers parsed by
``httptools`` (llhttp, the parser Node.js uses).

Pendo takes one track event per request, so this runs once per event: it is kept to one
``write`` and one parse per request, with the request head encoded once per endpoint, one parser
per connection, and answers read into one buffer per transport (``asyncio.BufferedProtocol``:
``recv_into``, where a plain protocol gets a new 256 KiB ``bytes`` per read, which costs an
``mmap``, an ``mremap`` and a ``munmap`` per answer). It replaces
an aiohttp session, whose general machinery (per-request objects, tracing hooks, cookie jar,
multidict headers, a task per connection) cost about four times the CPU per request here (see
docs/performance.md).

What it keeps from a full client: a keep-alive pool per origin, TLS with the system's trust store
and host name checks (``ssl.create_default_context``), ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
read once from the environment (``CONNECT`` tunnels for https, absolute URLs for http; userinfo in
the proxy URL becomes ``Proxy-Authorization``), a total timeout per request (checked every
``DEADLINE_TICK`` by one timer per transport), bounded answers, and
no redirects (:func:`~pendo_plugin.delivery.http.refuse_redirect`). A request that fails on a
reused connection before any answer arrived (the server closed it while idle) is sent once more on
a new connection.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.request
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import httptools
from multidict import CIMultiDict

from pendo_plugin import counters
from pendo_plugin.delivery.http import (
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    RedirectRefused,
    Request,
    Response,
    refuse_redirect,
)

MAX_HEAD_BYTES = 64 * 1024
READ_BUFFER_BYTES = 64 * 1024
DEADLINE_TICK = 0.05  # how often requests in flight are checked against their deadline (seconds)
MAX_HEADS_CACHED = 64
Origin = tuple[str, str, int]  # scheme, host, port


class _Answer:
    """One answer being read: headers and a body bounded by ``MAX_RESPONSE_BYTES``."""

    __slots__ = ("body", "head_bytes", "headers", "truncated")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.head_bytes = 0
        self.truncated = False


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; carries one request at a time. ``buffer`` is where the socket is
    read into: shared by the connections of one transport (each read is consumed before the next)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: HttpTransport) -> None:
        self.loop = loop
        self._owner = owner
        self._buffer = owner.buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.key: tuple[Origin, str | None] | None = None
        self.deadline = 0.0  # loop time by which the current request must have its answer
        self._data = b""  # the current request (sent once more elsewhere if this connection was stale)
        self._status = 0
        self._waiter: asyncio.Future[Response] | None = None
        self._answer = _Answer()
        self._parser: Any = None  # created for the first request, kept for the connection's life
        self._active = False  # a request is waiting for its answer
        self._tunnel: asyncio.Future[bytes] | None = None
        self._raw = bytearray()

    # ----- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio classes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionResetError(
            f"connection closed by the server ({type(exc).__name__ if exc else 'EOF'})"
        )
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(error)
        if self._active:
            self._fail(error)

    def eof_received(self) -> bool:
        if self._active and self._status:
            self._finish(keep=False)  # an answer without a length ends at EOF
        return False

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from the server (a view into the shared buffer: used up before returning)."""
        if self._tunnel is not None:
            self._raw += data
            complete = b"\r\n\r\n" in self._raw or len(self._raw) > MAX_HEAD_BYTES
            if complete and not self._tunnel.done():
                self._tunnel.set_result(bytes(self._raw))
            return
        waiter = self._waiter
        if waiter is None or waiter.done() or not self._active:
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"invalid HTTP answer: {type(exc).__name__}"))
            return
        if self._answer.truncated:
            counters.record("response_truncated")
            self._finish(keep=False)

    # ----- httptools callbacks

    def on_message_begin(self) -> None:
        if not self._active:  # more bytes after the answer: out of step, never reuse this connection
            raise httptools.HttpParserError("an answer nobody asked for")

    def on_status(self, status: bytes) -> None:
        self._status = int(self._parser.get_status_code())

    def on_header(self, name: bytes, value: bytes) -> None:
        answer = self._answer
        answer.head_bytes += len(name) + len(value) + 4
        if answer.head_bytes > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("answer head too large")
        answer.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, chunk: bytes) -> None:
        answer = self._answer
        if answer.truncated:
            return
        room = MAX_RESPONSE_BYTES - len(answer.body)
        if len(chunk) > room:
            chunk = chunk[:room]
            answer.truncated = True
        answer.body += chunk

    def on_message_complete(self) -> None:
        if not self._answer.truncated:
            self._finish(keep=bool(self._parser.should_keep_alive()))

    # ----- requests

    def send(self, data: bytes, deadline: float) -> asyncio.Future[Response]:
        """Write one request, to be answered by ``deadline`` (loop time); the future gets its answer,
        or the error (a 3xx: :class:`~pendo_plugin.delivery.http.RedirectRefused`)."""
        assert self.transport is not None
        self._answer = _Answer()
        self._status = 0
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
        self._active = True
        self._data = data
        self.deadline = deadline
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._waiter = waiter
        self.transport.write(data)
        return waiter

    @property
    def open(self) -> bool:
        """Whether the connection can carry a request."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def _finish(self, keep: bool) -> None:
        """The answer is complete: the connection goes back to the pool (``keep``) and the waiter gets
        the answer (a redirect is refused, never followed)."""
        waiter, answer = self._waiter, self._answer
        self._active = False
        self._waiter = None
        if not keep:
            self.abort()
        self._owner.done_with(self)
        if waiter is None or waiter.done():
            return
        response = Response(self._status, CIMultiDict(answer.headers), bytes(answer.body))
        if 300 <= response.status < 400:
            try:
                refuse_redirect(response)
            except RedirectRefused as exc:
                waiter.set_exception(exc)
                return
        waiter.set_result(response)

    def _fail(self, error: Exception) -> None:
        """The request failed: on a reused connection that got no byte of an answer (the server
        closed it while idle) it is sent once more on a new one, else the waiter gets ``error``."""
        waiter = self._waiter
        stale = self.reused and self._active and self._status == 0 and not isinstance(error, TimeoutError)
        self._active = False
        self._waiter = None
        self.abort()
        self._owner.done_with(self)
        if waiter is None or waiter.done():
            return
        if stale and self.key is not None:
            self._owner.resend(waiter, self.key, self._data, self.deadline)
        else:
            waiter.set_exception(error)

    def expire(self) -> None:
        """The request's time is up: fail it and drop the connection."""
        self._fail(TimeoutError("no answer within the request timeout"))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ----- proxy tunnels

    async def tunnel(self, authority: str, proxy_auth: str | None) -> None:
        """Ask the proxy (this connection) for a ``CONNECT`` tunnel to ``authority``."""
        assert self.transport is not None
        self._tunnel = self.loop.create_future()
        auth = f"Proxy-Authorization: {proxy_auth}\r\n" if proxy_auth else ""
        self.transport.write(
            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode("latin-1")
        )
        head = await self._tunnel
        self._tunnel = None
        self._raw = bytearray()
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or not line[1].startswith(b"2"):
            self.abort()
            code = line[1][:3].decode("ascii", "replace") if len(line) >= 2 else "?"
            raise ConnectionRefusedError(f"the proxy refused the tunnel (HTTP {code})")


class HttpTransport:
    """Keep-alive pooled HTTP/1.1 (see the module docstring); create it on the loop that will use it."""

    def __init__(self, pool_size: int = 100) -> None:
        self._pool_size = max(1, pool_size)
        self._idle: dict[tuple[Origin, str | None], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._proxies = urllib.request.getproxies()
        self._proxy_by_origin: dict[Origin, str | None] = {}
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[bytes, Origin, str | None]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.buffer = memoryview(bytearray(READ_BUFFER_BYTES))  # every connection reads into it
        self._watch: asyncio.TimerHandle | None = None
        self._resends: set[asyncio.Task[Response]] = set()

    def _proxy_for(self, origin: Origin) -> str | None:
        if origin not in self._proxy_by_origin:
            proxy = self._proxies.get(origin[0])
            bypass = proxy is None or urllib.request.proxy_bypass(origin[1])
            self._proxy_by_origin[origin] = None if bypass else proxy
        return self._proxy_by_origin[origin]

    def _head(self, request: Request) -> tuple[bytes, Origin, str | None]:
        """The request line and headers up to ``Content-Length``, encoded once per endpoint."""
        key = (request.method, request.url, tuple(request.headers.items()))
        cached = self._heads.get(key)
        if cached is not None:
            return cached
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("only http and https URLs with a host are supported")
        origin: Origin = (
            parts.scheme,
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
        )
        proxy = self._proxy_for(origin)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # through a plain proxy: the absolute form
        lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parts.netloc}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        if proxy is not None and parts.scheme == "http" and (auth := _proxy_auth(proxy)):
            lines.append(f"Proxy-Authorization: {auth}")
        if any(char in line for line in lines for char in "\0\r\n"):
            raise ValueError("a line break or NUL in the URL or a header")
        text = "\r\n".join(lines)
        head = (text + "\r\nContent-Length: ").encode("utf-8")
        if len(self._heads) >= MAX_HEADS_CACHED:
            self._heads.clear()
        self._heads[key] = (head, origin, proxy)
        return head, origin, proxy

    def start(self, request: Request) -> asyncio.Future[Response]:
        """Send ``request``; the future gets its answer. On an idle keep-alive connection (the common
        case) the request is written at once and the future is that connection's: no task, no
        coroutine. Raises ValueError for a URL or header it will not send."""
        head, origin, proxy = self._head(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout
        data = b"%s%d\r\n\r\n%s" % (head, len(request.body), request.body)
        connection = self._reuse((origin, proxy))
        if connection is not None:
            return self._exchange(connection, data, deadline)
        return asyncio.ensure_future(self._fresh((origin, proxy), data, deadline))

    async def send(self, request: Request) -> Response:
        return await self.start(request)

    async def _fresh(self, key: tuple[Origin, str | None], data: bytes, deadline: float) -> Response:
        """``data`` sent on a new connection."""
        connection = await self._connection(*key, deadline)
        return await self._exchange(connection, data, deadline)

    def resend(
        self, waiter: asyncio.Future[Response], key: tuple[Origin, str | None], data: bytes, deadline: float
    ) -> None:
        """Send ``data`` once more on a new connection (the reused one was stale); ``waiter`` gets the
        outcome."""

        def chain(task: asyncio.Task[Response]) -> None:
            self._resends.discard(task)
            if waiter.done():
                return
            if task.cancelled():
                waiter.cancel()
            elif (error := task.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(task.result())

        task = asyncio.ensure_future(self._fresh(key, data, deadline))
        self._resends.add(task)
        task.add_done_callback(chain)
        waiter.add_done_callback(lambda _: task.cancel() if waiter.cancelled() else None)

    def _exchange(self, connection: _Connection, data: bytes, deadline: float) -> asyncio.Future[Response]:
        self._busy.add(connection)
        if self._watch is None:
            self._watch = connection.loop.call_later(DEADLINE_TICK, self._expire_overdue)
        return connection.send(data, deadline)

    def done_with(self, connection: _Connection) -> None:
        """``connection`` carries no request now: back to the pool if it can carry another."""
        self._busy.discard(connection)
        if connection.open and connection.key is not None:
            self._give_back(connection)

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

    def _give_back(self, connection: _Connection) -> None:
        assert connection.key is not None
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) < self._pool_size:
            connection.reused = True
            idle.append(connection)
        else:
            connection.abort()

    def _reuse(self, key: tuple[Origin, str | None]) -> _Connection | None:
        """An idle connection for ``key`` (origin, proxy) that is still open, if any."""
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.open:
                return connection
        return None

    async def _connection(self, origin: Origin, proxy: str | None, deadline: float) -> _Connection:
        """A new connection to ``origin``, made within ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        connection = await asyncio.wait_for(self._connect(origin, proxy), remaining)
        connection.key = (origin, proxy)
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # verifies the certificate and the host name
        return self._ssl

    async def _connect(self, origin: Origin, proxy: str | None) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        connection = _Connection(loop, self)
        if proxy is None:
            await loop.create_connection(
                lambda: connection, host, port, ssl=tls, server_hostname=host if tls else None
            )
            return connection
        via = urlsplit(proxy)
        via_host = via.hostname or ""
        via_tls = self._context() if via.scheme == "https" else None
        via_port = via.port or (443 if via.scheme == "https" else 80)
        await loop.create_connection(
            lambda: connection, via_host, via_port, ssl=via_tls, server_hostname=via_host if via_tls else None
        )
        if tls is None:
            return connection  # plain http through the proxy: absolute URLs on this connection
        try:
            await connection.tunnel(f"{host}:{port}", _proxy_auth(proxy))
            assert connection.transport is not None
            secured = await loop.start_tls(connection.transport, connection, tls, server_hostname=host)
        except BaseException:
            connection.abort()
            raise
        if secured is None:
            raise ConnectionError("TLS through the proxy could not start")
        connection.transport = secured  # type: ignore[assignment]
        return connection

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        for connection in list(self._busy):
            connection.abort()
        for task in list(self._resends):
            task.cancel()
        self._idle.clear()
        self._busy.clear()


def _proxy_auth(proxy: str) -> str | None:
    """``Proxy-Authorization`` for a proxy URL with userinfo (``http://user:pw@proxy:3128``)."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
