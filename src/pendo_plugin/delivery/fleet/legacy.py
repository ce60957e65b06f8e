"""Taking over what waits under the key names used before the hash tag (``pendo_plugin:queue``,
``pendo_plugin:flags``), once per process, at its first cycle on Redis.

Entries of the old stream are appended to the fleet's stream, then deleted from the old one, one
by one: an entry another process took over first (its delete answers 0) is removed again from the
new stream, so each entry moves once; a process killed in between leaves a copy in both (sent
twice at worst, never lost). The old stream itself (and its consumer group) stays, empty, for a
process of the previous version still running. The old flags move only if the fleet has no flags
yet under the new name. Rate and pause keys expire within seconds and are not moved.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, MAX_FIELDS
from pendo_plugin.delivery.fleet.link import LEGACY_KEY_PREFIX
from pendo_plugin.logs import log

LEGACY_STREAM = LEGACY_KEY_PREFIX + "queue"
LEGACY_FLAGS = LEGACY_KEY_PREFIX + "flags"
BATCH = 500


async def take_over(client: Any) -> int:
    """Move the old stream's entries and the old flags under the fleet's keys; the entries moved."""
    moved = 0
    while entries := await client.xrange(LEGACY_STREAM, "-", "+", count=BATCH):
        moved += await _move(client, entries if isinstance(entries, list) else [])
    if await client.exists(LEGACY_FLAGS) and not await client.exists(FLAGS_KEY):
        flags = await client.hgetall(LEGACY_FLAGS)
        if isinstance(flags, dict) and 0 < len(flags) <= MAX_FIELDS:
            await client.hset(FLAGS_KEY, mapping=flags)  # checked by every reader, as always
        await client.delete(LEGACY_FLAGS)
    if moved:
        counters.record("redis", "moved_from_old_keys", amount=moved)
        log.warning("pendo_plugin: moved %d entries from %s to %s", moved, LEGACY_STREAM, STREAM)
    return moved


async def _move(client: Any, entries: list[Any]) -> int:
    ids = [entry[0] for entry in entries]
    copies = client.pipeline(transaction=False)
    for _, fields in entries:
        raw = fields.get(b"p") if isinstance(fields, dict) else None
        # a bad entry is copied empty: its reader drops it (dropped:redis_corrupt)
        copies.xadd(STREAM, {"p": raw if isinstance(raw, bytes) else b""})
    added = await copies.execute()
    claims = client.pipeline(transaction=False)
    for entry_id in ids:
        claims.xdel(LEGACY_STREAM, entry_id)
    deleted = await claims.execute()
    undo = [copy for copy, mine in zip(added, deleted, strict=True) if mine != 1]
    if undo:  # another process moved these first
        await client.xdel(STREAM, *undo)
    return len(ids) - len(undo)
