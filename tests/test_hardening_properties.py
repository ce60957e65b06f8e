"""No step that turns one message into one row or payload raises, whatever the value (issue 22): coerce,
sanitize, translate and encode are fed hostile values by hypothesis (huge integers, NaN and infinities,
nesting within the bounds, lone surrogates, odd types), and the one escaping and URL functions hold."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pendo_plugin import bounded, logs, shown
from pendo_plugin.delivery.answers import read_json
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.coerce import coerce_metadata
from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.pendo.sanitize import clean_metadata_values, clean_properties
from pendo_plugin.pendo.translate import translate

HUGE_INTS = [10**400, -(10**400), 10**5000, 2**64, -(2**63) - 1, 2**1024]


def _huge_int(index: int) -> int:
    return HUGE_INTS[index]


HUGE_INT = st.sampled_from(range(len(HUGE_INTS))).map(_huge_int)  # no repr of 10**5000 in the strategy


class _Hostile:
    """An object whose ``str`` and ``repr`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


SURROGATE_TEXT = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)), max_size=40
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INT,
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    SURROGATE_TEXT,
    st.binary(max_size=20),
    st.datetimes(),
    st.dates(),
    st.uuids(),
    st.builds(_Hostile),
    st.builds(_nested, st.integers(0, 40), st.one_of(HUGE_INT, st.sampled_from([1, float("nan"), "\ud800"]))),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(SURROGATE_TEXT, st.integers()), children, max_size=4),
        st.frozensets(st.one_of(st.integers(), SURROGATE_TEXT), max_size=3),
        st.tuples(children, children),
    ),
    max_leaves=12,
)
MAPPINGS = st.dictionaries(st.one_of(SURROGATE_TEXT, st.integers(), st.just("createdAt")), VALUES, max_size=6)
TYPES = st.sampled_from(["string", "number", "boolean", "time", "date", "integer", "float", "odd", ""])
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(VALUES)
def test_json_safe_never_raises_and_its_result_encodes(value: Any) -> None:
    safe, _ = json_safe(value)
    json.dumps(safe, allow_nan=False)


@PROPERTY
@given(MAPPINGS)
def test_sanitize_never_raises_and_its_result_encodes(values: dict[Any, Any]) -> None:
    properties, _ = clean_properties(values)
    metadata, _ = clean_metadata_values(values)
    json.dumps(properties, allow_nan=False)
    json.dumps(metadata, allow_nan=False)


@PROPERTY
@given(st.dictionaries(st.text(max_size=20), VALUES, max_size=6), st.data())
def test_coerce_never_raises_for_any_schema(values: dict[str, Any], data: st.DataObject) -> None:
    """(A row's field names were encoded once already: the payload it came from holds them as JSON.)"""
    schema = {name: data.draw(TYPES) for name in values}
    coerced, _, unknown = coerce_metadata(values, schema)
    assert set(coerced) <= set(values) and not unknown
    payload.metadata("visitor", "v1", coerced)  # what is kept encodes


@PROPERTY
@given(MAPPINGS, MAPPINGS, st.sampled_from(["identify", "group", "track"]), st.one_of(VALUES, SURROGATE_TEXT))
def test_translate_and_encode_never_raise(
    traits: dict[Any, Any], properties: dict[Any, Any], call: str, user: Any
) -> None:
    message = {"type": call, "userId": user, "groupId": user, "event": "Signed Up", "traits": traits,
               "properties": properties, "timestamp": dt.datetime.now(dt.timezone.utc).isoformat()}
    result = translate(message, now_ms=int(dt.datetime.now().timestamp() * 1000))
    for item in result.payloads:
        body = getattr(item, "body", None)
        built = (
            payload.event("track", body) if body is not None
            else payload.metadata(item.kind, item.entity_id, item.values)
        )
        assert payload.decode(payload.encode(built)) == built


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), 10**5000, 2**1024], ids=lambda value: f"{value.bit_length()}_bits"
)
@pytest.mark.parametrize("kind", ["time", "number", "string", "boolean"])
def test_an_integer_past_the_float_range_is_a_bad_value_never_an_overflow(value: int, kind: str) -> None:
    schema = {"createdAt": kind, "plan": "string"}
    coerced, fixes, _ = coerce_metadata({"createdAt": value, "plan": "pro"}, schema)
    assert coerced == {"plan": "pro"}
    assert "bad_value" in fixes


def test_a_huge_trait_is_dropped_and_counted_at_translation() -> None:
    values, fixes = clean_metadata_values({"createdAt": 10**400, "plan": "pro"})
    assert values == {"plan": "pro"}
    assert "value_huge_int" in fixes and "value_dropped" in fixes


def test_odd_types_and_values_are_each_a_field_left_out_not_a_row_lost() -> None:
    values = {"a": decimal.Decimal("sNaN"), "b": _Hostile(), "c": uuid.UUID(int=3), "d": 10**400, "ok": 1}
    schema = dict.fromkeys(values, "number")
    coerced, fixes, _ = coerce_metadata(values, schema)
    assert coerced["ok"] == 1
    assert "bad_value" in fixes


# ----- answers: bounded parsing


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b"[" * 65 + b"]" * 65, b'{"a":' * 5000, b"\xff\xfe", b"nul"]
)
def test_an_answer_too_deep_or_not_json_reads_as_none(body: bytes) -> None:
    assert read_json(body) is None


def test_an_answer_within_the_bound_reads() -> None:
    assert read_json(json.dumps(_nested(bounded.MAX_DEPTH - 1, 1)).encode()) is not None


# ----- the one escaping function and the one URL display


@given(st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=60))
def test_escape_leaves_no_control_character_and_no_line_break(text: str) -> None:
    escaped = shown.escape(text)
    assert escaped.isprintable()
    assert "\n" not in escaped and "\x1b" not in escaped and "\r" not in escaped


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("redis://default:Pa55-redis@host:6379/0", "redis://default:****@host:6379/0"),
        ("https://user:Pa55-data@app.pendo.io", "https://user:****@app.pendo.io"),
        ("redis://t0ken-as-user@host/0", "redis://****@host/0"),
        ("redis://host/0?password=Pa55-q&db=1", "redis://host/0?password=****&db=1"),
        ("https://app.pendo.io/x?api_key=K3y&access_token=T0k", "https://app.pendo.io/x?api_key=****&access_token=****"),
        ("unix:///run/redis.sock?password=Pa55-u", "unix:///run/redis.sock?password=****"),
        ("http://[broken@host/x?password=Pa55-b", "http://****@host/x?****"),
        ("https://app.pendo.io", "https://app.pendo.io"),
    ],
)
def test_a_url_is_shown_with_its_secrets_masked(raw: str, expected: str) -> None:
    assert shown.url(raw) == expected


def test_an_excerpt_masks_every_secret_in_every_form_and_escapes() -> None:
    secret = 'k3y"$(rm -rf /)*.+?[^x]\\'
    body = json.dumps({"echo": {"x-pendo-integration-key": secret}}) + "\r\nFORGED pendo_plugin: all fine"
    excerpt = shown.excerpt(("x" * 150 + body).encode(), [secret, None, ""])
    assert "rm -rf" not in excerpt and "k3y" not in excerpt
    assert "\n" not in excerpt and "\r" not in excerpt
    assert excerpt.endswith("...") and "all fine" not in excerpt  # cut at 200 characters, then escaped


# ----- log-once memory


def test_log_once_memory_and_lines_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    logs.forget()
    try:
        with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
            for n in range(20_000):
                logs.log_once(f"unknown-field:visitor:t{n}", logging.WARNING, "field %s", n,
                              family="unknown-field:visitor")
            for n in range(5_000):
                logs.log_once(f"other:{n}", logging.WARNING, "other %s", n)
        assert len(logs._seen) <= logs.MAX_KEYS + 1
        assert len(caplog.records) <= logs.MAX_KEYS + 2
        family_lines = [r for r in caplog.records if r.getMessage().startswith("field ")]
        assert len(family_lines) == logs.MAX_PER_FAMILY
    finally:
        logs.forget()
