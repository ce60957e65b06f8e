"""Poison entries in the fleet's stream: an entry written with the maximum stream id (by hand or by an
attacker with write access to Redis) never stops appends; a flood of large entries is held in memory
bounded in bytes. A real redis-server, the real plugin and the Pendo stand-in."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from segment.analytics import Client

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import DEAD_AFTER, DEAD_STREAM, GROUP, STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, pendo_env, run_app, wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
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
flushed = pendo_plugin.flush(60)
report(flushed=flushed, peak_mb=peak_rss_kb() / 1024)
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


def test_an_entry_no_process_can_send_waits_without_stalling_the_reader(
    plugin: Sandbox, segment: Client, redis_server: RedisServer
) -> None:
    redis = redis_server.client()
    webhook = {"k": "webhook", "b": {"type": "track", "event": "Nobody", "userId": "u9"}}
    redis.xadd(STREAM, {"p": json.dumps(webhook).encode()})  # no process here has an API key for it
    pendo_plugin.configure(redis_url=redis_server.url)
    sent_at: dict[int, float] = {}
    for burst in range(5):
        for n in range(burst * 10, burst * 10 + 10):
            segment.track(user_id="u1", event="Good", properties={"n": n})
            sent_at[n] = time.monotonic()
        time.sleep(0.5)  # a steady trickle over 2.5 s, while the entry that cannot be sent waits
    segment.flush()
    assert plugin.wait_for(lambda box: box.counts()["track_events"] == 50, timeout=20)
    accepted = [r.at for r in plugin.request_log() if r.path == "/data/track" and r.status == 200]
    received = {e["properties"]["n"]: at for e, at in zip(plugin.track_events(), accepted, strict=True)}
    lag = max(received[n] - sent_at[n] for n in sent_at)
    assert lag < 2.5, f"a good event waited {lag:.2f} s behind the entry no process can send"
    assert redis.xlen(STREAM) == 1  # it waits, pending here, for a process that may send it
    assert "redis:requeued" not in counters.snapshot()  # and is not appended over and over


def test_an_entry_that_always_fails_goes_to_the_dead_stream_after_its_budget(
    plugin: Sandbox, redis_server: RedisServer
) -> None:
    redis = redis_server.client()
    body = {"type": "track", "event": "Poison", "visitorId": "u1", "timestamp": int(time.time() * 1000),
            "context": {}, "properties": {}}
    redis.xadd(STREAM, {"p": json.dumps({"k": "track", "b": body}).encode()})
    plugin.fail_next(1000, 500)  # every track request fails
    pendo_plugin.configure(redis_url=redis_server.url, max_retries=0)
    pendo_plugin.flush(5)  # starts the worker, which reads the stream
    assert wait_until(lambda: redis.xlen(DEAD_STREAM) == 1, timeout=20), counters.snapshot()
    assert wait_until(lambda: redis.xlen(STREAM) == 0, timeout=5)
    assert counters.snapshot()["redis:dead_lettered"] == 1
    tries = sum(1 for r in plugin.request_log() if r.path == "/data/track")
    assert tries == DEAD_AFTER  # one attempt per delivery: no spinning on it


def test_the_dead_stream_is_shown_listed_retried_and_purged(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis = redis_server.client()
    body = {"type": "track", "event": "Poison", "visitorId": "u7", "timestamp": 1, "properties": {}}
    redis.xadd(DEAD_STREAM, {"p": json.dumps({"k": "track", "b": body}).encode(), "a": b"5"})
    redis.xadd(DEAD_STREAM, {"p": b"not a payload", "a": b"5"})
    env = pendo_env(sandbox.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_REDIS_URL=redis_server.url,
                    PENDO_SPOOL_DIR=str(tmp_path / "spool"))

    def command(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "spool", *args], env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"dead      2 in {DEAD_STREAM}" in command("status")
    listed = command("dead", "list")
    assert "failed 5x  track 'Poison' of u7" in listed and "not a payload" in listed
    command("dead", "retry")
    assert redis.xlen(STREAM) == 1 and redis.xlen(DEAD_STREAM) == 1  # the payload is back, failures reset
    assert b"a" not in redis.xrange(STREAM)[0][1]
    command("dead", "purge", "--yes")
    assert redis.xlen(DEAD_STREAM) == 0


def test_a_restart_that_lost_the_stream_is_detected_logged_once_and_counted(
    plugin: Sandbox, segment: Client, redis_server: RedisServer, blackhole_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = redis_server.client()
    pendo_plugin.configure(redis_url=redis_server.url, data_url=blackhole_url, request_timeout=60)
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        for n in range(30):
            segment.track(user_id="u1", event="Waiting", properties={"n": n})
        segment.flush()
        assert wait_until(lambda: redis.xlen(STREAM) == 30, timeout=10)  # Pendo never answers: they wait
        redis_server.restart()  # no persistence: the stream and its group are gone
        assert wait_until(lambda: counters.snapshot().get("redis:group_lost", 0) >= 1, timeout=20)
    stats = counters.snapshot()
    assert stats["redis:group_lost"] == 1
    assert stats["dropped:redis_lost"] == 30
    messages = [record.getMessage() for record in caplog.records]
    assert sum("lost its consumer group" in message for message in messages) == 1
    assert not any("is not answering (ResponseError)" in message for message in messages)
