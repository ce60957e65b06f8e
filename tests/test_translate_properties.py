"""Property-based: translation never raises and every payload obeys Pendo's rules.

The rules are checked by an independent checker written here from Pendo's documentation, not by the
helpers in ``pendo_plugin.pendo.sanitize``.
"""

from __future__ import annotations

import datetime as dt
import json
import string
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pendo_plugin.pendo.sanitize import clean_field_name, clean_properties, clean_property_name, json_safe
from pendo_plugin.pendo.translate import MetadataRow, TrackEvent, Translation, to_webhook_body, translate

NOW_MS = 1_795_410_234_123
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
QUICK = settings(SETTINGS, max_examples=100)

# ------------------------------------------------------------------------------ independent checker

ALLOWED = set(string.ascii_letters + string.digits + "_")


def pendo_property_name_ok(name: object) -> bool:
    """Pendo: letters, digits, underscore; at most 32 characters; not starting with a digit; not both
    starting and ending with two underscores."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 32
        and set(name) <= ALLOWED
        and name[0] not in string.digits
        and not (name[:2] == "__" and name[-2:] == "__")
    )


def pendo_field_name_ok(name: object) -> bool:
    """Pendo metadata fields: letters, digits, underscores, starting with a letter or underscore."""
    return isinstance(name, str) and len(name) > 0 and set(name) <= ALLOWED and name[0] not in string.digits


def strict_json(value: Any) -> str:
    """Serialise like a strict client: no default hook, no NaN; must also be valid UTF-8."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    text.encode("utf-8")
    return text


def check_track(event: TrackEvent, message: dict[str, Any]) -> None:
    body = event.body
    strict_json(body)
    assert set(body) - {"accountId"} == {"type", "event", "visitorId", "timestamp", "properties", "context"}
    assert body["type"] == "track"
    assert isinstance(body["event"], str) and body["event"].strip() and body["event"] == body["event"].strip()
    assert isinstance(body["visitorId"], str) and body["visitorId"].strip()
    assert body["visitorId"] == event.visitor_id
    assert type(body["timestamp"]) is int
    if "accountId" in body:
        assert isinstance(body["accountId"], str) and body["accountId"].strip()
    properties = body["properties"]
    assert isinstance(properties, dict)
    assert all(pendo_property_name_ok(name) for name in properties), list(properties)
    assert all(v is None or type(v) in (str, int, float, bool) for v in properties.values())
    assert len(strict_json(properties).encode("utf-8")) <= 512
    context = body["context"]
    assert set(context) <= {"ip", "userAgent", "url", "title"}
    assert all(isinstance(v, str) and v for v in context.values())
    assert isinstance(event.message_id, str)


def check_row(row: MetadataRow, message: dict[str, Any]) -> None:
    strict_json(row.values)
    assert row.kind == ("visitor" if message["type"] == "identify" else "account")
    assert isinstance(row.entity_id, str) and row.entity_id.strip()
    assert row.values
    assert all(pendo_field_name_ok(name) for name in row.values), list(row.values)
    assert all(not isinstance(v, dict) for v in row.values.values())


def check_translation(result: Translation, message: dict[str, Any]) -> None:
    assert isinstance(result, Translation)
    assert (result.skipped is None) == bool(result.payloads)
    assert list(result.fixes) == sorted(set(result.fixes))
    assert all(isinstance(f, str) for f in result.fixes)
    if result.account_link is not None:
        visitor, account = result.account_link
        assert isinstance(visitor, str) and visitor.strip()
        assert isinstance(account, str) and account.strip()
    for payload in result.payloads:
        if isinstance(payload, TrackEvent):
            assert message["type"] == "track"
            check_track(payload, message)
        else:
            check_row(payload, message)


# ------------------------------------------------------------------------------------- strategies

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=" \t\n_-.$é日1", max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "1abc",
            "42",
            "__x__",
            "__",
            "_",
            "a b",
            "café",
            "a" * 200,
            "\ud800",
            "x\udfffy",
            "plan",
            "Plan",
            "groupId",
            "accountId",
            "a_b",
            "a-b",
        ]
    ),
)
big_text = st.builds(lambda chunk, n: chunk * n, st.text(min_size=1, max_size=3), st.integers(20, 600))
keys = st.one_of(hostile_text, st.integers(-5, 10**6), st.booleans(), st.none())
hashables = st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=True), st.none())
zones = st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7))])
aware_datetimes = st.datetimes(timezones=zones)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(),
    aware_datetimes,
    st.dates(),
    st.times(),
    st.uuids(),
    st.binary(max_size=20),
    hostile_text,
    big_text,
    st.sets(hashables, max_size=4),
    st.frozensets(st.text(max_size=3), max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=8,
)
property_dicts = st.dictionaries(keys, values, max_size=8)
ids = st.one_of(
    st.none(),
    hostile_text,
    st.integers(),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=True),
    st.text(min_size=250, max_size=300),
    st.booleans(),
)
good_ids = st.text(string.ascii_letters + string.digits + "-@.", min_size=1, max_size=12)
iso_recent = st.integers(NOW_MS - 10 * 86_400_000, NOW_MS + 86_400_000).map(
    lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")
)
timestamps = st.one_of(iso_recent, iso_recent, st.none(), hostile_text, aware_datetimes)
contexts = st.one_of(
    st.none(),
    st.just({}),
    hostile_text,
    st.fixed_dictionaries(
        {},
        optional={
            "ip": ids,
            "userAgent": values,
            "groupId": ids,
            "traits": values,
            "page": st.one_of(
                values, st.fixed_dictionaries({}, optional={"url": hostile_text, "title": values})
            ),
        },
    ),
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track"] * 4 + ["identify", "group"] * 2 + ["page", "screen", "alias", "x"]),
        "userId": st.one_of(good_ids, good_ids, ids),
        "event": st.one_of(good_ids, hostile_text, ids),
        "timestamp": timestamps,
        "properties": st.one_of(property_dicts, property_dicts, values),
        "traits": st.one_of(property_dicts, property_dicts, values),
    },
    optional={
        "anonymousId": ids,
        "groupId": st.one_of(good_ids, ids),
        "messageId": st.one_of(st.uuids().map(str), ids),
        "context": contexts,
        "integrations": st.dictionaries(st.text(max_size=5), st.booleans(), max_size=2),
    },
)


# ------------------------------------------------------------------------------------------ tests


@SETTINGS
@given(
    message=messages,
    remembered=st.one_of(st.none(), st.text(max_size=10)),
    max_age=st.one_of(st.none(), st.floats(0, 30)),
)
def test_translate_never_raises_and_obeys_pendos_rules(
    message: dict[str, Any], remembered: str | None, max_age: float | None
) -> None:
    result = translate(message, remembered_account=remembered, now_ms=NOW_MS, max_age_days=max_age)
    check_translation(result, message)
    event(f"skipped={result.skipped}" if result.skipped else f"sent={type(result.payloads[0]).__name__}")


@SETTINGS
@given(properties=property_dicts)
def test_track_properties_always_valid_and_independent_of_key_order(properties: dict[Any, Any]) -> None:
    message = {"type": "track", "event": "E", "userId": "u", "properties": properties}
    result = translate(message, now_ms=NOW_MS)
    check_translation(result, message)
    reordered = dict(message, properties=dict(reversed(list(properties.items()))))
    assert translate(reordered, now_ms=NOW_MS) == result
    sent = result.payloads[0]
    assert isinstance(sent, TrackEvent)
    assert clean_properties(sent.body["properties"]) == (sent.body["properties"], ())  # idempotent
    event("properties_too_large" if "properties_too_large" in result.fixes else "fits")


@QUICK
@given(traits=property_dicts, call=st.sampled_from(["identify", "group"]))
def test_metadata_rows_always_valid(traits: dict[Any, Any], call: str) -> None:
    message = {"type": call, "userId": "u", "groupId": "g", "traits": traits}
    result = translate(message, now_ms=NOW_MS)
    check_translation(result, message)


@SETTINGS
@given(name=st.text())
def test_name_cleaning_is_valid_and_idempotent(name: str) -> None:
    cleaned = clean_property_name(name)
    assert pendo_property_name_ok(cleaned)
    assert clean_property_name(cleaned) == cleaned
    field = clean_field_name(name)
    assert pendo_field_name_ok(field)
    assert clean_field_name(field) == field


@QUICK
@given(value=values)
def test_json_safe_output_is_strict_json(value: Any) -> None:
    safe, fixes = json_safe(value)
    strict_json(safe)
    assert all(isinstance(f, str) for f in fixes)


@QUICK
@given(message=messages)
def test_webhook_body_is_strict_json(message: dict[str, Any]) -> None:
    body = to_webhook_body(message)
    strict_json(body)
    assert body["type"] == message["type"]
