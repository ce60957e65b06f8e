"""Pendo's rules on names and values (pendo_plugin.pendo.sanitize)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pendo_plugin.pendo.coerce import coerce_metadata, parse_timestamp_ms
from pendo_plugin.pendo.sanitize import (
    MAX_METADATA_VALUE_CHARS,
    MAX_PROPERTIES_BYTES,
    clean_field_name,
    clean_metadata_values,
    clean_properties,
    clean_property_name,
    is_valid_field_name,
    is_valid_property_name,
    json_safe,
    properties_size,
)

# a date-time trait value (a year and a bit ago, relative to now)
TRAIT_MOMENT = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=400)

# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("plan", True),
        ("_private", True),
        ("a1_b2", True),
        ("x" * 32, True),
        ("x" * 33, False),
        ("", False),
        ("1st", False),
        ("has space", False),
        ("dash-ed", False),
        ("café", False),
        ("__x__", False),
        ("__", False),
        ("__x", True),
        ("x__", True),
        ("\uff50\uff4c\uff41\uff4e", False),  # full-width "plan": an identifier to Python, not to Pendo
    ],
)
def test_is_valid_property_name(name: str, valid: bool) -> None:
    assert is_valid_property_name(name) is valid


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("plan", "plan"),
        ("Plan Name", "Plan_Name"),
        ("  spaced  out  ", "spaced_out"),
        ("a--b..c", "a_b_c"),
        ("1st", "_1st"),
        ("42", "_42"),
        ("__x__", "__x_"),
        ("__init__", "__init_"),
        ("__", "_"),
        ("___", "_"),
        ("", "unnamed"),
        ("   ", "unnamed"),
        ("???", "unnamed"),
        ("café crème", "cafe_creme"),
        ("Ünïcødé key!", "Unic_de_key"),
        ("日本語", "unnamed"),
        ("x" * 40, "x" * 32),
        ("order.total.amount.in.euros.incl.vat", "order_total_amount_in_euros_incl"),
    ],
)
def test_clean_property_name(before: str, after: str) -> None:
    assert clean_property_name(before) == after
    assert is_valid_property_name(after)


def test_clean_property_name_truncation_never_leaves_dunder_ends() -> None:
    name = "__" + "a" * 28 + "______"
    cleaned = clean_property_name(name)
    assert is_valid_property_name(cleaned)
    assert cleaned == "__" + "a" * 28 + "_"


def test_clean_field_name_keeps_longer_names_and_dunders() -> None:
    long_name = "subscription_renewal_date_for_enterprise_plans"
    assert clean_field_name(long_name) == long_name
    assert clean_field_name("__x__") == "__x__"
    assert clean_field_name("first name") == "first_name"
    assert clean_field_name("9lives") == "_9lives"
    assert len(clean_field_name("y" * 500)) == 128
    assert is_valid_field_name(clean_field_name("y" * 500))
    assert not is_valid_field_name("a b")


# ------------------------------------------------------------------------------------------ values


class Color(enum.Enum):
    RED = "red"


class Weird:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("value", "expected", "fix"),
    [
        (Decimal("1.5"), 1.5, "value_decimal"),
        (Decimal("120"), 120, "value_decimal"),
        (Decimal("1E+2"), 100, "value_decimal"),
        (Decimal("1e30"), 1e30, "value_decimal"),
        (Decimal("NaN"), None, "value_nan"),
        (Decimal("sNaN"), None, "value_nan"),
        (Decimal("Infinity"), None, "value_infinity"),
        (Decimal("1e400"), None, "value_infinity"),
        (float("nan"), None, "value_nan"),
        (float("-inf"), None, "value_infinity"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", "value_uuid"),
        (
            TRAIT_MOMENT,  # a trait's value: no age rule applies
            TRAIT_MOMENT.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "value_datetime",
        ),
        (TRAIT_MOMENT.date(), TRAIT_MOMENT.strftime("%Y-%m-%d"), "value_datetime"),
        (dt.time(3, 4), "03:04:00", "value_datetime"),
        (b"hi\xff", "hi\ufffd", "value_bytes"),
        (bytearray(b"ok"), "ok", "value_bytes"),
        ({3, 1, 2}, [1, 2, 3], "value_set"),
        (frozenset({"b", "a"}), ["a", "b"], "value_set"),
        (Color.RED, "red", "value_other"),
        ("\ud800x", "\ufffdx", "value_surrogate"),
        ({1: "a"}, {"1": "a"}, "value_key"),
        (Weird(), "Weird", "value_other"),
    ],
)
def test_json_safe_repairs(value: Any, expected: Any, fix: str) -> None:
    safe, fixes = json_safe(value)
    assert safe == expected
    assert type(safe) is type(expected)
    assert fix in fixes
    json.dumps(safe, allow_nan=False)


def test_json_safe_leaves_plain_values_alone() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "é"}}
    safe, fixes = json_safe(value)
    assert safe == value
    assert fixes == frozenset()
    assert json_safe((1, 2)) == ([1, 2], frozenset())


def test_json_safe_string_key_wins_over_stringified_key() -> None:
    safe, _ = json_safe({1: "int", "1": "str"})
    assert safe == {"1": "str"}
    safe, _ = json_safe({"1": "str", 1: "int"})
    assert safe == {"1": "str"}


def test_json_safe_survives_cycles_and_deep_nesting() -> None:
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    safe, fixes = json_safe(cyclic)
    assert safe == {"a": 1, "self": None}
    assert "value_too_deep" in fixes
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    safe, fixes = json_safe(deep)
    json.dumps(safe)
    assert "value_too_deep" in fixes


def test_json_safe_set_order_is_deterministic() -> None:
    first, _ = json_safe({"b", "a", "c", 1, 2.5})
    second, _ = json_safe({2.5, 1, "c", "a", "b"})
    assert first == second


# ------------------------------------------------------------------------------------- properties


def test_clean_properties_fast_path_returns_an_equal_copy() -> None:
    props = {"plan": "pro", "seats": 3, "price": 9.5, "trial": False, "coupon": None}
    out, fixes = clean_properties(props)
    assert out == props
    assert out is not props
    assert fixes == ()


def test_clean_properties_renames_and_resolves_collisions_deterministically() -> None:
    props: dict[Any, Any] = {"a-b": 2, "a b": 1, "a_b": 3, 1: "int one", "1": "str one"}
    out, fixes = clean_properties(props)
    assert out == {"_1": "int one", "_1_2": "str one", "a_b": 3, "a_b_2": 1, "a_b_3": 2}
    assert "property_renamed" in fixes
    assert "property_name_collision" in fixes
    reordered = dict(reversed(list(props.items())))
    assert clean_properties(reordered) == (out, fixes)


def test_collision_suffix_never_steals_an_existing_name() -> None:
    out, _ = clean_properties({"a b": 1, "a_b": 2, "a_b_2": 3})
    assert out == {"a_b": 2, "a_b_2": 3, "a_b_3": 1}


def test_collision_suffix_fits_32_characters() -> None:
    base = "p" * 32
    out, _ = clean_properties({base: 1, base + " x": 2, base + " y": 3})
    assert set(out) == {base, "p" * 30 + "_2", "p" * 30 + "_3"}
    assert all(is_valid_property_name(name) for name in out)


def test_nested_objects_flatten_two_levels_then_become_json_text() -> None:
    props = {"product": {"id": "p1", "price": {"amount": 5, "currency": {"code": "EUR"}}}}
    out, fixes = clean_properties(props)
    assert out == {"product_id": "p1", "product_price_amount": 5, "product_price_currency": '{"code":"EUR"}'}
    assert "nested_flattened" in fixes
    assert "nested_stringified" in fixes


def test_flattened_name_collides_with_top_level_name() -> None:
    out, fixes = clean_properties({"a": {"b": 1}, "a_b": 2})
    assert out == {"a_b": 2, "a_b_2": 1}
    assert "property_name_collision" in fixes


def test_lists_and_sets_become_json_text() -> None:
    out, fixes = clean_properties({"tags": ["a", "b"], "ids": {2, 1}, "mixed": [1, {"x": float("nan")}]})
    assert out == {"ids": "[1,2]", "mixed": '[1,{"x":null}]', "tags": '["a","b"]'}
    assert "list_stringified" in fixes


def test_nan_and_infinity_are_dropped_but_none_is_kept() -> None:
    out, fixes = clean_properties({"a": float("nan"), "b": float("inf"), "c": None, "d": 1.0})
    assert out == {"c": None, "d": 1.0}
    assert {"value_nan", "value_infinity", "value_dropped"} <= set(fixes)


def test_empty_nested_object_leaves_nothing() -> None:
    out, _ = clean_properties({"a": {}, "b": 1})
    assert out == {"b": 1}


def test_size_rule_truncates_the_longest_string_first() -> None:
    props = {"description": "d" * 2000, "title": "t" * 100, "n": 7}
    out, fixes = clean_properties(props)
    assert properties_size(out) <= MAX_PROPERTIES_BYTES
    assert out["title"] == "t" * 100
    assert out["n"] == 7
    assert out["description"] == "d" * len(out["description"])
    assert 300 < len(out["description"]) < 2000
    assert properties_size(out) > MAX_PROPERTIES_BYTES - 8  # cut no more than needed
    assert {"properties_too_large", "property_truncated"} <= set(fixes)
    assert "property_dropped" not in fixes


def test_size_rule_counts_utf8_bytes() -> None:
    out, _ = clean_properties({"text": "é" * 400})
    assert properties_size(out) <= MAX_PROPERTIES_BYTES
    assert len(json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()) == properties_size(out)
    assert 200 < len(out["text"]) < 255


def test_size_rule_drops_largest_properties_when_truncation_is_not_enough() -> None:
    props = {f"k{i:02d}": 10**12 + i for i in range(60)}
    out, fixes = clean_properties(props)
    assert properties_size(out) <= MAX_PROPERTIES_BYTES
    assert "property_dropped" in fixes
    assert list(out) == sorted(out)
    assert set(out) < set(props)
    assert clean_properties(dict(reversed(list(props.items())))) == (out, fixes)


def test_size_rule_with_escapes_and_big_ints() -> None:
    props = {"quotes": '"' * 300, "ctrl": "\x00" * 100, "big": 10**200}
    out, _ = clean_properties(props)
    assert properties_size(out) <= MAX_PROPERTIES_BYTES


def test_small_props_skip_the_size_measurement_but_are_still_correct() -> None:
    out, _ = clean_properties({"s": "x" * 80})
    assert out == {"s": "x" * 80}
    out, _ = clean_properties({"s": "\\" * 300})  # bound says maybe, exact size says too large
    assert properties_size(out) <= MAX_PROPERTIES_BYTES


def test_clean_metadata_values_has_no_512_byte_limit_and_long_names() -> None:
    traits = {"bio": "b" * 1400, "address": {"city": "Paris"}, "subscription renewal date for enterprise": 1}
    out, fixes = clean_metadata_values(traits)
    assert out == {"address_city": "Paris", "bio": "b" * 1400, "subscription_renewal_date_for_enterprise": 1}
    assert "nested_flattened" in fixes


# ------------------------------------------------------------------------------------- timestamps


# Relative to now (yesterday, 05:03:54.123 UTC): a test date never ages out of Pendo's 7-day window.
DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
MOMENT = dt.datetime.combine(DAY, dt.time(5, 3, 54, 123000), tzinfo=dt.timezone.utc)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def epoch_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch, by date arithmetic (independent of the parser under test)."""
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


ISO_DAY = DAY.isoformat()
MOMENT_MS = epoch_ms(MOMENT)
DAY_MS = epoch_ms(dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        (f"{ISO_DAY}T05:03:54.123+00:00", MOMENT_MS),
        (f"{ISO_DAY}T05:03:54.123Z", MOMENT_MS),
        (f"{ISO_DAY}T05:03:54.1Z", MOMENT_MS - 23),
        (f"{ISO_DAY}T05:03:54.123456789Z", MOMENT_MS),
        (f"{ISO_DAY}T06:03:54.123+01:00", MOMENT_MS),
        (f"{ISO_DAY}T05:03:54", MOMENT_MS - 123),
        (ISO_DAY, DAY_MS),
    ],
)
def test_parse_timestamp_ms(text: str, ms: int) -> None:
    assert parse_timestamp_ms(text) == ms


@pytest.mark.parametrize(
    "bad", ["", "yesterday", f"{DAY.year}-13-01", f"{ISO_DAY}T25:00:00Z", None, 17, ISO_DAY.encode()]
)
def test_parse_timestamp_ms_rejects(bad: Any) -> None:
    assert parse_timestamp_ms(bad) is None


def test_parse_timestamp_ms_accepts_datetime_objects() -> None:
    assert parse_timestamp_ms(MOMENT) == MOMENT_MS
    assert parse_timestamp_ms(MOMENT.replace(tzinfo=None)) == MOMENT_MS
    assert parse_timestamp_ms(DAY) == DAY_MS


# ------------------------------------------------------------------------------------------ schema


SCHEMA = {
    "plan": "string",
    "seats": "number",
    "active": "boolean",
    "renews": "date",
    "score": "float",
    "misc": "list",
    "note": "text",
}


def test_coerce_metadata_without_schema_keeps_everything() -> None:
    values = {"anything": 1, "else": "x"}
    assert coerce_metadata(values, None) == (values, (), ())


def test_coerce_metadata_leaves_out_unknown_fields() -> None:
    out, fixes, unknown = coerce_metadata({"plan": "pro", "zzz": 1, "email": "a@b"}, SCHEMA)
    assert out == {"plan": "pro"}
    assert fixes == ()
    assert unknown == ("email", "zzz")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("plan", 5, "5"),
        ("plan", True, "true"),
        ("plan", 2.5, "2.5"),
        ("seats", "12", 12),
        ("seats", " 1.5e3 ", 1500.0),
        ("seats", True, 1),
        ("score", Decimal("2.5"), 2.5),
        ("active", "yes", True),
        ("active", "FALSE", False),
        ("active", 0, False),
        ("renews", f"{ISO_DAY}T00:00:00Z", DAY_MS),
        ("renews", ISO_DAY, DAY_MS),
        ("renews", DAY_MS // 1000, DAY_MS),
        ("renews", str(DAY_MS), DAY_MS),
        ("renews", dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc), DAY_MS),
    ],
)
def test_coerce_metadata_coerces(field: str, value: Any, expected: Any) -> None:
    out, fixes, _ = coerce_metadata({field: value}, SCHEMA)
    assert out == {field: expected}
    assert type(out[field]) is type(expected)
    assert any(f.startswith("coerced_") for f in fixes)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seats", "twelve"),
        ("seats", "nan"),
        ("seats", "1e999"),
        ("seats", float("nan")),
        ("active", "maybe"),
        ("active", 2),
        ("renews", "soon"),
        ("renews", True),
        ("renews", float("inf")),
        ("renews", 1e300),
    ],
)
def test_coerce_metadata_drops_bad_values(field: str, value: Any) -> None:
    out, fixes, _ = coerce_metadata({field: value, "plan": "pro"}, SCHEMA)
    assert out == {"plan": "pro"}
    assert "bad_value" in fixes


def test_coerce_metadata_keeps_matching_types_without_fixes() -> None:
    values = {"plan": "pro", "seats": 3, "score": 1.5, "active": True, "renews": 1704153600000, "note": None}
    out, fixes, unknown = coerce_metadata(values, SCHEMA)
    assert out == values
    assert fixes == ()
    assert unknown == ()


def test_coerce_metadata_unrecognised_type_passes_value_through() -> None:
    out, fixes, _ = coerce_metadata({"misc": "[1,2]"}, SCHEMA)
    assert out == {"misc": "[1,2]"}
    assert fixes == ()


def test_coerced_values_are_json_safe() -> None:
    out, _, _ = coerce_metadata({"plan": {"a": [1, Decimal("2")]}, "seats": 10**30}, SCHEMA)
    assert out == {"plan": '{"a":[1,2]}', "seats": 10**30}
    json.dumps(out, allow_nan=False)


def test_no_fix_for_plain_numbers_in_number_fields() -> None:
    _, fixes, _ = coerce_metadata({"seats": 3, "score": 1}, SCHEMA)
    assert fixes == ()
    assert not math.isnan(0.0)  # keep math imported for the parametrised NaN case above


def test_metadata_values_are_cut_at_the_documented_size() -> None:
    """Security (issue 14, 6): a 10 MB trait is not sent as a 10 MB metadata value."""
    values, fixes = clean_metadata_values(
        {"bio": "b" * 10_000_000, "tags": ["t" * 2000], "plan": "pro",
         "exact": "e" * MAX_METADATA_VALUE_CHARS}
    )
    assert values["bio"] == "b" * MAX_METADATA_VALUE_CHARS
    assert len(values["tags"]) == MAX_METADATA_VALUE_CHARS
    assert values["plan"] == "pro" and len(values["exact"]) == MAX_METADATA_VALUE_CHARS
    assert "metadata_value_truncated" in fixes
    assert "metadata_value_truncated" not in clean_metadata_values({"plan": "pro"})[1]


def test_a_huge_trait_reaches_pendo_cut_and_counted(plugin: Any, segment_client: Any) -> None:
    """End to end through the real Segment client and the sandbox: the cut is sent, and counted."""
    from pendo_plugin import counters

    segment_client.identify("u-huge", {"bio": "b" * 30_000, "plan": "pro"})  # Segment refuses > 32 KB
    segment_client.flush()
    assert plugin.wait_for(lambda box: "u-huge" in box.visitors(), timeout=10)
    assert plugin.visitors()["u-huge"] == {"bio": "b" * MAX_METADATA_VALUE_CHARS, "plan": "pro"}
    assert counters.snapshot()["fixed:metadata_value_truncated"] == 1
