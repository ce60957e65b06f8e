"""Several Lua script calls in one round trip (see :mod:`pendo_plugin.delivery.fleet.queue`: an
acknowledgement rides with the next read).

redis-py runs a script given a pipeline only after a ``SCRIPT EXISTS`` of its own (a second round trip
at every call), so the calls go by digest (``EVALSHA``) and one the server does not know (Redis
restarted, or its scripts flushed) is run again alone, by the script object, which loads it.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin import counters

Call = tuple[Any, list[Any], list[Any]]  # (a registered script, its keys, its arguments)


async def run_scripts(client: Any, calls: list[Call]) -> list[Any]:
    """The answers of ``calls``, run in order in one pipeline; raises redis-py's error of the first
    call that failed (the others ran: the caller reads its own pending entries again)."""
    import redis

    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    counters.record("redis", "round_trips")
    answers = list(await pipe.execute(raise_on_error=False))
    for number, ((script, keys, args), answer) in enumerate(zip(calls, answers, strict=True)):
        if isinstance(answer, redis.exceptions.NoScriptError):
            counters.record("redis", "round_trips")
            answers[number] = answer = await script(keys=keys, args=args)
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return answers
