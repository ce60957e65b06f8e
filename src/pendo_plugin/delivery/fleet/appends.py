"""Appends to the fleet's stream (see :mod:`pendo_plugin.delivery.fleet.queue`): a batch of payloads goes
in one round trip, as a few calls of :data:`APPEND_SCRIPT` (one ``XADD`` per payload inside Redis, capped
at ``PENDO_REDIS_MAX_LEN``), then ``WAIT`` for the replicas asked for. One script call per few MB costs
1.4 us of CPU per payload here against 11 us for a pipeline of one ``XADD`` command each: redis-py builds,
packs and parses every command in Python."""

from __future__ import annotations

from typing import Any

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.link import RedisLink

APPEND_CALL_BYTES = 4 << 20  # payloads per script call: at most this many bytes (one at least)

APPEND_SCRIPT = """
-- KEYS[1]: the stream; ARGV[1]: its cap (an exact MAXLEN); then the payloads, each appended as one entry
-- ('p': the payload). Returns {the stream's length before, the new ids...}.
local out = {redis.call('XLEN', KEYS[1])}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'p', ARGV[i])
end
return out
"""


def runs(lines: list[bytes], limit: int = APPEND_CALL_BYTES) -> list[list[bytes]]:
    """``lines`` cut, in order, into runs of at most ``limit`` bytes (a longer line makes a run alone)."""
    found: list[list[bytes]] = []
    size = limit
    for line in lines:
        if size + len(line) > limit:
            found.append([])
            size = 0
        found[-1].append(line)
        size += len(line)
    return found


class Appender:
    """Appends through :data:`APPEND_SCRIPT`, loaded once per client (again when Redis forgot it)."""

    def __init__(self) -> None:
        self._script: tuple[Any, Any] | None = None  # (client, its registered APPEND_SCRIPT)

    async def append(
        self, client: Any, link: RedisLink, lines: list[bytes], cap: int, replicas: int
    ) -> tuple[Any, list[Any], bool]:
        """Append ``lines``: the stream's length before, the new entries' ids, and whether ``replicas``
        replicas confirmed them (see :meth:`~pendo_plugin.delivery.fleet.link.RedisLink.confirmed`)."""
        from redis.exceptions import NoScriptError

        if self._script is None or self._script[0] is not client:
            counters.record("redis", "round_trips")
            await client.script_load(APPEND_SCRIPT)  # else a whole first batch would go twice
            self._script = (client, client.register_script(APPEND_SCRIPT))
        script = self._script[1]
        for loaded in (False, True):
            pipe = client.pipeline(transaction=False)
            for run in runs(lines):
                pipe.evalsha(script.sha, 1, STREAM, cap, *run)
            link.wait_for_replicas(pipe, replicas)
            counters.record("redis", "round_trips")
            results = await pipe.execute(raise_on_error=False)  # redis-py's own error quotes every payload
            if loaded or not any(isinstance(answer, NoScriptError) for answer in results):
                break
            counters.record("redis", "round_trips")  # Redis forgot the script: nothing was appended
            await client.script_load(APPEND_SCRIPT)
        for answer in results:
            if isinstance(answer, Exception):
                raise answer
        answers = results[:-1] if replicas else results
        ids = [entry_id for answer in answers if isinstance(answer, list) for entry_id in answer[1:]]
        length = answers[0][0] if answers and isinstance(answers[0], list) and answers[0] else None
        return length, ids, link.confirmed(results[-1], replicas)
