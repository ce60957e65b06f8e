"""Poison entries in the fleet's stream: an entry written with the maximum stream id (by hand or by an
attacker with write access to Redis) never stops appends. A real redis-server and the real plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from segment.analytics import Client

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.sandbox import Sandbox
from tests.fleet_redis import RedisServer

MAX_ID = "18446744073709551615-18446744073709551615"


@pytest.fixture
def segment(plugin: Sandbox) -> Iterator[Client]:
    client = Client("test-write-key", host=plugin.url, upload_interval=0.05)
    yield client
    client.join()


@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read"])
def test_an_entry_with_the_maximum_id_never_stops_appends(
    plugin: Sandbox, segment: Client, redis_server: RedisServer, read_first: bool
) -> None:
    redis = redis_server.client()
    pendo_plugin.configure(redis_url=redis_server.url)
    if read_first:  # the group has read it: its last delivered id is the maximum too
        segment.track(user_id="u1", event="Before", properties={"n": -1})
        segment.flush()
        assert pendo_plugin.flush(10)
    redis.xadd(STREAM, {"p": b"not a payload"}, id=MAX_ID)
    if read_first:
        assert pendo_plugin.flush(10)
    for n in range(300):
        segment.track(user_id="u1", event="After", properties={"n": n})
    segment.flush()
    assert pendo_plugin.flush(20)
    after = sorted(e["properties"]["n"] for e in plugin.track_events() if e["event"] == "After")
    assert after == list(range(300))
    stats = counters.snapshot()
    assert "redis:fallback" not in stats  # every payload went through the stream
    assert stats["dropped:redis_corrupt"] >= 1
    assert redis.xlen(STREAM) == 0
