"""Well-kept HTTP clients behind the plugin's ``Transport`` interface (``send``/``close``), for
``bench/clients.py``: the same plugin, the same events, only the client under it changes.

- ``aiohttp``: one ``ClientSession`` for the worker's life, no tracing, no cookie jar, a connector
  limited to the plugin's concurrency, redirects off (as the plugin's own client);
- ``pycurl``: libcurl's multi interface driven by the worker's event loop (``add_reader``/``call_later``),
  one easy handle per request in flight, reused afterwards; libcurl keeps its own connection cache.

Answers carry their status and body; headers only where the client gives them cheaply (aiohttp).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from pendo_plugin.delivery.http import Request, Response


class AiohttpTransport:
    """aiohttp, tuned: one session, no tracing, a dummy cookie jar, connector limits."""

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._session: Any = None

    async def send(self, request: Request) -> Response:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
        timeout = aiohttp.ClientTimeout(total=request.timeout)
        async with self._session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            allow_redirects=False,
            timeout=timeout,
        ) as answer:
            return Response(answer.status, answer.headers, await answer.read())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class CurlTransport:
    """pycurl's multi interface on the running asyncio loop."""

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._multi: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._free: list[Any] = []
        self._waiting: dict[Any, tuple[asyncio.Future[Response], io.BytesIO]] = {}
        self._watched: set[int] = set()

    def _setup(self) -> None:
        import pycurl

        self._loop = asyncio.get_running_loop()
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self._pool_size)

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        import pycurl

        assert self._loop is not None
        if fd in self._watched:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
            self._watched.discard(fd)
        if what == pycurl.POLL_REMOVE:
            return
        if what in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            self._loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            self._loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        self._watched.add(fd)

    def _on_timer(self, ms: int) -> None:
        import pycurl

        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ms >= 0:
            self._timer = self._loop.call_later(ms / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, events: int) -> None:
        import pycurl

        while self._multi.socket_action(fd, events)[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, finished, failed = self._multi.info_read()
            for handle in finished:
                self._settle(handle, None)
            for handle, _, message in failed:
                self._settle(handle, OSError(message))
            if not queued:
                break

    def _settle(self, handle: Any, error: Exception | None) -> None:
        import pycurl

        self._multi.remove_handle(handle)
        future, body = self._waiting.pop(handle)
        status = handle.getinfo(pycurl.RESPONSE_CODE)
        self._free.append(handle)
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(Response(status, {}, body.getvalue()))

    async def send(self, request: Request) -> Response:
        import pycurl

        if self._multi is None:
            self._setup()
        assert self._loop is not None
        handle = self._free.pop() if self._free else pycurl.Curl()
        body = io.BytesIO()
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.POSTFIELDS, request.body)
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in request.headers.items()])
        handle.setopt(pycurl.WRITEDATA, body)
        handle.setopt(pycurl.TIMEOUT_MS, int(request.timeout * 1000))
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        future: asyncio.Future[Response] = self._loop.create_future()
        self._waiting[handle] = (future, body)
        self._multi.add_handle(handle)
        return await future

    async def close(self) -> None:
        for handle in list(self._waiting):
            self._multi.remove_handle(handle)
        self._waiting.clear()
        if self._multi is not None:
            self._multi.close()


def make(name: str, pool_size: int) -> AiohttpTransport | CurlTransport:
    """The transport named ``name`` (``aiohttp`` or ``pycurl``)."""
    return AiohttpTransport(pool_size) if name == "aiohttp" else CurlTransport(pool_size)
