"""Segment message -> Pendo payloads (pendo_plugin.pendo.translate)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pendo_plugin.pendo.translate import (
    MAX_ID_LENGTH,
    MetadataRow,
    TrackEvent,
    Translation,
    account_id_of,
    to_webhook_body,
    translate,
    visitor_id_of,
)

# the message's time: an hour ago, to the millisecond (relative to now, so it never ages out);
# the tests pass an injected clock a minute after it
WHEN = dt.datetime.now(dt.timezone.utc).replace(microsecond=123000) - dt.timedelta(hours=1)
TIMESTAMP = WHEN.isoformat(timespec="milliseconds")
TIMESTAMP_MS = int(WHEN.timestamp()) * 1000 + 123
NOW_MS = TIMESTAMP_MS + 60_000
CREATED = (WHEN - dt.timedelta(days=400)).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)


def track(**overrides: Any) -> dict[str, Any]:
    """A track message as segment-analytics-python queues it."""
    message: dict[str, Any] = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "anonymousId": "anon-1",
        "messageId": "m-1",
        "timestamp": TIMESTAMP,
        "properties": {"plan": "pro"},
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        "integrations": {},
    }
    message.update(overrides)
    return message


def only_track(result: Translation) -> TrackEvent:
    assert result.skipped is None
    assert len(result.payloads) == 1
    event = result.payloads[0]
    assert isinstance(event, TrackEvent)
    return event


def only_row(result: Translation) -> MetadataRow:
    assert result.skipped is None
    assert len(result.payloads) == 1
    row = result.payloads[0]
    assert isinstance(row, MetadataRow)
    return row


# -------------------------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"userId": "u1", "anonymousId": "a1"}, "u1"),
        ({"anonymousId": "a1"}, "_PENDO_T_a1"),
        ({"userId": "", "anonymousId": "a1"}, "_PENDO_T_a1"),
        ({"userId": "   ", "anonymousId": "a1"}, "_PENDO_T_a1"),
        ({"userId": None, "anonymousId": 7}, "_PENDO_T_7"),
        ({"userId": 42}, "42"),
        ({"userId": 42.0}, "42"),
        ({"userId": 4.5}, "4.5"),
        ({"userId": Decimal("10")}, "10"),
        ({"userId": " u1 "}, " u1 "),  # not blank: kept exactly as Segment records it
        ({"userId": True, "anonymousId": "a1"}, "_PENDO_T_a1"),
        ({"userId": float("nan")}, None),
        ({"userId": ["u1"]}, None),
        ({"userId": " ", "anonymousId": "\t"}, None),
        ({}, None),
    ],
)
def test_visitor_id_of(message: dict[str, Any], expected: str | None) -> None:
    assert visitor_id_of(message) == expected


def test_account_id_of_precedence() -> None:
    message: dict[str, Any] = {
        "type": "track",
        "context": {"groupId": "ctx"},
        "properties": {"groupId": "prop-group", "accountId": "prop-account"},
    }
    assert account_id_of(message, "remembered") == "ctx"
    message["context"] = {"groupId": "  "}
    assert account_id_of(message, "remembered") == "prop-group"
    del message["properties"]["groupId"]
    assert account_id_of(message, "remembered") == "prop-account"
    message["properties"] = {}
    assert account_id_of(message, "remembered") == "remembered"
    assert account_id_of(message) is None
    assert account_id_of({"type": "group", "groupId": 99}) == "99"
    assert account_id_of({"type": "track", "groupId": "ignored"}) is None


def test_account_id_of_tolerates_odd_shapes() -> None:
    assert account_id_of({"context": None, "properties": ["x"]}, "r") == "r"
    assert account_id_of({"context": "str", "properties": "str"}) is None


# ---------------------------------------------------------------------------------------- track


def test_track_body_is_exactly_pendos_shape() -> None:
    message = track(
        properties={"plan": "pro", "seats": 3},
        context={
            "ip": "1.2.3.4",
            "userAgent": "UA/1.0",
            "groupId": "acme",
            "page": {"url": "https://app.example/x", "title": "X", "path": "/x"},
            "library": {"name": "analytics-python"},
        },
    )
    event = only_track(translate(message, now_ms=NOW_MS))
    assert event.message_id == "m-1"
    assert event.visitor_id == "u1"
    assert event.body == {
        "type": "track",
        "event": "Signed Up",
        "visitorId": "u1",
        "accountId": "acme",
        "timestamp": TIMESTAMP_MS,
        "properties": {"plan": "pro", "seats": 3},
        "context": {"ip": "1.2.3.4", "userAgent": "UA/1.0", "url": "https://app.example/x", "title": "X"},
    }
    json.dumps(event.body, allow_nan=False)


def test_track_without_account_omits_the_key_and_context_may_be_empty() -> None:
    result = translate(track(context={}), now_ms=NOW_MS)
    body = only_track(result).body
    assert "accountId" not in body
    assert body["context"] == {}
    assert result.fixes == ()
    assert result.account_link is None


def test_track_uses_remembered_account() -> None:
    body = only_track(translate(track(), remembered_account="acme", now_ms=NOW_MS)).body
    assert body["accountId"] == "acme"


def test_track_property_account_beats_remembered() -> None:
    body = only_track(
        translate(track(properties={"accountId": 12}), remembered_account="old", now_ms=NOW_MS)
    ).body
    assert body["accountId"] == "12"
    assert body["properties"] == {"accountId": 12}


def test_track_event_name_is_trimmed() -> None:
    event = only_track(translate(track(event="  Clicked Buy \n"), now_ms=NOW_MS))
    assert event.body["event"] == "Clicked Buy"
    assert only_track(translate(track(event=404), now_ms=NOW_MS)).body["event"] == "404"


@pytest.mark.parametrize("event", ["", "   ", None, ["x"], True])
def test_track_without_event_name_is_skipped(event: Any) -> None:
    result = translate(track(event=event), now_ms=NOW_MS)
    assert result == Translation(payloads=(), skipped="no_event_name")


def test_track_timestamp_falls_back_to_now() -> None:
    result = translate(track(timestamp="not a date"), now_ms=NOW_MS)
    assert only_track(result).body["timestamp"] == NOW_MS
    assert "timestamp_invalid" in result.fixes
    message = track()
    del message["timestamp"]
    result = translate(message, now_ms=NOW_MS)
    assert only_track(result).body["timestamp"] == NOW_MS
    assert "timestamp_missing" in result.fixes


def test_track_accepts_datetime_timestamp() -> None:
    stamp = WHEN
    assert only_track(translate(track(timestamp=stamp), now_ms=NOW_MS)).body["timestamp"] == TIMESTAMP_MS


def test_too_old_events_are_skipped_unless_disabled() -> None:
    eight_days = 8 * 86_400_000
    result = translate(track(), now_ms=TIMESTAMP_MS + eight_days)
    assert result.payloads == ()
    assert result.skipped == "too_old"
    assert only_track(translate(track(), now_ms=TIMESTAMP_MS + eight_days, max_age_days=None))
    assert only_track(translate(track(), now_ms=TIMESTAMP_MS + eight_days, max_age_days=9))
    assert translate(track(), now_ms=TIMESTAMP_MS + 2 * 86_400_000, max_age_days=1).skipped == "too_old"


def test_track_properties_are_cleaned_and_fixes_reported() -> None:
    result = translate(
        track(
            properties={
                "Plan Name": "pro",
                "price": Decimal("9.99"),
                "bad": float("nan"),
                "cart": {"items": 2},
            }
        ),
        now_ms=NOW_MS,
    )
    assert only_track(result).body["properties"] == {"Plan_Name": "pro", "cart_items": 2, "price": 9.99}
    assert set(result.fixes) >= {"property_renamed", "value_decimal", "value_nan", "nested_flattened"}
    assert list(result.fixes) == sorted(result.fixes)


@pytest.mark.parametrize("properties", [None, [], "x", 5])
def test_track_properties_of_the_wrong_shape_become_empty(properties: Any) -> None:
    assert only_track(translate(track(properties=properties), now_ms=NOW_MS)).body["properties"] == {}


def test_track_context_ignores_non_string_and_empty_values() -> None:
    message = track(context={"ip": None, "userAgent": "", "page": {"url": 5, "title": "T"}})
    assert only_track(translate(message, now_ms=NOW_MS)).body["context"] == {"title": "T"}
    message = track(context={"page": "not a dict", "ip": "::1"})
    assert only_track(translate(message, now_ms=NOW_MS)).body["context"] == {"ip": "::1"}


def test_track_anonymous_visitor() -> None:
    event = only_track(translate(track(userId=None), now_ms=NOW_MS))
    assert event.visitor_id == event.body["visitorId"] == "_PENDO_T_anon-1"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"userId": None, "anonymousId": None}, "no_visitor_id"),
        ({"userId": "", "anonymousId": " "}, "no_visitor_id"),
        ({"userId": "u" * (MAX_ID_LENGTH + 1)}, "id_too_long"),
        ({"userId": None, "anonymousId": "a" * MAX_ID_LENGTH}, "id_too_long"),  # the prefix counts
        ({"userId": "bad\ud800"}, "bad_id"),
    ],
)
def test_track_visitor_id_problems(overrides: dict[str, Any], reason: str) -> None:
    result = translate(track(**overrides), now_ms=NOW_MS)
    assert result.payloads == ()
    assert result.skipped == reason


def test_track_id_at_the_limit_is_kept() -> None:
    event = only_track(translate(track(userId="u" * MAX_ID_LENGTH), now_ms=NOW_MS))
    assert len(event.visitor_id) == MAX_ID_LENGTH


def test_track_overlong_account_id_is_dropped_not_the_event() -> None:
    result = translate(track(context={"groupId": "g" * 300}), now_ms=NOW_MS)
    assert "accountId" not in only_track(result).body
    assert "account_id_dropped" in result.fixes


def test_message_id_missing_or_odd() -> None:
    message = track()
    del message["messageId"]
    assert only_track(translate(message, now_ms=NOW_MS)).message_id == ""
    assert only_track(translate(track(messageId=uuid.UUID(int=5)), now_ms=NOW_MS)).message_id == str(
        uuid.UUID(int=5)
    )


def test_translate_does_not_modify_the_message() -> None:
    message = track(properties={"a b": {"c": [1, 2]}, "d": Decimal("1")}, context={"page": {"url": "u"}})
    before = repr(message)
    translate(message, now_ms=NOW_MS)
    assert repr(message) == before


# -------------------------------------------------------------------------------------- identify


def test_identify_makes_a_visitor_row_with_all_traits() -> None:
    message = {
        "type": "identify",
        "userId": "u1",
        "messageId": "m-2",
        "timestamp": TIMESTAMP,
        "traits": {
            "email": "ann@example.com",
            "name": "Ann",
            "createdAt": CREATED,
            "first name": "Ann",
            "address": {"city": "Paris", "country": "FR"},
        },
    }
    result = translate(message, now_ms=NOW_MS)
    row = only_row(result)
    assert row == MetadataRow(
        kind="visitor",
        entity_id="u1",
        message_id="m-2",
        values={
            "address_city": "Paris",
            "address_country": "FR",
            "createdAt": CREATED.strftime("%Y-%m-%dT%H:%M:%S"),
            "email": "ann@example.com",
            "first_name": "Ann",
            "name": "Ann",
        },
    )
    assert result.account_link is None
    assert {"nested_flattened", "property_renamed", "value_datetime"} <= set(result.fixes)


def test_identify_group_id_trait_links_the_account() -> None:
    result = translate(
        {"type": "identify", "anonymousId": "a1", "traits": {"groupId": 77, "plan": "pro"}}, now_ms=NOW_MS
    )
    assert result.account_link == ("_PENDO_T_a1", "77")
    assert only_row(result).values == {"groupId": 77, "plan": "pro"}


def test_identify_blank_group_id_makes_no_link() -> None:
    result = translate(
        {"type": "identify", "userId": "u1", "traits": {"groupId": " ", "plan": "pro"}}, now_ms=NOW_MS
    )
    assert result.account_link is None


def test_identify_without_traits_is_skipped() -> None:
    for traits in ({}, None, "x", {"only_nan": float("nan")}):
        result = translate({"type": "identify", "userId": "u1", "traits": traits}, now_ms=NOW_MS)
        assert result.payloads == ()
        assert result.skipped == "no_traits"


def test_identify_without_visitor_is_skipped() -> None:
    result = translate({"type": "identify", "traits": {"a": 1}}, now_ms=NOW_MS)
    assert result.skipped == "no_visitor_id"
    assert result.account_link is None


def test_identify_is_never_too_old() -> None:
    long_ago = (WHEN - dt.timedelta(days=3650)).isoformat()  # far beyond the 7 days a track event may be old
    message = {"type": "identify", "userId": "u1", "timestamp": long_ago, "traits": {"a": 1}}
    assert only_row(translate(message, now_ms=NOW_MS)).values == {"a": 1}


# ----------------------------------------------------------------------------------------- group


def test_group_makes_an_account_row_and_a_link() -> None:
    message = {
        "type": "group",
        "userId": "u1",
        "groupId": "acme",
        "messageId": "m-3",
        "traits": {"name": "Acme Inc", "employees": Decimal("120"), "plan": "enterprise"},
    }
    result = translate(message, now_ms=NOW_MS)
    values = {"employees": 120, "name": "Acme Inc", "plan": "enterprise"}
    assert only_row(result) == MetadataRow(kind="account", entity_id="acme", message_id="m-3", values=values)
    assert result.account_link == ("u1", "acme")
    assert type(only_row(result).values["employees"]) is int
    assert result.fixes == ("value_decimal",)


def test_group_with_numeric_id_and_no_traits_still_links() -> None:
    result = translate({"type": "group", "userId": "u1", "groupId": 5, "traits": {}}, now_ms=NOW_MS)
    assert result.payloads == ()
    assert result.skipped == "no_traits"
    assert result.account_link == ("u1", "5")


def test_group_without_visitor_still_writes_the_account() -> None:
    result = translate({"type": "group", "groupId": "acme", "traits": {"a": 1}}, now_ms=NOW_MS)
    assert only_row(result).entity_id == "acme"
    assert result.account_link is None


@pytest.mark.parametrize(
    ("group_id", "reason"),
    [
        ("", "blank_account_id"),
        ("  ", "blank_account_id"),
        (None, "blank_account_id"),
        ("g" * 257, "id_too_long"),
    ],
)
def test_group_id_problems(group_id: Any, reason: str) -> None:
    result = translate(
        {"type": "group", "userId": "u1", "groupId": group_id, "traits": {"a": 1}}, now_ms=NOW_MS
    )
    assert result.payloads == ()
    assert result.skipped == reason
    assert result.account_link is None


# ----------------------------------------------------------------------------------- other calls


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("page", "call:page"),
        ("screen", "call:screen"),
        ("alias", "call:alias"),
        ("weird", "call:unknown"),
        (None, "call:unknown"),
        (["track"], "call:unknown"),
    ],
)
def test_other_calls_are_skipped(call: Any, reason: str) -> None:
    result = translate({"type": call, "userId": "u1", "event": "x", "name": "Home"}, now_ms=NOW_MS)
    assert result == Translation(payloads=(), skipped=reason)


def test_payloads_are_immutable_values() -> None:
    event = only_track(translate(track(), now_ms=NOW_MS))
    with pytest.raises(AttributeError):
        event.visitor_id = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------------------- webhook


def test_to_webhook_body_is_a_json_safe_copy() -> None:
    when = WHEN.replace(microsecond=0)
    iso = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    properties = {"price": Decimal("9.5"), "when": when, "bad": float("inf"), "tags": {"b", "a"}}
    message = track(properties=properties, timestamp=when)
    body = to_webhook_body(message)
    assert body["properties"] == {
        "price": 9.5,
        "when": iso,
        "bad": None,
        "tags": ["a", "b"],
    }
    assert body["timestamp"] == iso
    assert body["event"] == "Signed Up"
    assert body["userId"] == "u1"
    json.dumps(body, allow_nan=False)
    assert message["properties"]["price"] == Decimal("9.5")  # the original is untouched
