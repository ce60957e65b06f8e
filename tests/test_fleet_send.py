"""Fleet mode's reader sends through the one send path (``delivery.dispatch.Dispatcher``), on a real Redis
and the Pendo stand-in: metadata rows of several entries merged newest-wins and never sent older after
newer, and entries still being sent at shutdown appended anew for another process."""

from __future__ import annotations

import time

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM, encode
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import wait_until
from tests.conftest import stop_runtime
from tests.fleet_redis import RedisServer
from tests.sending import track_payload


def _visitor(values: dict[str, object], age_ms: int) -> bytes:
    """A visitor row as another process would have written it, stamped ``age_ms`` ago."""
    return encode(payload.metadata("visitor", "u5", values, time.time() * 1000 - age_ms))


def test_metadata_of_several_entries_is_merged_newest_wins_and_never_goes_back(
    plugin: Sandbox, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.xadd(STREAM, {"p": _visitor({"plan": "new"}, age_ms=0)})
    client.xadd(STREAM, {"p": _visitor({"plan": "old", "seats": 3}, age_ms=60_000)})  # older, read later
    pendo_plugin.configure(redis_url=redis_server.url)

    assert pendo_plugin.flush(20)
    assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=10)
    assert plugin.visitors()["u5"]["plan"] == "new"
    assert plugin.visitors()["u5"]["seats"] == 3
    assert plugin.counts()["metadata_requests"] == 1  # one merged row, one request

    client.xadd(STREAM, {"p": _visitor({"plan": "older"}, age_ms=120_000)})  # read in a later batch
    assert pendo_plugin.flush(20)
    assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=10)  # settled: nothing newer to send
    assert plugin.visitors()["u5"]["plan"] == "new"
    assert counters.snapshot()["superseded:visitor"] == 1
    assert plugin.counts()["metadata_requests"] == 1


def test_entries_being_sent_at_shutdown_are_appended_anew(
    plugin: Sandbox, redis_server: RedisServer, blackhole_url: str
) -> None:
    client = redis_server.client()
    for n in range(5):
        client.xadd(STREAM, {"p": encode(track_payload(n))})
    pendo_plugin.configure(redis_url=redis_server.url, data_url=blackhole_url, request_timeout=60)

    assert not pendo_plugin.flush(0.5)  # Pendo never answers: every entry is held, being sent
    assert wait_until(lambda: client.xpending(STREAM, GROUP)["pending"] == 5, timeout=10)
    stop_runtime()

    assert client.xpending(STREAM, GROUP)["pending"] == 0
    assert client.xlen(STREAM) == 5  # waiting for any process, not lost and not acknowledged
    assert counters.snapshot()["redis:requeued"] == 5
    assert counters.snapshot().get("redis:acked", 0) == 0
    assert plugin.counts()["track_events"] == 0
    # cut short by the shutdown, not failed: no failure counted towards the dead stream
    assert {fields.get(b"a") for _, fields in client.xrange(STREAM)} == {b"0"}
