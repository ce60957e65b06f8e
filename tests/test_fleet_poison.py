"""Poison entries in the fleet's stream: an entry written with the maximum stream id (by hand or by an
attacker with write access to Redis) never stops appends; a flood of large entries is held in memory
bounded in bytes. A real redis-server, the real plugin and the Pendo stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from segment.analytics import Client

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
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


FLOOD = 150
BIG = 900_000  # bytes of one entry's property: 0.9 MB entries, under the 1 MB an entry may have

DRAINING_APP = """
import resource
flushed = pendo_plugin.flush(60)
report(flushed=flushed, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_a_flood_of_large_entries_is_held_in_memory_bounded_in_bytes(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis = redis_server.client()
    redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for n in range(FLOOD):
        body = {"type": "track", "event": "Big", "visitorId": "u1", "timestamp": int(time.time() * 1000),
                "context": {}, "properties": {"n": n, "blob": "x" * BIG}}
        redis.xadd(STREAM, {"p": json.dumps({"k": "track", "b": body}).encode()})
    sandbox.set_latency(1.0)  # each request takes a second: what is read waits in memory meanwhile
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, flush_timeout=60)
    run = run_app(app_script(DRAINING_APP), env, timeout=120)
    assert run.returncode == 0, run.describe()
    report = run.reports()[-1]
    assert redis.xlen(STREAM) == 0, run.describe()
    assert report["peak_mb"] < 300, run.describe()  # 32 MB of entries in flight (206 MB), not 135 MB (463)
