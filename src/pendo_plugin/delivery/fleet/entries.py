"""The entries of the fleet's Redis Stream: names, the payload codec (the spool's:
:mod:`pendo_plugin.pendo.payload`) with its checks on what is read back, and the Lua script
that settles outcomes (see :mod:`pendo_plugin.delivery.fleet.queue`)."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from pendo_plugin.delivery.fleet.link import KEY_PREFIX
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import Payload, encode

__all__ = [
    "GROUP",
    "MAX_ENTRY_BYTES",
    "REPAIR_SCRIPT",
    "SETTLE_SCRIPT",
    "STREAM",
    "consumer_name",
    "decode",
    "encode",
]

STREAM = KEY_PREFIX + "queue"
GROUP = "pendo_plugin"
MAX_ENTRY_BYTES = 1_000_000

SETTLE_SCRIPT = """
-- KEYS[1]: the stream; ARGV[1]: the group, ARGV[2]: how many ids to acknowledge, then those ids,
-- then (id, payload) pairs to retry: each is appended anew only if it was still in the stream
-- (an entry trimmed by the length cap stays dropped), before its old entry is removed (so an append
-- that fails leaves it in place).
local acks = tonumber(ARGV[2])
for i = 3, 2 + acks do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
for i = 3 + acks, #ARGV, 2 do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'p', ARGV[i + 1])
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return 1
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


def decode(fields: Any) -> Payload | None:
    """The payload of one stream entry, or None if it is not one this plugin wrote."""
    raw = fields.get(b"p") if isinstance(fields, dict) else None
    return payload.decode(raw, MAX_ENTRY_BYTES) if isinstance(raw, bytes) else None
