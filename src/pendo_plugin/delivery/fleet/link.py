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

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from pendo_plugin import counters, shown
from pendo_plugin.config import redacted_url
from pendo_plugin.delivery.fleet.topology import CLUSTER, UnusableUrl, connect
from pendo_plugin.logs import log

# Every key of a fleet starts with this prefix. Its hash tag (the part in braces) puts them all in
# one Redis Cluster slot, so the rate script, the pause keys and the stream work together there.
KEY_PREFIX = "{pendo_plugin}:"
LEGACY_KEY_PREFIX = "pendo_plugin:"  # before the hash tag (taken over once: fleet/legacy.py)
TIMEOUT = 1.0
RETRY_AFTER = 2.0
REPLICA_WAIT = 0.5  # seconds an append waits for PENDO_REDIS_REPLICAS replicas to confirm it
ERROR_LOG_AGAIN = 300.0  # an error reply of one kind, between answers to other commands, is logged this often


def replicated(answer: Any, replicas: int) -> bool:
    """Whether the pipeline's last answer says ``replicas`` replicas have the appended entries."""
    return not replicas or (isinstance(answer, int) and answer >= replicas)


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis did not answer properly" (the library's and the socket's)."""
    import redis

    return (redis.RedisError, OSError, TimeoutError, ValueError)


def what_failed(exc: BaseException) -> str:
    """How a failed command reads in the log: an error Redis answered is quoted (escaped, cut: its text
    is Redis's, untrusted), anything else is Redis not answering."""
    import redis

    if isinstance(exc, redis.ResponseError):
        return f"answered an error ({type(exc).__name__}: {shown.escape(exc, 120)})"
    return f"is not answering ({type(exc).__name__})"


class RedisLink:
    """A lazily created ``redis.asyncio`` client and whether Redis is answering."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._others: list[Any] = []  # closed with the client (a Sentinel's own connections)
        self._connecting = asyncio.Lock()
        self.shape: str | None = None  # single, sentinel or cluster, once connected
        self._down_until = 0.0
        self.down = False
        self.outages = 0
        self.replicas_short = False  # the last WAIT saw fewer than PENDO_REDIS_REPLICAS replicas
        self._replicas_asked: float | None = None  # when WAIT last answered (None: not since Redis answered)
        self.unusable = False  # redis-py cannot use the URL: fleet mode is off, no flags to wait for
        self._errors_logged: dict[str, float] = {}  # when an error reply of each kind (its class) was logged
        self._outage_logged = False  # whether this outage's line was written (then its end's is too)

    def available(self) -> bool:
        """Whether to try Redis now (it answered last time, or the retry pause has passed)."""
        return not self.down or time.monotonic() >= self._down_until

    def retry_now(self) -> None:
        """Try Redis at the next call even if it did not answer a moment ago (``flush()``)."""
        self._down_until = 0.0

    async def client(self) -> Any:
        """The client for the shape of Redis found at the URL, created on first use on the calling
        (worker) loop; raises redis-py's errors when Redis does not answer."""
        async with self._connecting:
            if self._client is None:
                self._client, self.shape, self._others = await connect(self.url, TIMEOUT)
        return self._client

    def wait_for_replicas(self, pipe: Any, replicas: int) -> None:
        """End an append pipeline with ``WAIT`` for ``replicas`` replicas (none: nothing to wait for),
        on the connection of the appends: in a cluster, the node holding the fleet's slot."""
        if not replicas:
            return
        target = {"target_nodes": self._client.get_node_from_key(KEY_PREFIX)} if self.shape == CLUSTER else {}
        pipe.execute_command("WAIT", replicas, round(REPLICA_WAIT * 1000), **target)

    def confirmed(self, answer: Any, replicas: int) -> bool:
        """Whether ``WAIT``'s answer says ``replicas`` replicas have the appends. A shortfall is logged
        once until enough replicas confirm again: meanwhile appends are kept only in the local spool."""
        self._replicas_asked = time.monotonic()
        enough = replicated(answer, replicas)
        if enough == self.replicas_short:
            self.replicas_short = not enough
            if enough:
                log.warning("pendo_plugin: %d replicas confirm appends again", replicas)
            else:
                log.warning(
                    "pendo_plugin: %s of PENDO_REDIS_REPLICAS=%d replicas confirmed an append within %g s; "
                    "until enough do, this process keeps what it appends in its local spool and sends it "
                    "from there, not through the stream (redis:not_replicated)",
                    answer if isinstance(answer, int) else "none",
                    replicas,
                    REPLICA_WAIT,
                )
        return enough

    async def replicas_back(self, replicas: int) -> bool:
        """Whether to append to the stream: yes while the last ``WAIT`` found enough replicas. First (and
        after Redis stopped answering), and every ``RETRY_AFTER`` seconds while they fell short, a ``WAIT``
        with no new payload asks, so no entry is shown to the fleet's readers that will be taken back."""
        asked = self._replicas_asked
        if not replicas or (asked is not None and not self.replicas_short):
            return True
        if asked is not None and time.monotonic() < asked + RETRY_AFTER:
            return False
        pipe = (await self.client()).pipeline(transaction=False)
        self.wait_for_replicas(pipe, replicas)
        counters.record("redis", "round_trips")
        return self.confirmed((await pipe.execute())[-1], replicas)

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: fall back for ``RETRY_AFTER`` seconds (a URL redis-py cannot use: for good,
        but for ``flush()``); one log line per outage."""
        counters.record("redis", "errors")
        unusable = isinstance(exc, UnusableUrl)
        if not self.down:
            self.outages += 1
            described = what_failed(exc)
            self._outage_logged = unusable or not self._said_lately(exc)
            if unusable:
                log.error(
                    "pendo_plugin: fleet mode is off (PENDO_REDIS_URL %s: %s); each process delivers "
                    "alone, through its local routes and local spool",
                    redacted_url(self.url),
                    exc,
                )
            elif self._outage_logged:
                log.warning(
                    "pendo_plugin: Redis at %s %s; falling back to this process alone "
                    "(local spool and rate budget) until it answers",
                    redacted_url(self.url),
                    described,
                )
        self.down = True
        self._replicas_asked = None  # a failover may have changed the replicas: ask again first
        self.unusable = self.unusable or unusable
        self._down_until = math.inf if unusable else time.monotonic() + RETRY_AFTER

    def _said_lately(self, exc: BaseException) -> bool:
        """Whether an error reply of ``exc``'s kind was logged less than :data:`ERROR_LOG_AGAIN` ago: one
        that comes back each time other commands are answered (writes refused for memory while reads go
        on) is not logged at each turn. Else, if it is one, it is remembered as logged now."""
        import redis

        if not isinstance(exc, redis.ResponseError):
            return False
        now, kind = time.monotonic(), type(exc).__name__
        if now < self._errors_logged.get(kind, -math.inf) + ERROR_LOG_AGAIN:
            return True
        self._errors_logged[kind] = now
        return False

    def answered(self) -> bool:
        """Redis answered; True if it had been down (the caller may move local data back)."""
        if not self.down:
            return False
        self.down = False
        if self._outage_logged:
            log.log(logging.WARNING, "pendo_plugin: Redis at %s answers again", redacted_url(self.url))
        return True

    async def close(self) -> None:
        clients, self._client, self._others = [self._client, *self._others], None, []
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
