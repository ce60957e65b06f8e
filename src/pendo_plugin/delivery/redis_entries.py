"""The entries of the fleet's Redis Stream: names, encoding, the checks on what is read back, and
the Lua script that settles outcomes (see :mod:`pendo_plugin.delivery.redis_queue`)."""

from __future__ import annotations

import json
import os
import secrets
import socket
from typing import Any

from pendo_plugin.delivery.redis_link import KEY_PREFIX
from pendo_plugin.delivery.rows import METADATA_KINDS
from pendo_plugin.delivery.senders import Payload

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


def encode(payload: Payload) -> bytes:
    """One payload as the bytes of a stream entry's ``p`` field (compact JSON)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode(fields: Any) -> Payload | None:
    """The payload of one stream entry, or None if it is not one this plugin wrote."""
    raw = fields.get(b"p") if isinstance(fields, dict) else None
    if not isinstance(raw, bytes) or len(raw) > MAX_ENTRY_BYTES:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    kind = payload.get("k")
    if kind in ("track", "webhook"):
        return payload if isinstance(payload.get("b"), dict) else None
    if kind == "meta" and payload.get("t") in METADATA_KINDS and isinstance(payload.get("v"), dict):
        return payload if isinstance(payload.get("id"), (str, int)) else None
    return None
