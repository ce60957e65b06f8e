"""The upkeep of the fleet's stream for its queue: creating it with its consumer group, moving the local
spool into it, and counting and repairing trims past its cap, entries moved to the dead stream, entries
dated far ahead that would stop every append, and a stream lost with its consumer group (see
:mod:`pendo_plugin.delivery.fleet.queue`)."""

from __future__ import annotations

from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import DEAD_AFTER, DEAD_STREAM, GROUP, REPAIR_SCRIPT, STREAM, encode
from pendo_plugin.delivery.fleet.link import redis_errors
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.logs import log

MOVE_FILES_PER_CYCLE = 20


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


async def create_group(client: Any) -> None:
    """Create the stream and its consumer group (both there already: nothing to do)."""
    import redis

    counters.record("redis", "round_trips")
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def move_from_spool(client: Any, spool: Spool) -> int:
    """Append what the local spool holds (left while Redis was down) to the stream, at most
    :data:`MOVE_FILES_PER_CYCLE` files, each acknowledged in the spool once appended; how many moved."""
    moved = 0
    for number, claim in enumerate(spool.claims()):
        if number >= MOVE_FILES_PER_CYCLE:
            claim.release()
            break
        try:
            pipe = client.pipeline(transaction=False)
            for payload in claim.items:
                pipe.xadd(STREAM, {"p": encode(payload)})
            counters.record("redis", "round_trips")
            await pipe.execute()
        except BaseException:
            claim.release()
            raise
        claim.done()
        moved += len(claim.items)
    if moved:
        counters.record("redis", "moved_from_spool", amount=moved)
    return moved
