"""One keep-alive HTTP/1.1 connection as an asyncio protocol, its answers parsed by ``httptools``
(llhttp, the parser Node.js uses); its pool is :class:`~pendo_plugin.delivery.client.HttpTransport`.

A connection carries one request at a time. It reads into a buffer its pool shares
(``asyncio.BufferedProtocol``: ``recv_into``, where a plain protocol gets a new 256 KiB ``bytes`` per
read, which costs an ``mmap``, an ``mremap`` and a ``munmap`` per answer), keeps one parser for its
life, bounds the answer's head (``MAX_HEAD_BYTES``) and body (``MAX_RESPONSE_BYTES``: the rest is not
read), and hands the answer to the request's future with nothing in between: the future is what the sender's
callback waits on (no task). Interim answers (1xx: ``100 Continue``, ``103 Early Hints``) are skipped, as
every HTTP/1.1 client must; the final answer is the request's. A 3xx is refused there (never followed); a
407 is a proxy's refusal, never Pendo's answer: a network error naming the proxy.
An answer whose ``Content-Length`` or chunked body the server did not complete before closing is an
error, never a short answer. A request is written once: a failure after that (the server may have
processed it) is the request's error, which the senders retry and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

import httptools
from multidict import CIMultiDict

from pendo_plugin import counters
from pendo_plugin.delivery.http import MAX_RESPONSE_BYTES, RedirectRefused, Response, refuse_redirect
from pendo_plugin.delivery.proxies import Proxy
from pendo_plugin.logs import log_once

MAX_HEAD_BYTES = 64 * 1024
PROXY_AUTHENTICATION_REQUIRED = 407
Origin = tuple[str, str, int]  # scheme, host, port
Key = tuple[Origin, "Proxy | None"]  # origin, proxy


class Pool(Protocol):
    """What a connection needs from the pool that owns it."""

    buffer: memoryview

    def done_with(self, connection: Connection) -> None: ...


class _HeadReader:
    """Collects the header lines of an answer's head read again (:class:`_Headers`): the final
    answer's only (each message, an interim 1xx too, starts the list anew)."""

    def __init__(self) -> None:
        self.pairs: list[tuple[bytes, bytes]] = []

    def on_message_begin(self) -> None:
        self.pairs = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.pairs.append((name, value))


class _Headers(Mapping[str, str]):
    """An answer's headers, parsed from its head only if read: the senders read them only for a 429, a
    503 or a 3xx. The connection's parser has no header callback (a Python call per header line, on
    every answer); the head is read again here, by httptools too, when it is needed."""

    __slots__ = ("_head", "_parsed")

    def __init__(self, head: bytes | bytearray) -> None:
        self._head = head
        self._parsed: CIMultiDict[str] | None = None

    def _mapping(self) -> CIMultiDict[str]:
        if self._parsed is None:
            reader = _HeadReader()
            # what follows the head (part of the body) may not parse alone: the lines so far count
            with contextlib.suppress(httptools.HttpParserError):
                httptools.HttpResponseParser(reader).feed_data(self._head)
            pairs = ((name.decode("latin-1"), value.decode("latin-1")) for name, value in reader.pairs)
            self._parsed = CIMultiDict(pairs)
        return self._parsed

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; carries one request at a time. ``buffer`` is where the socket is
    read into: shared by the connections of one transport (each read is consumed before the next)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: Pool) -> None:
        self.loop = loop
        self._owner = owner
        self._buffer = owner.buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.key: Key | None = None
        self.deadline = 0.0  # loop time by which the current request must have its answer
        self.idle_since = 0.0  # loop time it went back to the pool
        self._waiter: asyncio.Future[Response] | None = None
        # the answer being read: the bytes up to the end of its head (bounded by ``MAX_HEAD_BYTES``) and a
        # body bounded by ``MAX_RESPONSE_BYTES``; fresh for each request (``send``)
        self._head = bytearray()
        self._head_done = False
        self._body = bytearray()
        self._truncated = False
        self._parser: Any = None  # created for the first request, kept for the connection's life
        self._tunnel: asyncio.Future[bytes] | None = None
        self._raw = bytearray()

    # ----- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio classes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self._waiter is not None:
            self.eof_received()  # uvloop's TLS ends so, without eof_received, when no close_notify came
        error = ConnectionResetError(
            f"connection closed by the server ({type(exc).__name__ if exc else 'EOF'})"
        )
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(error)
        if self._waiter is not None:
            self._fail(error)

    def eof_received(self) -> bool:
        if self._waiter is not None and self._head_done:
            headers = _Headers(self._head)
            if "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower():
                self._fail(ConnectionError("the server closed the connection before the answer's end"))
            else:
                self._finish(keep=False)  # an answer without a length ends at EOF
        return False

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` from the server in the shared buffer (used up before returning)."""
        data = self._buffer[:nbytes]
        if self._tunnel is not None:
            self._raw += data
            complete = b"\r\n\r\n" in self._raw or len(self._raw) > MAX_HEAD_BYTES
            if complete and not self._tunnel.done():
                self._tunnel.set_result(bytes(self._raw))
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        if not self._head_done:
            self._head += data  # kept for the headers, read only if asked for (``_Headers``)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # not an HttpParserError: it would escape into the loop
            self._fail(ConnectionError("invalid HTTP answer: a protocol switch (101) nobody asked for"))
            return
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"invalid HTTP answer: {type(exc).__name__}"))
            return
        if not self._head_done and len(self._head) > MAX_HEAD_BYTES:
            self._fail(ConnectionError("invalid HTTP answer: head too large"))
        elif self._truncated:
            counters.record("response_truncated")
            self._finish(keep=False)

    # ----- httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:  # more bytes after the answer: out of step, never reuse this connection
            raise httptools.HttpParserError("an answer nobody asked for")

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, chunk: bytes) -> None:
        if self._truncated:
            return
        room = MAX_RESPONSE_BYTES - len(self._body)
        if len(chunk) > room:
            chunk = chunk[:room]
            self._truncated = True
        self._body += chunk

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim answer: the final one follows
            self._head_done = False
            return
        if not self._truncated:
            self._finish(keep=bool(self._parser.should_keep_alive()))

    # ----- requests

    def send(self, data: bytes, deadline: float) -> asyncio.Future[Response]:
        """Write one request, to be answered by ``deadline`` (loop time); the future gets its answer,
        or the error (a 3xx: :class:`~pendo_plugin.delivery.http.RedirectRefused`)."""
        assert self.transport is not None
        self._head = bytearray()
        self._head_done = False
        self._body = bytearray()
        self._truncated = False
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
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
        waiter = self._waiter
        self._waiter = None
        if not keep:
            self.abort()
        self._owner.done_with(self)
        if waiter is None or waiter.done():
            return
        response = Response(int(self._parser.get_status_code()), _Headers(self._head), bytes(self._body))
        if 300 <= response.status < 400:
            try:
                refuse_redirect(response)
            except RedirectRefused as exc:
                waiter.set_exception(exc)
                return
        elif response.status == PROXY_AUTHENTICATION_REQUIRED:
            waiter.set_exception(self._proxy_refusal())
            return
        waiter.set_result(response)

    def _proxy_refusal(self) -> ConnectionError:
        """A 407 is a proxy's answer (plain http through ``HTTP_PROXY``, or one on the way), never
        Pendo's: a network error naming the proxy, retried and kept in the spool (as the answer, it was
        a permanent refusal: the payload dropped as ``dropped:http_407``)."""
        proxy = self.key[1] if self.key is not None else None
        who = f"proxy {proxy.shown}" if proxy is not None else "a proxy on the way"
        error = ConnectionError(f"{who}: proxy authentication required (HTTP 407)")
        log_once(f"connect:{error}", logging.ERROR, "pendo_plugin: cannot reach Pendo: %s", error)
        return error

    def _fail(self, error: Exception) -> None:
        """The request failed: the waiter gets ``error`` (never sent again here: the server may have
        processed it) and the connection is dropped."""
        waiter = self._waiter
        self._waiter = None
        self.abort()
        self._owner.done_with(self)
        if waiter is not None and not waiter.done():
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
        if b"\r\n\r\n" not in head:
            self.abort()
            raise ConnectionRefusedError(f"the proxy's answer has a head over {MAX_HEAD_BYTES} bytes")
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or not (len(line[1]) == 3 and line[1].isdigit() and line[1].startswith(b"2")):
            self.abort()
            code = line[1][:8].decode("ascii", "replace") if len(line) >= 2 else "?"
            raise ConnectionRefusedError(f"the proxy refused the tunnel (HTTP {code})")
