"""The HTTP transport: one method, ``send``, so everything above it can be tested with faults.

The default transport is an aiohttp client session with a keep-alive connection pool, living
on the worker's event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

USER_AGENT = "segment-pendo-plugin"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; ``headers`` may carry secrets and are never logged."""

    method: str
    url: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Response:
    """The parts of an HTTP response the senders look at."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request; raises (OSError, TimeoutError, aiohttp errors) on network failure."""

    async def send(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """Keep-alive pooled HTTP over aiohttp; create it on the loop that will use it."""

    def __init__(self, pool_size: int = 100) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=pool_size, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=True, trust_env=True
        )

    async def send(self, request: Request) -> Response:
        timeout = self._aiohttp.ClientTimeout(total=request.timeout)
        async with self._session.request(
            request.method,
            request.url,
            data=request.body or None,
            headers=dict(request.headers),
            timeout=timeout,
        ) as response:
            body = await response.read()
            return Response(response.status, dict(response.headers), body)

    async def close(self) -> None:
        await self._session.close()
