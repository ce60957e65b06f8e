"""``Sender.launch`` over real HTTP to the sandbox: the fast path (one attempt, 2xx) and the paths
after a failed first attempt give the same outcomes and counters as before, and what is built once per
settings object (URL, headers, retry policy) follows a new settings object at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.dispatch import Dispatcher
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.sandbox import Sandbox
from tests.sending import sandbox_settings, track_payload


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def settings_for(box: Sandbox, **extra: object) -> Settings:
    return sandbox_settings(box, **{"max_retries": 2, **extra})


def send_all(sends: list[tuple[Payload, Settings]], retry: bool = True) -> list[Outcome]:
    """Each payload sent and settled before the next (through a Dispatcher, the one send path)."""

    async def run() -> list[Outcome]:
        sender = Sender.for_settings(sends[0][1], asyncio.Event())
        dispatcher = Dispatcher(sender)
        outcomes: list[Outcome] = []
        try:
            for item, settings in sends:
                dispatcher.submit(item, settings, lambda item, outcome: outcomes.append(outcome), retry=retry)
                await dispatcher.wait()
            return outcomes
        finally:
            await sender.transport.close()

    return asyncio.run(asyncio.wait_for(run(), 60))


def sent_numbers(box: Sandbox) -> list[int]:
    return sorted(event["properties"]["n"] for event in box.track_events())


def test_a_new_settings_object_changes_the_key_sent_at_once(sandbox: Sandbox) -> None:
    good = settings_for(sandbox)
    wrong = settings_for(sandbox, track_secret="not-the-secret")
    outcomes = send_all([(track_payload(0), good), (track_payload(1), wrong), (track_payload(2), good)])
    assert outcomes == ["sent", "failed", "sent"], "the key of each event's own settings"
    assert sent_numbers(sandbox) == [0, 2]
    stats = counters.snapshot()
    assert stats.get("sent:track") == 2
    assert stats.get("auth_failed:http_403:track") == 1


def test_a_failed_first_attempt_is_retried_and_counted_once(sandbox: Sandbox) -> None:
    sandbox.fail_next(1, 503)
    outcomes = send_all([(track_payload(0), settings_for(sandbox, max_retries=1))])
    assert outcomes == ["sent"]
    assert sent_numbers(sandbox) == [0]
    stats = counters.snapshot()
    assert stats.get("sent:track") == 1
    assert stats.get("retried") == 1


def test_one_attempt_only_when_retries_are_off(sandbox: Sandbox) -> None:
    sandbox.fail_next(1, 503)
    outcomes = send_all([(track_payload(0), settings_for(sandbox))], retry=False)
    assert outcomes == ["failed"]
    assert sent_numbers(sandbox) == []
    stats = counters.snapshot()
    assert stats.get("retries_exhausted:track") == 1
    assert "retried" not in stats and "sent:track" not in stats


def test_a_refused_event_is_dropped_and_counted_without_a_retry(sandbox: Sandbox) -> None:
    sandbox.fail_next(1, 400)
    outcomes = send_all(
        [(track_payload(0), settings_for(sandbox)), (track_payload(1), settings_for(sandbox))]
    )
    assert outcomes == ["rejected", "sent"]
    assert sent_numbers(sandbox) == [1]
    stats = counters.snapshot()
    assert stats.get("dropped:http_400:track") == 1
    assert "retried" not in stats
