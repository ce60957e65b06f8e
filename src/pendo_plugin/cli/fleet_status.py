"""Fleet mode for the operator: the stream in ``spool status`` (and what ``doctor``'s checks share).

Synchronous redis-py calls with short timeouts (these run in a command, not in the app). What
Redis answers is shown bounded and escaped (:func:`pendo_plugin.shown.escape`): consumer names are cut
to 80 characters, at most 20 are listed.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin import shown
from pendo_plugin.config import redacted_url
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.delivery.fleet.topology import UnusableUrl, connect_sync

TIMEOUT = 5.0
INSTALL = "pip install 'segment-pendo-plugin[redis]'"
MAX_CONSUMERS_SHOWN = 20


def _client(url: str) -> Any:
    return connect_sync(url, TIMEOUT)[0]


def _errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError, UnusableUrl)


def _text(value: Any, limit: int = 80) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return shown.escape(text[:limit])


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
    except ImportError:
        return [f"stream    (the redis extra is missing: {INSTALL})"]
    except _errors() as exc:
        unusable = isinstance(exc, UnusableUrl)
        problem = f"cannot be used: {exc}" if unusable else f"does not answer: {type(exc).__name__}"
        return [f"stream    Redis at {shown} {problem}"]
    lines = [
        f"stream    {STREAM} at {shown}",
        f"entries   {int(length):,}",
        f"pending   {int(group.get('pending', 0)) if group else 0:,} (read, not yet acknowledged)",
        f"consumers {len(consumers)}",
    ]
    for consumer in consumers[:MAX_CONSUMERS_SHOWN]:
        idle = int(consumer.get("idle", 0)) / 1000
        held = int(consumer.get("pending", 0))
        lines.append(f"  {_text(consumer.get('name'))}  pending {held:,}  idle {idle:,.1f} s")
    if len(consumers) > MAX_CONSUMERS_SHOWN:
        lines.append(f"  ... and {len(consumers) - MAX_CONSUMERS_SHOWN} more")
    return lines
