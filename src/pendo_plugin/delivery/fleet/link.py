"""Fleet mode's connection to Redis, shared by the rate gate, the durable queue and the live flags.

One asyncio client per worker loop, its connection pool sized to the sender's concurrency (every request
may reserve a send time at once) and waiting, not failing, when all its connections are busy, so a burst
is never taken for an outage; short timeouts and no client-side retries: when Redis
does not answer, every part falls back to what a single process does alone (the local rate
budget, the local spool, the environment's flags) and tries Redis again after ``RETRY_AFTER``
seconds. Each outage is logged once and counted (``redis:errors``); the app never waits on Redis,
since only the worker thread talks to it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import redacted_url
from pendo_plugin.logs import log

KEY_PREFIX = "pendo_plugin:"
TIMEOUT = 1.0
RETRY_AFTER = 2.0
DEFAULT_CONCURRENCY = 256  # PENDO_MAX_CONCURRENCY's default
POOL_SPARE = 8


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis did not answer properly" (the library's and the socket's)."""
    import redis

    return (redis.RedisError, OSError, TimeoutError, ValueError)


class RedisLink:
    """A lazily created ``redis.asyncio`` client and whether Redis is answering."""

    def __init__(self, url: str, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.url = url
        self.pool_size = concurrency + POOL_SPARE  # every request may reserve at once, plus the queue's I/O
        self._client: Any = None
        self._down_until = 0.0
        self.down = False
        self.outages = 0

    def available(self) -> bool:
        """Whether to try Redis now (it answered last time, or the retry pause has passed)."""
        return not self.down or time.monotonic() >= self._down_until

    def retry_now(self) -> None:
        """Try Redis at the next call even if it did not answer a moment ago (``flush()``)."""
        self._down_until = 0.0

    def client(self) -> Any:
        """The client, created on first use on the calling (worker) loop."""
        if self._client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = redis.asyncio.BlockingConnectionPool.from_url(  # a full pool waits: it is no outage
                self.url,
                max_connections=self.pool_size,
                timeout=None,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                client_name="pendo_plugin",
            )
            self._client = redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool
        return self._client

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: fall back for ``RETRY_AFTER`` seconds; one log line per outage."""
        counters.record("redis", "errors")
        if not self.down:
            self.outages += 1
            log.warning(
                "pendo_plugin: Redis at %s is not answering (%s); falling back to this process alone "
                "(local spool and rate budget) until it answers",
                redacted_url(self.url),
                type(exc).__name__,
            )
        self.down = True
        self._down_until = time.monotonic() + RETRY_AFTER

    def answered(self) -> bool:
        """Redis answered; True if it had been down (the caller may move local data back)."""
        if not self.down:
            return False
        self.down = False
        log.log(logging.WARNING, "pendo_plugin: Redis at %s answers again", redacted_url(self.url))
        return True

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
