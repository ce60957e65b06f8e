"""Which Redis a fleet runs on, and redis-py's client for it (docs/fleet.md, "Which Redis").

Three shapes, one per redis-py client: a single node (``redis://``, ``rediss://``, ``unix://``), a
Redis Cluster (the same URLs, naming any node: detected from its ``INFO cluster``) and a primary
with replicas behind Sentinel (``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>/<db>``,
whose client asks the Sentinels for the primary on every new connection, so a failover is followed
without a restart). Every client has short timeouts and no retries of its own: the caller falls back
when Redis does not answer (:mod:`pendo_plugin.delivery.fleet.link`). The URL's user and password
are the data nodes'; the Sentinels are asked without them.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from pendo_plugin.config_values import SENTINEL_SCHEMES, sentinel_parts

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"
CLIENT_NAME = "pendo_plugin"
# Connections per node a process may open: one per concurrent send asking the rate gate
# (PENDO_MAX_CONCURRENCY is at most 1000) plus the queue's and the flags'. redis-py's default of
# 100 was reached right after a failover, when every send asked the new primary at once. The same
# holds for each Sentinel, asked once per new connection to the primary: with its default of 100, a
# burst of 5,000 events in one process failed 16-200 of those questions (MaxConnectionsError, seen
# as MasterNotFoundError) and sent the process to its local spool with every node healthy.
MAX_CONNECTIONS = 1024


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def _pooled(timeout: float) -> dict[str, Any]:
    return {**_timeouts(timeout), "max_connections": MAX_CONNECTIONS, "client_name": CLIENT_NAME}


def _sentinel_kwargs(timeout: float) -> dict[str, Any]:
    return {**_timeouts(timeout), "max_connections": MAX_CONNECTIONS}


def _sentinel_setup(url: str, timeout: float) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """The Sentinels, the service name, and the keyword arguments of the primary's connections."""
    sentinels, service, db = sentinel_parts(url)
    parts = urlsplit(url)
    node = {
        **_url_options(parts.query, parts.scheme.startswith("rediss")),
        **_pooled(timeout),
        "db": db,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "ssl": parts.scheme.startswith("rediss"),
    }
    return sentinels, service, node


def _url_options(query: str, ssl: bool) -> dict[str, Any]:
    """A Sentinel URL's ``?options`` for the data nodes' connections (``?ssl_ca_certs=...``), read
    and checked by redis-py as for ``redis://`` URLs; what it refuses is :class:`UnusableUrl`."""
    if not query:
        return {}
    from redis.asyncio.connection import Connection, SSLConnection
    from redis.connection import parse_url

    try:
        options = {k: v for k, v in parse_url(f"redis://sentinel/?{query}").items() if k != "host"}
        (SSLConnection if ssl else Connection)(**options)  # builds (does not open) one: checks the names
    except (TypeError, ValueError) as exc:
        raise UnusableUrl(f"redis-py cannot use it: {_reason(exc)}") from None
    return options


def _cluster_enabled(info: Any) -> bool:
    return isinstance(info, dict) and str(info.get("cluster_enabled", "0")) == "1"


class UnusableUrl(ValueError):
    """redis-py cannot use the URL (an option it does not know, a value it cannot read) or it names a
    database other than 0 on a Redis Cluster: no retry helps. The message never repeats the URL."""


def _probe(factory: Any, url: str, timeout: float) -> tuple[Any, int]:
    """A client for the node the URL names, asking database 0 (a cluster refuses ``SELECT``), and
    the database the URL names; redis-py's refusals of the URL become :class:`UnusableUrl`."""
    try:
        probe = factory(url, **_pooled(timeout))
        pool = probe.connection_pool
        wanted = int(pool.connection_kwargs.get("db") or 0)
        pool.connection_kwargs["db"] = 0
        pool.make_connection()  # builds (does not open) a connection: redis-py checks the options here
    except (TypeError, ValueError) as exc:
        raise UnusableUrl(f"redis-py cannot use it: {_reason(exc)}") from None
    return probe, wanted


def _reason(exc: Exception) -> str:
    """redis-py's complaint, without the URL: the unknown option's name, or its message."""
    unknown = re.search(r"unexpected keyword argument '(\w{1,40})'", str(exc))
    return f"unknown option ?{unknown.group(1)}=" if unknown else str(exc)[:120]


def _single_database_only(wanted: int) -> None:
    if wanted:
        raise UnusableUrl(f"it names database {wanted}, and a Redis Cluster has only database 0")


async def connect(url: str, timeout: float) -> tuple[Any, str, list[Any]]:
    """An asyncio client for ``url``, the shape found, and the clients to close with it (the
    Sentinels'); raises redis-py's errors when Redis does not answer (the cluster check is one
    ``INFO cluster``)."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    no_retry = Retry(NoBackoff(), 0)
    if is_sentinel(url):
        sentinels, service, node = _sentinel_setup(url, timeout)
        manager = redis.asyncio.sentinel.Sentinel(sentinels, sentinel_kwargs=_sentinel_kwargs(timeout))
        return manager.master_for(service, retry=no_retry, **node), SENTINEL, manager.sentinels
    probe, wanted = _probe(partial(redis.asyncio.Redis.from_url, retry=no_retry), url, timeout)
    try:
        cluster = _cluster_enabled(await probe.info("cluster"))
    except redis.ResponseError:  # INFO renamed or refused (some managed services): not a cluster
        cluster = False
    finally:
        await probe.aclose()
    if not cluster:
        return redis.asyncio.Redis.from_url(url, retry=no_retry, **_pooled(timeout)), SINGLE, []
    _single_database_only(wanted)
    client = redis.asyncio.cluster.RedisCluster.from_url(url, retry=no_retry, **_pooled(timeout))
    await client.initialize()
    return client, CLUSTER, []


def connect_sync(url: str, timeout: float) -> tuple[Any, str]:
    """The same as :func:`connect` for the command-line tools: a synchronous client and its shape."""
    import redis
    import redis.cluster
    import redis.sentinel

    if is_sentinel(url):
        sentinels, service, node = _sentinel_setup(url, timeout)
        manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=_sentinel_kwargs(timeout))
        return manager.master_for(service, **node), SENTINEL
    probe, wanted = _probe(redis.Redis.from_url, url, timeout)
    try:
        cluster = _cluster_enabled(probe.info("cluster"))
    except redis.ResponseError:
        cluster = False
    finally:
        probe.close()
    if not cluster:
        return redis.Redis.from_url(url, **_pooled(timeout)), SINGLE
    _single_database_only(wanted)
    return redis.cluster.RedisCluster.from_url(url, **_pooled(timeout)), CLUSTER
