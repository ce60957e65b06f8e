"""Reads of the fleet's stream, bounded in bytes inside Redis (see :mod:`pendo_plugin.delivery.fleet.queue`).

``XREADGROUP`` and ``XAUTOCLAIM`` run one entry at a time in a Lua script that stops once the entries it
read reach a byte budget, and that deletes there (``XACK`` + ``XDEL``) any entry larger (names and values)
than :data:`~pendo_plugin.delivery.fleet.entries.MAX_ENTRY_BYTES` + 1 KB, counted as
``dropped:redis_corrupt``. Entries written by hand, tens of MB each, were read whole: twelve of 40 MB
took an app to 433 MB and, past the 1 s timeout, had every process take Redis for down, again at every
read, with the good entries read alongside stuck pending.
"""

from __future__ import annotations

import logging
from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import GROUP, MAX_ENTRY_BYTES, STREAM
from pendo_plugin.delivery.fleet.scripts import Call
from pendo_plugin.logs import log_once

__all__ = ["READ_BYTES", "BoundedReads", "range_bounded"]

READ_BYTES = 8 << 20  # a read stops once the entries it read reach this size

READ_SCRIPT = """
-- KEYS[1]: the stream; ARGV[1]: the most bytes of one field value, ARGV[2]: of all entries read,
-- ARGV[3]: the most entries; ARGV[4]: 'read' (XREADGROUP) or 'claim' (XAUTOCLAIM), ARGV[5]: the group,
-- ARGV[6]: the consumer, ARGV[7]: the start id ('>' new entries, else after this id: the consumer's
-- pending ones; for 'claim' the cursor), ARGV[8]: the least idle ms ('claim'). Reads one entry at a
-- time; an entry over ARGV[1] bytes (+ 1 KB; names and values) is deleted, never returned. Returns
-- {deleted, next cursor ('0-0': nothing is left to read), id, fields, id, fields, ...} (fields
-- false: pending, but gone from the stream).
local out, total, start = {0, '0-0'}, 0, ARGV[7]
for _ = 1, tonumber(ARGV[3]) do
  local entry
  if ARGV[4] == 'claim' then
    local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[5], ARGV[6], ARGV[8], start, 'COUNT', 1)
    start = reply[1]
    entry = reply[2][1]
    if not entry and start == '0-0' then break end
  else
    local reply = redis.call('XREADGROUP', 'GROUP', ARGV[5], ARGV[6], 'COUNT', 1, 'STREAMS', KEYS[1], start)
    entry = reply and reply[1] and reply[1][2][1]
    if not entry then
      out[2] = '0-0'
      break
    end
    out[2] = entry[1]
    if start ~= '>' then start = entry[1] end
  end
  if entry then
    local size, fields = 0, entry[2]
    if type(fields) == 'table' then
      for i = 1, #fields do size = size + #fields[i] end
    end
    if size > tonumber(ARGV[1]) + 1024 then
      redis.call('XACK', KEYS[1], ARGV[5], entry[1])
      redis.call('XDEL', KEYS[1], entry[1])
      out[1] = out[1] + 1
    else
      out[#out + 1] = entry[1]
      out[#out + 1] = fields
    end
    total = total + size
    if total >= tonumber(ARGV[2]) then break end
  end
end
if ARGV[4] == 'claim' then out[2] = start end
return out
"""

RANGE_SCRIPT = """
-- KEYS[1]: a stream; ARGV[1]: the most bytes of an entry returned (+ 1 KB; a longer one comes back empty),
-- ARGV[2]: the most bytes read, ARGV[3]: the most entries, ARGV[4]: the first id. XRANGE one entry at a
-- time; returns {the next first id ('' when none is left), id, fields, id, fields, ...}.
local out, total, start = {''}, 0, ARGV[4]
for _ = 1, tonumber(ARGV[3]) do
  local entry = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1)[1]
  if not entry then
    out[1] = ''
    break
  end
  start = '(' .. entry[1]
  out[1] = start
  local size, fields = 0, entry[2]
  for i = 1, #fields do size = size + #fields[i] end
  total = total + size
  out[#out + 1] = entry[1]
  out[#out + 1] = size > tonumber(ARGV[1]) + 1024 and {} or fields
  if total >= tonumber(ARGV[2]) then break end
end
return out
"""

Entry = tuple[bytes, dict[bytes, Any] | None]  # (id, fields; None: pending but gone from the stream)


class BoundedReads:
    """This process's reads of the stream through :data:`READ_SCRIPT` (loaded once per client)."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self._script: tuple[Any, Any] | None = None

    def read(self, client: Any, start: str, count: int) -> Call:
        """``XREADGROUP`` from ``start`` (``>``: new entries; an id: this consumer's pending ones after it),
        to run with :func:`~pendo_plugin.delivery.fleet.scripts.run_scripts` (answer: :meth:`answer`)."""
        return self._call(client, count, ["read", GROUP, self.consumer, start])

    async def claim(self, client: Any, idle_ms: int, start: str, count: int) -> tuple[str, list[Entry]]:
        """``XAUTOCLAIM`` entries idle ``idle_ms`` from ``start``: the next cursor and the entries."""
        script, keys, args = self._call(client, count, ["claim", GROUP, self.consumer, start, idle_ms])
        counters.record("redis", "round_trips")
        return self.answer(await script(keys=keys, args=args))

    def _call(self, client: Any, count: int, args: list[Any]) -> Call:
        if self._script is None or self._script[0] is not client:
            self._script = (client, client.register_script(READ_SCRIPT))
        return self._script[1], [STREAM], [MAX_ENTRY_BYTES, READ_BYTES, count, *args]

    @staticmethod
    def answer(reply: Any) -> tuple[str, list[Entry]]:
        """A read's answer: the last id read (``0-0``: nothing is left), and the entries."""
        if not isinstance(reply, list) or len(reply) < 2 or not isinstance(reply[0], int):
            return "0-0", []
        if reply[0]:
            counters.record("dropped", "redis_corrupt", amount=reply[0])
            log_once("redis-corrupt", logging.ERROR, "pendo_plugin: skipped a malformed entry in Redis")
        cursor = reply[1].decode("ascii", "replace") if isinstance(reply[1], bytes) else "0-0"
        return cursor, _entries(reply[2:])


def range_bounded(client: Any, stream: str, start: str, count: int) -> tuple[str | None, list[Entry]]:
    """Up to ``count`` entries of ``stream`` from ``start`` for the command line (a synchronous client), an
    entry over :data:`~pendo_plugin.delivery.fleet.entries.MAX_ENTRY_BYTES` + 1 KB returned without its
    fields (by :data:`RANGE_SCRIPT`): the id to go on from (None: the end), and the entries."""
    reply = client.eval(RANGE_SCRIPT, 1, stream, MAX_ENTRY_BYTES, READ_BYTES, count, start)
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], bytes):
        return None, []
    return reply[0].decode("ascii", "replace") or None, _entries(reply[1:])


def _entries(flat: list[Any]) -> list[Entry]:
    """The script's (id, fields) pairs; an id of another type is left out."""
    found: list[Entry] = []
    for entry_id, values in zip(flat[::2], flat[1::2], strict=False):
        if isinstance(entry_id, bytes):
            fields = dict(zip(values[::2], values[1::2], strict=False)) if isinstance(values, list) else None
            found.append((entry_id, fields))
    return found
