"""The default transport: a pool of HTTP/1.1 keep-alive connections
(:class:`~pendo_plugin.delivery.connection.Connection`, asyncio protocols parsed by ``httptools``).

Pendo takes one track event per request, so this runs once per event: it is kept to one
``write`` and one parse per request, with the request head encoded once per endpoint, one parser
per connection, and answers read into one buffer per transport. On an idle connection a request is
written at once and its future is the connection's (:meth:`HttpTransport.start`: no task). It replaces
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
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from pendo_plugin.delivery.connection import Connection, Key, Origin
from pendo_plugin.delivery.http import USER_AGENT, Request, Response

READ_BUFFER_BYTES = 64 * 1024
DEADLINE_TICK = 0.05  # how often requests in flight are checked against their deadline (seconds)
MAX_HEADS_CACHED = 64


class HttpTransport:
    """Keep-alive pooled HTTP/1.1 (see the module docstring); create it on the loop that will use it."""

    def __init__(self, pool_size: int = 100) -> None:
        self._pool_size = max(1, pool_size)
        self._idle: dict[Key, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._proxies = urllib.request.getproxies()
        self._proxy_by_origin: dict[Origin, str | None] = {}
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[bytes, Key]] = {}
        self._last_head: tuple[Mapping[str, str], str, str, tuple[bytes, Key]] | None = None
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
        return (text + "\r\nContent-Length: ").encode("utf-8"), (origin, proxy)

    def start(self, request: Request) -> asyncio.Future[Response]:
        """Send ``request``; the future gets its answer. On an idle keep-alive connection (the common
        case) the request is written at once and the future is that connection's: no task, no
        coroutine. Raises ValueError for a URL or header it will not send."""
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
        return await self._exchange(connection, data, deadline)

    def resend(
        self, waiter: asyncio.Future[Response], key: Key, data: bytes, deadline: float
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
            connection.reused = True
            idle.append(connection)
        else:
            connection.abort()

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
        """An idle connection for ``key`` (origin, proxy) that is still open, if any."""
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.open:
                return connection
        return None

    async def _connection(self, origin: Origin, proxy: str | None, deadline: float) -> Connection:
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

    async def _connect(self, origin: Origin, proxy: str | None) -> Connection:
        loop = asyncio.get_running_loop()
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        connection = Connection(loop, self)
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
