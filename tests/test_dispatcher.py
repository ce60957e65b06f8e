"""The one send path, ``delivery.dispatch.Dispatcher``, over real HTTP to the sandbox: every payload
settled exactly once, events sent within the limiter's slots as callbacks (a task only to retry),
metadata merged and sent in order, held payloads never sent, and what waits settled as failed when it
is cancelled."""

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


def test_every_event_is_sent_within_the_limit_without_a_task_and_settled_once(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, max_concurrency=4)
    outcomes: Counter[int] = Counter()
    most_in_flight = 0
    tasks_seen = 0

    async def job(sender: Sender) -> None:
        nonlocal most_in_flight, tasks_seen
        sends = Dispatcher(sender)

        def settle(item: Payload, outcome: Outcome) -> None:
            nonlocal most_in_flight, tasks_seen
            assert outcome == "sent"
            outcomes[item.body["properties"]["n"]] += 1
            most_in_flight = max(most_in_flight, sender.limiter.in_flight)  # the next one has its slot
            tasks_seen = max(tasks_seen, len(sends.tasks))

        for n in range(300):
            sends.submit(track_payload(n), settings, settle)
        assert sends.queued() == 296 and sends.load == 300, "4 slots: 4 in flight, the rest in line"
        assert not sends.tasks, "events wait in the limiter's line, not as tasks"
        await asyncio.wait_for(sends.wait(), 30)
        assert sends.load == 0 and not sends.pending()

    asyncio.run(run(settings, job))
    assert outcomes == Counter(range(300)), "each settled exactly once"
    assert most_in_flight == 4, "never more in flight than the limiter's 4 slots, and all of them used"
    assert tasks_seen == 0, "a 2xx first attempt runs as callbacks: no task"
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(300))


def test_a_failed_first_attempt_is_retried_in_a_task_behind_the_events_in_line(sandbox: Sandbox) -> None:
    """Two slots, ten events, the first two answered 503 with ``Retry-After: 0`` (no wait): their retries
    queue behind the eight events already in line (as with one task per event), and all ten arrive."""
    sandbox.fail_next(2, 503, headers={"Retry-After": "0"})
    settings = sandbox_settings(sandbox, max_concurrency=2, max_retries=2)
    order: list[int] = []

    def note(item: Payload, outcome: Outcome) -> None:
        assert outcome == "sent"
        order.append(item.body["properties"]["n"])

    async def job(sender: Sender) -> None:
        sender.limiter.limit = 2
        sends = Dispatcher(sender)
        for n in range(10):
            sends.submit(track_payload(n), settings, note)
        await asyncio.wait_for(sends.wait(), 30)

    asyncio.run(run(settings, job))
    assert sorted(order) == list(range(10))
    assert order[-2:] in ([0, 1], [1, 0]), f"the two retried events settle last: {order}"
    assert counters.snapshot()["retried"] == 2


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
        sends = Dispatcher(sender)
        for n in range(10):
            sends.submit(track_payload(n), settings, lambda item, outcome: outcomes.append(outcome))
        assert sends.load == 10 and sends.queued() < 10, "some are in flight, the rest wait in line"
        sends.cancel()
        await asyncio.wait_for(sends.wait(), 5)

    asyncio.run(run(settings, job))
    assert outcomes == ["failed"] * 10


def test_events_waiting_for_a_slot_follow_a_new_sender_in_order(sandbox: Sandbox) -> None:
    """The owner replaces the sender (a new transport) while events wait in the old one's line: they wait
    in the new one's instead, keep their order, and are all delivered (none waits for a slot the old
    limiter will never free)."""
    settings = sandbox_settings(sandbox, max_concurrency=1)
    order: list[int] = []

    def note(item: Payload, outcome: Outcome) -> None:
        assert outcome == "sent"
        order.append(item.body["properties"]["n"])

    async def job(sender: Sender) -> None:
        sends = Dispatcher(sender)
        for n in range(6):
            sends.submit(track_payload(n), settings, note)
        assert sends.queued() == 5, "one slot: one in flight, five in line"
        replacement = Sender.for_settings(settings, asyncio.Event())
        try:
            sends.sender = replacement
            assert sends.queued() == 4 and replacement.limiter.in_flight == 1, "its free slot took the first"
            await asyncio.wait_for(sends.wait(), 30)
        finally:
            await replacement.transport.close()

    asyncio.run(run(settings, job))
    assert sorted(order) == list(range(6)), "all delivered"
    assert [n for n in order if n != 0] == [1, 2, 3, 4, 5], "the moved ones in the order they came (one slot)"
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(6))
