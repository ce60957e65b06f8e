"""One bad metadata row never holds back the rows batched with it: a batch that fails twice is split in
halves, down to one row, in local mode and in fleet mode. The real plugin and Segment client, the Pendo
stand-in answering 500 to every batch that holds the poison row, and (fleet mode) a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from segment.analytics import Client

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.sandbox import Sandbox
from tests.fleet_redis import RedisServer

GOOD = [f"good{n}" for n in range(13)]


@pytest.fixture
def segment(plugin: Sandbox) -> Iterator[Client]:
    client = Client("test-write-key", host=plugin.url, upload_interval=0.05)
    yield client
    client.join()


def _identify_all(client: Client) -> None:
    for user in ["poison", *GOOD]:
        client.identify(user_id=user, traits={"plan": "pro"})
    client.flush()


def test_a_poison_row_does_not_hold_back_its_batch_locally(plugin: Sandbox, segment: Client) -> None:
    pendo_plugin.configure(batch_interval=0.5)  # every row waits for one batch
    plugin.fail_rows(["poison"], status=500)
    _identify_all(segment)
    pendo_plugin.flush(20)
    assert sorted(plugin.visitors()) == sorted(GOOD)
    assert counters.snapshot().get("sent:visitor") == len(GOOD)


def test_a_poison_row_does_not_hold_back_its_batch_in_fleet_mode(
    plugin: Sandbox, segment: Client, redis_server: RedisServer
) -> None:
    pendo_plugin.configure(batch_interval=0.5, redis_url=redis_server.url)
    plugin.fail_rows(["poison"], status=500)
    _identify_all(segment)
    pendo_plugin.flush(20)
    assert sorted(plugin.visitors()) == sorted(GOOD)
