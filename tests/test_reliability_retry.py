"""Retries against a real HTTP stand-in: 5xx and 429 with Retry-After, permanent rejections, on_error.

Everything here runs in-process with the real Segment client, the plugin installed, and the Pendo
sandbox on 127.0.0.1; faults are injected by the sandbox, never by mocking HTTP.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.delivery.retry import PermanentError
from pendo_plugin.sandbox import Sandbox

N = 30


def send(client: Any, count: int, user: str = "u1", start: int = 0) -> None:
    for n in range(start, start + count):
        client.track(user_id=user, event="Reliability", properties={"n": n})


def delivered(sandbox: Sandbox) -> Counter[int]:
    """How many times each event (by its property n) reached Pendo."""
    return Counter(event["properties"]["n"] for event in sandbox.track_events())


def dropped(stats: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in stats.items() if name.startswith("dropped")}


def test_flush_returns_after_pendo_acknowledged_everything(plugin: Sandbox, segment_client: Any) -> None:
    send(segment_client, N)
    segment_client.flush()  # Segment's flush runs the plugin's segment_flush hook
    assert delivered(plugin) == Counter(range(N))
    assert len(plugin.segment_messages()) == N


def test_five_503_with_retry_after_then_success_delivers_each_event_exactly_once(
    plugin: Sandbox, segment_client: Any
) -> None:
    pendo_plugin.configure(max_retries=8, retry_budget=30)
    plugin.fail_next(5, 503, headers={"Retry-After": "1"})
    send(segment_client, N)
    segment_client.flush()
    assert plugin.wait_for(lambda box: sum(delivered(box).values()) >= N, timeout=15)
    assert pendo_plugin.flush(10)
    assert delivered(plugin) == Counter(range(N)), "every event exactly once"
    statuses = Counter(entry.status for entry in plugin.request_log() if entry.path == "/data/track")
    assert statuses[503] == 5
    assert statuses[200] == N
    stats = pendo_plugin.stats()
    assert not dropped(stats), stats
    assert stats["sent:track"] == N
    assert stats["retried"] >= 1
    assert len(plugin.segment_messages()) == N


@pytest.mark.parametrize("concurrency", [1, 8])
def test_429_with_retry_after_slows_the_sender_and_drops_nothing(
    plugin: Sandbox, segment_client: Any, concurrency: int
) -> None:
    retry_after = 2.0
    pendo_plugin.configure(max_concurrency=concurrency, max_retries=5, retry_budget=30)
    plugin.fail_next(1, 429, headers={"Retry-After": str(int(retry_after))})
    send(segment_client, 12)
    assert plugin.wait_for(lambda box: sum(delivered(box).values()) >= 12, timeout=15)
    assert pendo_plugin.flush(10)
    assert delivered(plugin) == Counter(range(12))
    stats = pendo_plugin.stats()
    assert not dropped(stats), stats
    assert stats["sent:track"] == 12

    log = [entry for entry in plugin.request_log() if entry.path == "/data/track"]
    index = next(i for i, entry in enumerate(log) if entry.status == 429)
    refused_at = log[index].at
    later = [entry.at - refused_at for entry in log[index + 1 :]]
    assert later, "requests continued after the 429"
    if concurrency == 1:
        # one request at a time: the very next request waited the whole Retry-After
        assert later[0] >= retry_after - 0.005, later
    else:
        # requests already in flight when the 429 came back may finish just after it; nothing new
        # is sent until Retry-After has passed
        assert not [gap for gap in later if 0.25 < gap < retry_after - 0.005], later


def test_on_error_gets_a_permanently_rejected_payload_with_the_spool_off(
    plugin: Sandbox, segment_client: Any
) -> None:
    calls: list[tuple[Exception, list[dict[str, Any]]]] = []
    pendo_plugin.configure(spool_dir="off", on_error=lambda exc, items: calls.append((exc, items)))
    plugin.fail_next(1, 400)
    send(segment_client, 3)
    segment_client.flush()
    assert len(calls) == 1, calls
    exc, items = calls[0]
    assert isinstance(exc, PermanentError) and exc.status == 400
    assert len(items) == 1 and items[0]["k"] == "track"
    rejected = items[0]["b"]["properties"]["n"]
    assert delivered(plugin) == Counter(n for n in range(3) if n != rejected)
    assert pendo_plugin.stats()["dropped:http_400:track"] == 1


def test_on_error_gets_undeliverable_payloads_when_retries_run_out_with_the_spool_off(
    plugin: Sandbox, segment_client: Any, closed_url: str
) -> None:
    calls: list[tuple[Exception, list[dict[str, Any]]]] = []
    pendo_plugin.configure(
        spool_dir="off",
        data_url=closed_url,
        max_retries=1,
        retry_budget=2,
        on_error=lambda exc, items: calls.append((exc, items)),
    )
    send(segment_client, 2)
    segment_client.flush()
    items = [item for _, batch in calls for item in batch]
    assert sorted(item["b"]["properties"]["n"] for item in items) == [0, 1]
    assert all(isinstance(exc, RuntimeError) for exc, _ in calls)
    stats = pendo_plugin.stats()
    assert stats["dropped:undeliverable:track"] == 2
    assert stats["retries_exhausted:track"] == 2
    assert len(plugin.segment_messages()) == 2, "Segment is not affected"
