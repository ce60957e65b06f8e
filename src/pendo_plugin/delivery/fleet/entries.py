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

__all__ = ["GROUP", "SETTLE_SCRIPT", "STREAM", "consumer_name", "decode", "encode"]

STREAM = KEY_PREFIX + "queue"
GROUP = "pendo_plugin"
MAX_ENTRY_BYTES = 1_000_000

SETTLE_SCRIPT = """
-- KEYS[1]: the stream; ARGV[1]: the group, ARGV[2]: how many ids to acknowledge, then those ids,
-- then (id, payload) pairs to retry: each is appended anew only if it was still in the stream
-- (an entry trimmed by the length cap stays dropped).
local acks = tonumber(ARGV[2])
for i = 3, 2 + acks do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
for i = 3 + acks, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'p', ARGV[i + 1])
  end
end
return 1
"""


def consumer_name() -> str:
    """This process's consumer: host, pid and a random part (a reused pid is a new consumer)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"


def decode(fields: Any) -> Payload | None:
    """The payload of one stream entry, or None if it is not one this plugin wrote."""
    raw = fields.get(b"p") if isinstance(fields, dict) else None
    return payload.decode(raw, MAX_ENTRY_BYTES) if isinstance(raw, bytes) else None
