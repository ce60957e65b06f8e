"""The one send path, ``delivery.dispatch.Dispatcher``, over real HTTP to the sandbox: every payload
settled exactly once, events sent by a bounded pool of tasks, metadata merged and sent in order, held
payloads never sent, and what waits settled as failed when it is cancelled."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.dispatch import Dispatcher
from pendo_plugin.delivery.rows import FieldClock
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.sandbox import Sandbox
from tests.sending import sandbox_settings, track_payload


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


async def run(settings: Settings, job: object) -> None:
    sender = Sender.for_settings(settings, asyncio.Event())
    try:
        await job(sender)  # type: ignore[operator]
    finally:
        await sender.transport.close()


def test_every_event_is_sent_by_a_bounded_pool_and_settled_once(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, max_concurrency=4)
    outcomes: Counter[int] = Counter()
    most_tasks = 0

    def settle(item: Payload, outcome: Outcome) -> None:
        assert outcome == "sent"
        outcomes[item.body["properties"]["n"]] += 1

    async def job(sender: Sender) -> None:
        nonlocal most_tasks
        sends = Dispatcher(sender, pool=8)
        for n in range(300):
            sends.submit(track_payload(n), settings, settle)
            most_tasks = max(most_tasks, len(sends.tasks))
        assert sends.queued() == 300 and len(sends.tasks) == 8, "queued for a pool, not one task each"
        await asyncio.wait_for(sends.wait(), 30)
        assert sends.load == 0

    asyncio.run(run(settings, job))
    assert outcomes == Counter(range(300)), "each settled exactly once"
    assert most_tasks <= 8
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(300))


def test_metadata_is_merged_newest_wins_and_batches_of_a_kind_go_in_order(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, metadata_batch_size=2, batch_interval=60)
    settled: list[tuple[str, Outcome]] = []

    async def job(sender: Sender) -> None:
        sends = Dispatcher(sender, FieldClock())
        note = lambda item, outcome: settled.append((item.row_id, outcome))  # noqa: E731
        sends.submit(payload.metadata("visitor", "u1", {"plan": "pro"}, 2_000), settings, note)
        older = payload.metadata("visitor", "u1", {"plan": "free", "region": "eu"}, 1_000)
        sends.submit(older, settings, note)
        sends.send_rows(settings)
        assert sends.rows_waiting, "one row (merged) is not a full batch of 2, nor due"
        sends.submit(payload.metadata("visitor", "u2", {"plan": "free"}, 1_000), settings, note)
        sends.send_rows(settings)  # full: sent
        sends.submit(payload.metadata("visitor", "u1", {"plan": "old"}, 500), settings, note)
        sends.send_rows(settings, force=True)
        await asyncio.wait_for(sends.wait(), 30)

    asyncio.run(run(settings, job))
    assert sorted(settled) == [("u1", "sent")] * 3 + [("u2", "sent")]
    assert sandbox.visitors()["u1"] == {"plan": "pro", "region": "eu"}, "an older value never follows a newer"
    assert len(sandbox.metadata_requests("visitor")) == 1, "the last row held nothing newer: no request"
    assert counters.snapshot()["superseded:visitor"] == 1


def test_a_held_payload_is_settled_as_failed_and_never_sent(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, shadow=True)
    settled: list[Outcome] = []

    async def job(sender: Sender) -> None:
        sends = Dispatcher(sender)
        settle = lambda item, outcome: settled.append(outcome)  # noqa: E731
        assert sends.submit(track_payload(1), settings, settle) is False
        sends.send_rows(settings, force=True)
        await sends.wait()

    asyncio.run(run(settings, job))
    assert settled == ["failed"]
    assert sandbox.request_log() == []
    assert counters.snapshot()["held:shadow:track"] == 1


def test_cancel_settles_what_waits_and_what_is_in_flight_as_failed(sandbox: Sandbox) -> None:
    sandbox.set_latency(5)
    settings = sandbox_settings(sandbox)
    outcomes: list[Outcome] = []

    async def job(sender: Sender) -> None:
        sends = Dispatcher(sender, pool=2)
        for n in range(10):
            sends.submit(track_payload(n), settings, lambda item, outcome: outcomes.append(outcome))
        await asyncio.sleep(0)  # the two sending tasks start
        sends.cancel()
        await asyncio.wait_for(sends.wait(), 5)

    asyncio.run(run(settings, job))
    assert outcomes == ["failed"] * 10
