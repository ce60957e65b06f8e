"""Appends to the fleet's stream through one script call per few MB: runs cut by bytes (pure), and on a
real Redis the entries, their order, the length cap and a server that forgot its scripts."""

from __future__ import annotations

import asyncio

from pendo_plugin import counters
from pendo_plugin.delivery.fleet.appends import Appender, runs
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.link import RedisLink
from tests.fleet_redis import RedisServer


def test_payloads_are_cut_into_runs_of_a_few_mb_in_order() -> None:
    assert runs([]) == []
    assert runs([b"a", b"bb", b"ccc"], limit=3) == [[b"a", b"bb"], [b"ccc"]]
    assert runs([b"x" * 10, b"y"], limit=3) == [[b"x" * 10], [b"y"]]  # a longer payload goes alone
    assert [len(run) for run in runs([b"z" * 1000] * 10, limit=4000)] == [4, 4, 2]


def test_one_round_trip_appends_every_payload_in_order_within_the_cap(redis_server: RedisServer) -> None:
    sync = redis_server.client()
    lines = [b'{"n":%d}' % n for n in range(30)]

    async def append() -> list[tuple[object, list[object], bool]]:
        link, appender = RedisLink(redis_server.url), Appender()
        client = await link.client()
        try:
            first = await appender.append(client, link, lines[:10], 100, 0)
            sync.script_flush()  # Redis restarted or flushed its scripts: loaded again, nothing twice
            second = await appender.append(client, link, lines[10:], 25, 0)
            return [first, second]
        finally:
            await link.close()

    before = counters.snapshot().get("redis:round_trips", 0)
    (length, ids, confirmed), (later_length, later_ids, _) = asyncio.run(append())
    assert (length, later_length, confirmed) == (0, 10, True)
    assert len(ids) == 10 and len(later_ids) == 20
    entries = sync.xrange(STREAM)
    assert len(entries) == 25  # capped: the 5 oldest trimmed
    assert [fields[b"p"] for _, fields in entries] == lines[5:]
    assert [entry_id for entry_id, _ in entries] == (ids + later_ids)[5:]
    assert counters.snapshot()["redis:round_trips"] - before == 2 + 3  # load, append; refused, load, append
