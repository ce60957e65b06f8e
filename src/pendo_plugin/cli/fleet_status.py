"""Fleet mode for the operator: ``doctor``'s Redis checks and the stream in ``spool status``.

Synchronous redis-py calls with short timeouts (these run in a command, not in the app). What
Redis answers is shown bounded: consumer names are cut to 80 characters, at most 20 are listed.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin.cli._common import Check, fail, ok
from pendo_plugin.config import Settings, redacted_url
from pendo_plugin.delivery.fleet.entries import DEAD_STREAM, GROUP, STREAM

TIMEOUT = 5.0
INSTALL = "pip install 'segment-pendo-plugin[redis]'"
MAX_CONSUMERS_SHOWN = 20


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def _errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def _text(value: Any, limit: int = 80) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:limit]


def _persistence(client: Any) -> str | None:
    """Why Redis would lose the stream on a restart, or None when it keeps data on disk."""
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except _errors():  # CONFIG is often disabled on managed Redis: ask INFO instead
        info = client.info("persistence")
        if info.get("aof_enabled") or info.get("rdb_last_save_time", 0) > 0:
            return None
        return "no append-only file and no RDB snapshot seen"
    if _text(appendonly) == "yes" or _text(save).strip():
        return None
    return "appendonly no and no RDB snapshots (save '')"


def doctor_checks(settings: Settings) -> list[Check]:
    """Redis answers, and keeps its data on disk (a WARN line if not)."""
    url = settings.redis_url
    if not url:
        return []
    shown = redacted_url(url)
    try:
        client = _client(url)
    except ImportError:
        return [fail(f"PENDO_REDIS_URL is set but the redis extra is missing: {INSTALL}")]
    try:
        version = _text(client.info("server").get("redis_version", "?"), 20)
        problem = _persistence(client)
    except _errors() as exc:
        return [fail(f"Redis at {shown} does not answer: {type(exc).__name__}")]
    checks = [ok(f"Redis at {shown} answers (version {version})")]
    if problem:
        checks.append(
            Check("WARN", f"Redis keeps no data on disk ({problem}): a Redis restart loses what waits in it")
        )
    return checks


def stream_status(url: str) -> list[str]:
    """Lines describing the shared stream: length, pending entries, consumers and their idle times."""
    shown = redacted_url(url)
    try:
        client = _client(url)
        length = client.xlen(STREAM)
        groups = (
            {_text(g.get("name")): g for g in client.xinfo_groups(STREAM)}
            if length or client.exists(STREAM)
            else {}
        )
        group = groups.get(GROUP)
        consumers = client.xinfo_consumers(STREAM, GROUP) if group else []
        dead = client.xlen(DEAD_STREAM)
    except ImportError:
        return [f"stream    (the redis extra is missing: {INSTALL})"]
    except _errors() as exc:
        return [f"stream    Redis at {shown} does not answer: {type(exc).__name__}"]
    lines = [
        f"stream    {STREAM} at {shown}",
        f"entries   {int(length):,}",
        f"pending   {int(group.get('pending', 0)) if group else 0:,} (read, not yet acknowledged)",
        f"consumers {len(consumers)}",
        f"dead      {int(dead):,} in {DEAD_STREAM} (failed too often: pendo-plugin spool dead)",
    ]
    for consumer in consumers[:MAX_CONSUMERS_SHOWN]:
        idle = int(consumer.get("idle", 0)) / 1000
        held = int(consumer.get("pending", 0))
        lines.append(f"  {_text(consumer.get('name'))}  pending {held:,}  idle {idle:,.1f} s")
    if len(consumers) > MAX_CONSUMERS_SHOWN:
        lines.append(f"  ... and {len(consumers) - MAX_CONSUMERS_SHOWN} more")
    return lines
