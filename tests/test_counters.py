"""The one recording function: its name shape, its vocabulary, the tally and reading names back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pendo_plugin import counters
from pendo_plugin.cli._common import rejected_counts


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def test_names_are_outcome_then_reason_then_kind() -> None:
    counters.record("seen")
    counters.record("sent", kind="track", amount=3)
    counters.record("redis", "round_trips")
    counters.record("skipped", "no_known_fields", "visitor")
    counters.record("dropped", "http_400", "account", 2)
    assert counters.snapshot() == {
        "dropped:http_400:account": 2,
        "redis:round_trips": 1,
        "seen": 1,
        "sent:track": 3,
        "skipped:no_known_fields:visitor": 1,
    }


NAMES = [
    "seen",
    "sent:track",
    "redis:round_trips",
    "skipped:no_known_fields:visitor",
    "dropped:http_400:track",
]


@pytest.mark.parametrize("name", NAMES)
def test_parse_reads_a_name_back(name: str) -> None:
    assert counters.name_of(*counters.parse(name)) == name


@pytest.mark.parametrize(
    ("outcome", "reason", "kind"),
    [
        ("sent_everything", None, "track"),  # not an outcome
        ("skipped", "because", None),  # not a reason
        ("sent", None, "page_view"),  # not a kind
        ("dropped", "http_4000", "track"),  # not an HTTP status
        ("dropped", "http_400:x", "track"),
        ("sent", "track", None),  # a kind where a reason goes
    ],
)
def test_a_name_outside_the_vocabulary_is_logged_and_counted_never_raised(
    outcome: Any, reason: str | None, kind: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        counters.record(outcome, reason, kind, 2)
        counters.record(outcome, reason, kind)
    assert counters.snapshot() == {"bad_counter": 3}
    logged = [r for r in caplog.records if "outside the vocabulary" in r.getMessage()]
    assert len(logged) <= 1  # once per process and name (an earlier test may have logged it already)


def test_a_tally_records_its_counts_at_once_through_the_same_vocabulary() -> None:
    tally = counters.Tally()
    for _ in range(3):
        tally.add("seen")
        tally.add("seen", kind=counters.call_kind("track"))
    tally.add("seen", kind=counters.call_kind("custom_type"))
    tally.add("seen", kind=counters.call_kind("visitor"))  # a payload kind, not a Segment call
    tally.add("rollout", "in_percent")
    tally.add("fixed", "no such fix")
    assert counters.snapshot() == {}  # nothing recorded before the commit
    tally.commit()
    tally.commit()  # a second commit adds nothing: the tally starts again from zero
    assert counters.snapshot() == {
        "bad_counter": 1,
        "rollout:in_percent": 1,
        "seen": 3,
        "seen:other": 2,
        "seen:track": 3,
    }


def test_rejected_counts_only_what_pendo_refused() -> None:
    delta = {
        "dropped:http_400:track": 2,
        "failed:visitor": 1,
        "dropped:undeliverable:track": 5,  # ours: spool off
        "dropped:unserialisable:track": 1,
        "dropped:queue_full": 7,
        "auth_failed:http_401:account": 3,  # kept for a corrected key, not refused for good
        "sent:track": 9,
    }
    assert rejected_counts(delta) == {"track": 2, "visitor": 1}
