"""The entries of the fleet's Redis Stream: names, the payload codec (the spool's:
:mod:`pendo_plugin.pendo.payload`) with its checks on what is read back, and the Lua script
that settles outcomes (see :mod:`pendo_plugin.delivery.fleet.queue`)."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from pendo_plugin.delivery.dead_letters import DEAD_AFTER  # the same rule as the local dead letter
from pendo_plugin.delivery.fleet.link import KEY_PREFIX
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import Payload, encode

__all__ = [
    "DEAD_AFTER",
    "DEAD_MAX_LEN",
    "DEAD_STREAM",
    "GROUP",
    "MAX_ENTRY_BYTES",
    "REPAIR_SCRIPT",
    "SETTLE_SCRIPT",
    "STREAM",
    "consumer_name",
    "decode",
    "encode",
    "failures_of",
]

STREAM = KEY_PREFIX + "queue"
GROUP = "pendo_plugin"
MAX_ENTRY_BYTES = 1_000_000

DEAD_STREAM = KEY_PREFIX + "dead"
DEAD_MAX_LEN = 100_000
MAX_ATTEMPTS_DIGITS = 6

SETTLE_SCRIPT = """
-- KEYS[1]: the stream, KEYS[2]: the dead stream; ARGV[1]: the group, ARGV[2]: how many ids to acknowledge,
-- ARGV[3]: the failures after which an entry is dead, ARGV[4]: the dead stream's cap; then the ids to
-- acknowledge, then (id, payload, failures) triples to retry: each is appended anew (or, failed too often,
-- to the dead stream) only if it was still in the stream (an entry trimmed by the length cap stays
-- dropped), before its old entry is removed (so an append that fails leaves it in place).
local acks = tonumber(ARGV[2])
local dead = 0
for i = 5, 4 + acks do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
for i = 5 + acks, #ARGV, 3 do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 1 then
    if tonumber(ARGV[i + 2]) >= tonumber(ARGV[3]) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'p', ARGV[i + 1], 'a', ARGV[i + 2])
      dead = dead + 1
    else
      redis.call('XADD', KEYS[1], '*', 'p', ARGV[i + 1], 'a', ARGV[i + 2])
    end
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return dead
"""

REPAIR_SCRIPT = """
-- KEYS[1]: the stream; ARGV[1]: the group. An entry whose id lies more than a day past the server's clock
-- (the maximum id, written by hand or by an attacker) makes every later XADD fail once the stream's last
-- id is exhausted: such entries are acknowledged and deleted, the stream's last id (and the group's, if
-- it had read past the bound) set back to its newest remaining entry. Returns how many were deleted.
local t = redis.call('TIME')
local bound = string.format('%.0f', tonumber(t[1]) * 1000 + 86400000) .. '-0'
local ahead = redis.call('XRANGE', KEYS[1], bound, '+', 'COUNT', 1000)
for _, entry in ipairs(ahead) do
  redis.call('XACK', KEYS[1], ARGV[1], entry[1])
  redis.call('XDEL', KEYS[1], entry[1])
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = top[1] and top[1][1] or '0-1'
redis.call('XSETID', KEYS[1], last, 'MAXDELETEDID', last)
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, group in ipairs(groups) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == ARGV[1] then
      local ms = tonumber(string.match(info['last-delivered-id'], '^(%d+)')) or 0
      if ms >= tonumber(t[1]) * 1000 + 86400000 then
        redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last)
      end
    end
  end
end
return #ahead
"""


def consumer_name() -> str:
    """This process's consumer: host, pid and a random part (a reused pid is a new consumer)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"


def failures_of(fields: Any) -> int:
    """How many times the entry failed before, in any process (untrusted: a value that is not a short
    number counts as failed too often)."""
    raw = fields.get(b"a") if isinstance(fields, dict) else None
    if raw is None:
        return 0
    if isinstance(raw, bytes) and raw.isdigit() and len(raw) <= MAX_ATTEMPTS_DIGITS:
        return int(raw)
    return DEAD_AFTER


def decode(fields: Any) -> Payload | None:
    """The payload of one stream entry, or None if it is not one this plugin wrote."""
    raw = fields.get(b"p") if isinstance(fields, dict) else None
    return payload.decode(raw, MAX_ENTRY_BYTES) if isinstance(raw, bytes) else None
