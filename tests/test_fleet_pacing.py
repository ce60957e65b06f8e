"""How often the fleet's queue reads and acknowledges (pure), and an acknowledgement riding with a read in
one round trip on a real Redis, a server that forgot its scripts included."""

from __future__ import annotations

import asyncio
import json

import pytest

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.delivery.fleet.outcomes import Outcomes
from pendo_plugin.delivery.fleet.pacing import (
    READ_IDLE,
    READ_IDLE_BUSY,
    SETTLE_DELAY,
    read_idle,
    settle_delay,
)
from pendo_plugin.delivery.fleet.reads import BoundedReads
from pendo_plugin.delivery.fleet.scripts import run_scripts
from tests.fleet_redis import RedisServer


@pytest.mark.parametrize(
    ("held", "rate", "pace", "idle"),
    [
        (30, None, None, READ_IDLE),  # no budget: look again soon
        (0, 80.0, 5.0, READ_IDLE),  # nothing held: look again soon
        (30, 80.0, None, 30 / 80),  # no pace known yet: the whole budget's
        (30, 80.0, 20.0, 1.5),  # this process's own pace: its share of the budget
        (30, 80.0, 0.0, READ_IDLE_BUSY),  # nothing sent since the last read: as late as allowed
        (30, 80.0, 500.0, 30 / 80),  # never faster than the budget
    ],
)
def test_an_empty_stream_is_read_again_when_the_entries_held_run_out(
    held: int, rate: float | None, pace: float | None, idle: float
) -> None:
    assert read_idle(held, rate, pace) == pytest.approx(idle)


def test_outcomes_wait_for_the_next_read_with_a_budget_but_never_near_the_claim_time() -> None:
    assert settle_delay(None, 60.0) == SETTLE_DELAY
    assert settle_delay(80.0, 60.0) > READ_IDLE_BUSY  # a read comes first and settles them on its way
    assert settle_delay(80.0, 1.0) <= 0.25  # an entry sent is never taken over before it is acknowledged
    assert settle_delay(None, 0.1) <= 0.025


def _payload(n: int) -> bytes:
    return json.dumps({"k": "track", "b": {"type": "track", "event": "E", "visitorId": "u", "n": n}}).encode()


def test_an_acknowledgement_and_a_read_share_one_round_trip_even_after_the_scripts_are_flushed(
    redis_server: RedisServer,
) -> None:
    sync = redis_server.client()
    sync.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = [sync.xadd(STREAM, {"p": _payload(n)}) for n in range(6)]

    async def cycle() -> tuple[list[bytes], list[bytes], bool]:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_server.url)
        reads, outcomes = BoundedReads("tester"), Outcomes()
        try:
            first = reads.answer((await run_scripts(client, [reads.read(client, ">", 3)]))[0])[1]
            for entry_id, _ in first:
                outcomes.ack(entry_id)
            sync.script_flush()  # a restarted Redis: the digests are unknown, each call is loaded again
            settle = outcomes.call(client)
            assert settle is not None
            answers = await run_scripts(client, [settle[0], reads.read(client, ">", 3)])
            outcomes.settled(answers[0], *settle[1:])
            second = [entry_id for entry_id, _ in reads.answer(answers[1])[1]]
            return [entry_id for entry_id, _ in first], second, bool(outcomes)
        finally:
            await client.aclose()

    before = counters.snapshot().get("redis:round_trips", 0)
    first, second, waiting = asyncio.run(cycle())
    assert first == ids[:3] and second == ids[3:]
    assert sync.xlen(STREAM) == 3 and sync.xpending(STREAM, GROUP)["pending"] == 3  # the first three acked
    assert not waiting
    assert counters.snapshot()["redis:round_trips"] - before == 5  # 1 + a load, then 1 + a load of each
    stats = sync.info("commandstats")
    assert "cmdstat_script|exists" not in stats  # no SCRIPT EXISTS round trip before a pipeline


def test_a_pipeline_answers_one_round_trip_once_the_scripts_are_known(redis_server: RedisServer) -> None:
    sync = redis_server.client()
    sync.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for n in range(4):
        sync.xadd(STREAM, {"p": _payload(n)})

    async def cycles() -> int:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_server.url)
        reads, outcomes = BoundedReads("tester"), Outcomes()
        try:
            for _ in range(4):
                settle = outcomes.call(client)
                calls = [settle[0]] if settle is not None else []
                answers = await run_scripts(client, [*calls, reads.read(client, ">", 1)])
                if settle is not None:
                    outcomes.settled(answers[0], *settle[1:])
                for entry_id, _ in reads.answer(answers[-1])[1]:
                    outcomes.ack(entry_id)
            return len(outcomes.acks)
        finally:
            await client.aclose()

    before = counters.snapshot().get("redis:round_trips", 0)
    assert asyncio.run(cycles()) == 1  # the last entry read waits for the next cycle
    assert counters.snapshot()["redis:round_trips"] - before == 4 + 2  # one a cycle, two loads at first
    assert sync.xlen(STREAM) == 1
