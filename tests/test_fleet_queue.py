"""The shared durable queue on a real Redis, driven in this process: write-ahead to the stream,
acknowledgement after Pendo's answer, flush() delivering what others left, the length cap, bad
entries, and the local spool moved back into the stream after an outage."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from segment.analytics import Client

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM, decode
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import wait_until
from tests.conftest import TRACK_SECRET, stop_runtime
from tests.fleet_redis import RedisServer


@pytest.fixture
def segment(plugin: Sandbox) -> Iterator[Client]:
    client = Client("test-write-key", host=plugin.url, upload_interval=0.05)
    yield client
    client.flush()
    client.join()


def _track(client: Client, count: int, user: str = "u1") -> None:
    for n in range(count):
        client.track(user_id=user, event="Fleet", properties={"n": n})
    client.flush()


def _payload(n: int) -> bytes:
    """A track payload as another process would have written it."""
    body = {
        "type": "track",
        "event": "Left",
        "visitorId": "u9",
        "timestamp": int(time.time() * 1000),
        "context": {},
        "properties": {"n": n},
    }
    return json.dumps({"k": "track", "b": body}).encode()


def test_events_go_through_the_stream_and_leave_it_once_delivered(
    plugin: Sandbox, segment: Client, redis_server: RedisServer
) -> None:
    pendo_plugin.configure(redis_url=redis_server.url)
    _track(segment, 50)
    segment.identify(user_id="u1", traits={"plan": "pro"})
    segment.flush()

    assert pendo_plugin.flush(20)
    assert sorted(e["properties"]["n"] for e in plugin.track_events()) == list(range(50))
    assert plugin.visitors()["u1"]["plan"] == "pro"
    stats = counters.snapshot()
    assert stats["redis:appended"] == stats["redis:acked"] == 51
    assert "written_ahead" not in stats  # nothing went to the local spool
    client = redis_server.client()
    assert client.xlen(STREAM) == 0
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    assert stats["redis:round_trips"] < 40  # appends and reads are batched, not one round trip per event


def test_flush_delivers_what_another_process_left_in_the_stream(
    plugin: Sandbox, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    for n in range(20):
        client.xadd(STREAM, {"p": _payload(n)})
    pendo_plugin.configure(redis_url=redis_server.url)

    assert pendo_plugin.flush(20)
    assert plugin.wait_for(lambda box: box.counts()["track_events"] == 20, timeout=10)
    assert client.xlen(STREAM) == 0


def test_a_process_that_may_not_send_an_entry_leaves_it_for_others(
    plugin: Sandbox, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.xadd(STREAM, {"p": _payload(1)})
    pendo_plugin.configure(redis_url=redis_server.url, track_secret=None)  # metadata only here

    assert pendo_plugin.flush(10)
    assert counters.snapshot()["held:no_secret:track"] == 1  # counted where it was held: left for others
    assert client.xlen(STREAM) == 1  # still waiting, for a process with the track secret
    # parked: left pending (no requeue, no pause), for a process that may send it to take over
    assert client.xpending(STREAM, GROUP)["pending"] == 1
    assert "redis:requeued" not in counters.snapshot()
    assert plugin.counts()["track_events"] == 0

    pendo_plugin.configure(track_secret=TRACK_SECRET)
    assert pendo_plugin.flush(10)
    assert plugin.wait_for(lambda box: box.counts()["track_events"] == 1, timeout=10)
    assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=10)


def test_bad_entries_are_counted_dropped_and_removed(
    plugin: Sandbox, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.xadd(STREAM, {"p": b"{not json"})
    client.xadd(STREAM, {"p": json.dumps({"k": "track", "b": "a string"}).encode()})
    client.xadd(STREAM, {"other": b"x"})
    client.xadd(STREAM, {"p": b"x" * 1_000_001})
    client.xadd(STREAM, {"p": _payload(1)})
    pendo_plugin.configure(redis_url=redis_server.url)

    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        assert pendo_plugin.flush(20)
        assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=10)
    assert plugin.counts()["track_events"] == 1
    assert counters.snapshot()["dropped:redis_corrupt"] == 4
    assert any("malformed entry in Redis" in r.getMessage() for r in caplog.records)


def test_decode_accepts_only_the_payload_shapes_the_plugin_writes() -> None:
    meta = {"k": "meta", "t": "visitor", "id": "u1", "v": {"plan": "pro"}}
    decoded = decode({b"p": json.dumps(meta).encode()})
    assert decoded is not None and decoded.as_dict() == meta
    assert decode({b"p": json.dumps({**meta, "t": "group"}).encode()}) is None
    assert decode({b"p": json.dumps([1]).encode()}) is None
    assert decode(None) is None


def test_the_stream_is_capped_and_trims_are_counted_and_logged(
    plugin: Sandbox,
    segment: Client,
    redis_server: RedisServer,
    closed_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pendo_plugin.configure(redis_url=redis_server.url, redis_max_len=100, data_url=closed_url)
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        _track(segment, 150)
        assert wait_until(lambda: counters.snapshot().get("redis:appended", 0) == 150, timeout=15)
    assert redis_server.client().xlen(STREAM) == 100
    assert counters.snapshot()["dropped:redis_full"] == 50
    assert any("PENDO_REDIS_MAX_LEN=100" in r.getMessage() for r in caplog.records)


def test_redis_down_falls_back_to_the_spool_and_moves_it_back_when_redis_answers(
    plugin: Sandbox,
    segment: Client,
    redis_server: RedisServer,
    closed_url: str,
    spool_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_server.stop()
    pendo_plugin.configure(redis_url=redis_server.url, data_url=closed_url)
    spool = Spool(spool_dir, 1 << 30)
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        _track(segment, 30)
        assert wait_until(lambda: spool.status().items == 30, timeout=15)
        assert counters.snapshot()["redis:fallback"] >= 1
        redis_server.start()
        client = redis_server.client()
        assert wait_until(lambda: spool.status().items == 0 and client.xlen(STREAM) == 30, timeout=20)
    assert counters.snapshot()["redis:moved_from_spool"] == 30
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is not answering" in m for m in messages) == 1
    assert any("answers again" in m for m in messages)
    stop_runtime()
