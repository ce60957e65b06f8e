"""What the fleet's queue counts and repairs in the stream: trims past its cap, entries moved to the dead
stream, entries dated far ahead that would stop every append, and a stream lost with its consumer group
(see :mod:`pendo_plugin.delivery.fleet.queue`)."""

from __future__ import annotations

from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import DEAD_AFTER, DEAD_STREAM, GROUP, REPAIR_SCRIPT, STREAM
from pendo_plugin.delivery.fleet.link import redis_errors
from pendo_plugin.logs import log


async def repair_ids(client: Any) -> bool:
    """The stream's last id is exhausted (an entry with the maximum id): delete the entries dated more than
    a day ahead, counted as ``dropped:redis_corrupt``, and set the last ids back; True if done."""
    try:
        counters.record("redis", "round_trips")
        deleted = await client.eval(REPAIR_SCRIPT, 1, STREAM, GROUP)
    except redis_errors():
        return False
    deleted = deleted if isinstance(deleted, int) else 0
    counters.record("dropped", "redis_corrupt", amount=deleted)
    log.error("pendo_plugin: removed %d Redis stream entries dated far ahead (blocking appends)", deleted)
    return True


def count_trimmed(length_before: Any, added: int, cap: int) -> None:
    """Count and log what appending ``added`` entries to a stream of ``length_before`` trimmed at ``cap``."""
    dropped = max(0, int(length_before) + added - cap) if isinstance(length_before, int) else 0
    if dropped:
        counters.record("dropped", "redis_full", amount=dropped)
        log.warning(
            "pendo_plugin: the Redis stream is at its cap (PENDO_REDIS_MAX_LEN=%d); its oldest %d "
            "entries were dropped and counted as dropped:redis_full",
            cap,
            dropped,
        )


def count_dead(dead: Any) -> None:
    """Count and log the entries the settle script moved to the dead stream."""
    if isinstance(dead, int) and dead > 0:
        counters.record("redis", "dead_lettered", amount=dead)
        log.error(
            "pendo_plugin: %d payload(s) failed %d times and were moved to the Redis stream %s "
            "(pendo-plugin spool dead list|retry|purge)",
            dead,
            DEAD_AFTER,
            DEAD_STREAM,
        )


def group_lost(last_length: int) -> None:
    """Redis answered without the consumer group: the stream was lost (a restart without persistence, or
    the key deleted). Logged once per loss and counted: ``redis:group_lost``, and the entries that waited
    at this process's last append as ``dropped:redis_lost`` (at least; other processes' later ones are not
    known here). The group is created again by the caller."""
    counters.record("redis", "group_lost")
    if last_length > 0:
        counters.record("dropped", "redis_lost", amount=last_length)
    log.error(
        "pendo_plugin: the Redis stream %s lost its consumer group (Redis restarted without persistence, or "
        "the key was deleted); about %d waiting payload(s) are lost (dropped:redis_lost). Turn on "
        "appendonly in Redis; the group is created again",
        STREAM,
        last_length,
    )
