"""The merge rule for metadata rows, pure: per field, the value with the newest message timestamp wins
(ties: the later arrival), wherever rows are merged; a later batch never sends an older value; and the
router stamps each metadata payload with its message's timestamp."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import load
from pendo_plugin.delivery.rows import FieldClock, MergedRows
from pendo_plugin.destination.route import Router
from pendo_plugin.pendo.payload import Payload, from_document


def row(row_id: str, ts: Any = None, **values: Any) -> Payload:
    """A metadata payload as a spool line describes it (``ts`` may be anything a file holds)."""
    document: dict[str, Any] = {"k": "meta", "t": "visitor", "id": row_id, "v": values}
    if ts is not None:
        document["ts"] = ts
    payload = from_document(document)
    assert payload is not None
    return payload


def as_dicts(rows: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"k": "meta", "t": "visitor", "id": row_id, "v": values} for row_id, values in rows]


def merged(*payloads: Payload, clock: FieldClock | None = None) -> list[dict[str, Any]]:
    rows: MergedRows[int] = MergedRows("visitor")
    for origin, payload in enumerate(payloads):
        rows.add(payload, origin)
    return as_dicts(rows.rows(clock))


def test_the_newest_value_of_each_field_wins_by_the_message_timestamp_not_by_arrival() -> None:
    rows: MergedRows[str] = MergedRows("visitor")
    rows.add(row("u1", 2_000, plan="pro", seats=5), "fresh")
    rows.add(row("u1", 1_000, plan="free", region="eu"), "replayed")  # older, arrives later
    rows.add(row("u2", 1_500, plan="free"), "other")
    assert as_dicts(rows.rows()) == [
        {"k": "meta", "t": "visitor", "id": "u1", "v": {"plan": "pro", "seats": 5, "region": "eu"}},
        {"k": "meta", "t": "visitor", "id": "u2", "v": {"plan": "free"}},
    ]
    assert list(rows.origins()) == ["fresh", "replayed", "other"], "every origin is settled"


def test_a_tie_goes_to_the_later_arrival() -> None:
    assert merged(row("u1", 1_000, plan="free"), row("u1", 1_000, plan="pro"))[0]["v"] == {"plan": "pro"}


def test_rows_without_a_usable_timestamp_are_older_than_any_with_one() -> None:
    # spool files written before timestamps were stored, or a hostile "ts"
    for bad in (None, "2026", True, float("nan"), [1]):
        assert merged(row("u1", 5, plan="pro"), row("u1", bad, plan="old"))[0]["v"] == {"plan": "pro"}
    assert merged(row("u1", None, plan="a"), row("u1", None, plan="b"))[0]["v"] == {"plan": "b"}


def test_a_later_batch_never_sends_a_value_older_than_one_sent_before() -> None:
    counters.reset()
    clock = FieldClock()
    assert merged(row("u1", 2_000, plan="pro"), clock=clock)[0]["v"] == {"plan": "pro"}
    # the older row (e.g. replayed from the spool) comes in a later batch: only its newer fields go
    later = merged(row("u1", 1_000, plan="free", region="eu"), row("u2", 1_000, plan="free"), clock=clock)
    assert later == [
        {"k": "meta", "t": "visitor", "id": "u1", "v": {"region": "eu"}},
        {"k": "meta", "t": "visitor", "id": "u2", "v": {"plan": "free"}},
    ]
    assert merged(row("u1", 1_500, plan="basic"), clock=clock) == [], "nothing newer: no row at all"
    assert merged(row("u1", 2_000, plan="pro"), clock=clock)[0]["v"] == {"plan": "pro"}, "a resend goes"
    assert counters.snapshot()["superseded:visitor"] == 2
    counters.reset()


def test_the_clock_is_bounded() -> None:
    clock = FieldClock(capacity=2)
    for n in range(3):
        merged(row(f"u{n}", 2_000, plan="pro"), clock=clock)
    assert merged(row("u0", 1_000, plan="free"), clock=clock)[0]["v"] == {"plan": "free"}, "u0 forgotten"


def test_a_metadata_payload_carries_its_message_timestamp_never_one_ahead_of_now() -> None:
    settings = load(environ={"PENDO_INTEGRATION_KEY": "k", "PENDO_TRACK_SECRET": "s"})
    now_ms = int(time.time() * 1000)
    router = Router()

    def stamp(timestamp: Any) -> Any:
        message = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "timestamp": timestamp}
        (payload,) = router.route(message, settings, now_ms=now_ms)
        return payload.stamp

    an_hour_ago = datetime.fromtimestamp(now_ms / 1000 - 3600, timezone.utc)
    assert stamp(an_hour_ago.isoformat()) == now_ms - 3_600_000
    assert stamp((an_hour_ago + timedelta(days=1)).isoformat()) == now_ms, "a clock ahead counts as now"
    assert stamp(None) == now_ms, "no timestamp: the time it was routed"
