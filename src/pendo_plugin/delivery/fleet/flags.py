"""Fleet-wide live flags: rollout settings kept in the fleet's Redis and applied by every process.

``pendo-plugin rollout set`` writes them to one hash; each process's worker reads it every
``POLL_INTERVAL`` seconds and applies the flags over its environment settings and ``configure()``
(so a kill switch set for the fleet wins), under the ``pendo_rollout`` hook exactly as the same
settings from the environment would be. What is read back is untrusted: only the known flag
names, bounded sizes, values checked by the same parser as the environment (an ``@file`` list is
refused: Redis must not make a process read its local files); a bad flag is logged, counted
(``fleet_flags:invalid``) and ignored, the others still apply.

The hash is read by one script (:data:`READ_SCRIPT`) that checks the key's type and each field's size
in Redis before any value leaves it: a field that is no known flag comes back without its value, a
value over :data:`MAX_VALUE_BYTES` as its size only,
a hash of more than :data:`MAX_FIELDS` fields as its known flags only, and a key of another type
(``WRONGTYPE`` for ``HGETALL``) as an invalid flag, never as Redis being down. Problems are logged
once each, at most 20 of them (:func:`pendo_plugin.logs.log_once`'s family bound), escaped and cut.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pendo_plugin import config, counters, shown
from pendo_plugin.delivery.fleet.link import KEY_PREFIX, RedisLink, redis_errors
from pendo_plugin.logs import log, log_once
from pendo_plugin.pendo.rollout import ID_LIST_FIELDS

FLAGS_KEY = KEY_PREFIX + "flags"
FLAG_FIELDS: tuple[str, ...] = ("enabled", "rollout_percent", "shadow", "calls", *ID_LIST_FIELDS)
POLL_INTERVAL = 2.0  # with one Redis timeout (1 s) on top, a change applies within 5 s
MAX_VALUE_BYTES = 1 << 20
MAX_FIELDS = 64
MAX_NAME_BYTES = 64
MAX_PROBLEM_CHARS = 200
READ_SCRIPT = """
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'hash' then return {kind, 0} end
local count = redis.call('HLEN', key)
local most_fields, most_name, most_value = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local known = {}
for i = 4, #ARGV do known[ARGV[i]] = true end
local names = {}
if count <= most_fields then
  names = redis.call('HKEYS', key)
else
  for i = 4, #ARGV do
    if redis.call('HEXISTS', key, ARGV[i]) == 1 then table.insert(names, ARGV[i]) end
  end
end
local out = {kind, count}
for _, name in ipairs(names) do
  if #name > most_name then
    table.insert(out, #name)
    table.insert(out, 0)
  elseif not known[name] then
    table.insert(out, name)
    table.insert(out, '')
  else
    table.insert(out, name)
    local size = redis.call('HSTRLEN', key, name)
    if size > most_value then table.insert(out, size)
    else table.insert(out, redis.call('HGET', key, name)) end
  end
end
return out
"""
"""Reads the flags hash bounded: ``{type, field count, name, value or size, ...}``; ARGV: the most
fields, name bytes and value bytes, then the known flag names (read alone when there are too many). The
value of a field that is no known flag is never read (``''``: reported as an unknown flag): 64 such
fields of 1 MB took an app from 55 to 194 MB RSS in 12 s."""


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        if len(value) > MAX_VALUE_BYTES:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) and len(value) <= MAX_VALUE_BYTES else None


def script_args() -> list[object]:
    """The arguments of :data:`READ_SCRIPT`."""
    return [MAX_FIELDS, MAX_NAME_BYTES, MAX_VALUE_BYTES, *FLAG_FIELDS]


def from_reply(reply: Any) -> tuple[dict[Any, Any], list[str]]:
    """The fields :data:`READ_SCRIPT` read, and a line per field (or key) it would not read whole."""
    if not isinstance(reply, list) or len(reply) < 2 or len(reply) % 2:
        return {}, ["an answer that is not the flag script's"]
    kind = _text(reply[0]) or "?"
    if kind == "none":
        return {}, []
    if kind != "hash":
        return {}, [f"the key {FLAGS_KEY} is a {shown.escape(kind, 20)}, not a hash: no fleet flag applies"]
    problems = []
    if isinstance(reply[1], int) and reply[1] > MAX_FIELDS:
        problems.append(f"{reply[1]:,} fields, more than {MAX_FIELDS}: only the known flags read")
    fields: dict[Any, Any] = {}
    for name, value in zip(reply[2::2], reply[3::2], strict=True):
        if isinstance(name, int):
            problems.append(f"a field name of {name:,} bytes, over {MAX_NAME_BYTES}")
        elif isinstance(value, int):
            label = shown.escape(_text(name) or "?", MAX_NAME_BYTES)
            problems.append(f"{label}: a value of {value:,} bytes, over {MAX_VALUE_BYTES:,}; not read")
        else:
            fields[name] = value
    return fields, problems


def check(name: str, value: str) -> str | None:
    """Why ``value`` is not usable for flag ``name``, or None when it is."""
    if name not in FLAG_FIELDS:
        return f"unknown flag {name[:40]!r}"
    if name in ID_LIST_FIELDS and value.strip().startswith("@"):
        return f"{name}: a list from a file is not accepted from Redis"
    try:
        config.parse({"track_secret": "check", name: value})
    except config.ConfigError as exc:
        return str(exc)
    return None


def validate(raw: Mapping[Any, Any]) -> tuple[dict[str, str], list[str]]:
    """The usable flags in a hash read from Redis, and a line per flag that was not."""
    flags: dict[str, str] = {}
    problems: list[str] = []
    for number, (key, value) in enumerate(raw.items()):
        if number >= MAX_FIELDS:
            problems.append(f"more than {MAX_FIELDS} fields; the rest ignored")
            break
        name, text = _text(key), _text(value)
        if name is None or text is None:
            problems.append("a field that is not short UTF-8 text")
            continue
        problem = check(name, text)
        if problem is None:
            flags[name] = text
        else:
            problems.append(shown.escape(problem, MAX_PROBLEM_CHARS))
    return flags, problems


def read_flags(reply: Any) -> tuple[dict[str, str], list[str]]:
    """The usable flags in :data:`READ_SCRIPT`'s reply, and a line per problem (escaped, cut)."""
    fields, problems = from_reply(reply)
    flags, invalid = validate(fields)
    return flags, problems + invalid


class FlagPoller:
    """Reads the fleet's flags every ``POLL_INTERVAL`` seconds from the worker's loop."""

    def __init__(self) -> None:
        self._next = 0.0
        self._script: tuple[Any, Any] | None = None  # (client, its registered READ_SCRIPT)
        self.read_at: float | None = None  # when the flags were last read (monotonic), None: never

    def due(self) -> bool:
        return time.monotonic() >= self._next

    async def poll(self, link: RedisLink) -> None:
        """Read and apply the flags once; Redis not answering keeps the flags last applied."""
        self._next = time.monotonic() + POLL_INTERVAL
        import redis

        try:
            client = await link.client()
            if self._script is None or self._script[0] is not client:
                self._script = (client, client.register_script(READ_SCRIPT))
            reply = await self._script[1](keys=[FLAGS_KEY], args=script_args())
            counters.record("redis", "round_trips")
            link.answered()
        except redis.ResponseError as exc:  # Redis answered: a refusal (no scripting, ACL), not an outage
            reply = None
            problem = f"the flags could not be read: {shown.escape(exc, 120)}"
        except redis_errors() as exc:
            link.failed(exc)
            return
        self.read_at = time.monotonic()
        flags, problems = read_flags(reply) if reply is not None else ({}, [problem])
        for problem in problems:
            counters.record("fleet_flags", "invalid")
            log_once(
                f"fleet-flag:{problem}",
                logging.ERROR,
                "pendo_plugin: ignored a fleet flag in Redis: %s",
                problem,
                family="fleet-flag",
            )
        if config.apply_fleet_flags(flags):
            counters.record("fleet_flags", "applied")
            log.warning(
                "pendo_plugin: fleet flags from Redis applied: %s",
                ", ".join(f"{name}={shown.escape(value, 40)}" for name, value in sorted(flags.items()))
                or "none",
            )
