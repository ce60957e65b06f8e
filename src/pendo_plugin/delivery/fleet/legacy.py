"""Taking over what waits under the key names used before the hash tag (``pendo_plugin:queue``,
``pendo_plugin:flags``), once per process, at its first cycle on Redis.

Entries of the old stream are appended to the fleet's stream, then deleted from the old one, one
by one: an entry another process took over first (its delete answers 0) is removed again from the
new stream, so each entry moves once; a process killed in between leaves a copy in both (sent
twice at worst, never lost). The old entries are read through :data:`READ_SCRIPT`, which checks
their size in Redis: one that is not a payload or is over ``MAX_ENTRY_BYTES`` is deleted there, never
sent to the process, and at most ``BATCH_BYTES`` come back per call (four hostile 100 MB entries
cost a process 872 MB of memory when they were read with ``XRANGE``). The old stream itself (and
its consumer group) stays, empty, for a process of the previous version still running. The old
flags move only if the fleet has no flags yet under the new name. Rate and pause keys expire within
seconds and are not moved.
"""

from __future__ import annotations

import logging
from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import MAX_ENTRY_BYTES, STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, MAX_FIELDS
from pendo_plugin.delivery.fleet.link import LEGACY_KEY_PREFIX
from pendo_plugin.logs import log, log_once

LEGACY_STREAM = LEGACY_KEY_PREFIX + "queue"
LEGACY_FLAGS = LEGACY_KEY_PREFIX + "flags"
BATCH = 500
BATCH_BYTES = 8_000_000

READ_SCRIPT = """
-- KEYS[1]: the old stream; ARGV[1]: most entries, ARGV[2]: most bytes of one payload, ARGV[3]: most
-- bytes in all. Returns {entries dropped here, id, payload, id, payload, ...}: an entry without a
-- payload field 'p' or with one over ARGV[2] bytes is deleted in Redis and never returned.
local out, dropped, total, last = {0}, 0, 0, '-'
for _ = 1, tonumber(ARGV[1]) do
  local found = redis.call('XRANGE', KEYS[1], last, '+', 'COUNT', 1)
  local entry = found[1]
  if entry == nil then break end
  last = '(' .. entry[1]
  local payload = nil
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'p' then payload = entry[2][i + 1] end
  end
  if payload == nil or #payload > tonumber(ARGV[2]) then
    redis.call('XDEL', KEYS[1], entry[1])
    dropped = dropped + 1
  elseif #out > 1 and total + #payload > tonumber(ARGV[3]) then
    break
  else
    total = total + #payload
    out[#out + 1] = entry[1]
    out[#out + 1] = payload
  end
end
out[1] = dropped
return out
"""


async def take_over(client: Any) -> int:
    """Move the old stream's entries and the old flags under the fleet's keys; the entries moved."""
    moved = 0
    read = client.register_script(READ_SCRIPT)
    while True:
        reply = await read(keys=[LEGACY_STREAM], args=[BATCH, MAX_ENTRY_BYTES, BATCH_BYTES])
        dropped, entries = _entries(reply)
        if dropped:
            counters.record("dropped", "redis_corrupt", amount=dropped)
            log_once("redis-corrupt", logging.ERROR, "pendo_plugin: skipped a malformed entry in Redis")
        if not entries:
            break
        moved += await _move(client, entries)
    if await client.exists(LEGACY_FLAGS) and not await client.exists(FLAGS_KEY):
        flags = await client.hgetall(LEGACY_FLAGS)
        if isinstance(flags, dict) and 0 < len(flags) <= MAX_FIELDS:
            await client.hset(FLAGS_KEY, mapping=flags)  # checked by every reader, as always
        await client.delete(LEGACY_FLAGS)
    if moved:
        counters.record("redis", "moved_from_old_keys", amount=moved)
        log.warning("pendo_plugin: moved %d entries from %s to %s", moved, LEGACY_STREAM, STREAM)
    return moved


def _entries(reply: Any) -> tuple[int, list[tuple[Any, bytes]]]:
    """:data:`READ_SCRIPT`'s reply: how many entries it dropped, and (id, payload) pairs."""
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
        return 0, []
    pairs = reply[1:]
    return reply[0], [(entry_id, raw) for entry_id, raw in zip(pairs[::2], pairs[1::2], strict=False)
                      if isinstance(raw, bytes)]  # fmt: skip


async def _move(client: Any, entries: list[tuple[Any, bytes]]) -> int:
    ids = [entry_id for entry_id, _ in entries]
    copies = client.pipeline(transaction=False)
    for _, raw in entries:
        copies.xadd(STREAM, {"p": raw})
    added = await copies.execute()
    claims = client.pipeline(transaction=False)
    for entry_id in ids:
        claims.xdel(LEGACY_STREAM, entry_id)
    deleted = await claims.execute()
    undo = [copy for copy, mine in zip(added, deleted, strict=True) if mine != 1]
    if undo:  # another process moved these first
        await client.xdel(STREAM, *undo)
    return len(ids) - len(undo)
