"""Hostile input through the real SDK, and metadata batches that Pendo would partly refuse."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import math
import random
import traceback
import uuid
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.sandbox import Sandbox, property_name_problem

WEIRD_KEYS = [
    "",
    " ",
    "has space",
    "1starts_with_digit",
    "__dunder__",
    "x" * 200,
    "émoji🎉",
    "a.b",
    "a-b",
    "UPPER",
    "tab\tkey",
    "new\nline",
    "__",
    "_",
    "0",
    "groupId",
    "accountId",
]
WEIRD_VALUES: list[Any] = [
    decimal.Decimal("1.10"),
    uuid.UUID(int=7),
    dt.datetime.now() - dt.timedelta(days=40),  # date-time trait values, relative to now
    dt.date.today() - dt.timedelta(days=40),
    b"\x00\xffbytes",
    {1, 2, 3},
    math.nan,
    math.inf,
    -math.inf,
    "y" * 5000,
    {"nested": {"deeper": {"deepest": 1}}},
    [1, [2, [3]]],
    None,
    True,
    2**70,
    -0.0,
    "",
    "☃",
]
WEIRD_IDS: list[Any] = [
    "u-1",
    42,
    3.5,
    " padded ",
    "émoji🎉",
    "0",
    "user@example.com",
    str(uuid.UUID(int=9)),
    2**63,
    "tab\tid",
]
UNUSABLE_IDS: list[Any] = ["x" * 300, "   "]  # skipped by rule (id_too_long, blank): 5 % of users below


def hostile_id(rng: random.Random) -> Any:
    return rng.choice(UNUSABLE_IDS) if rng.random() < 0.05 else rng.choice(WEIRD_IDS)


def hostile_properties(rng: random.Random) -> dict[Any, Any]:
    keys = rng.sample(WEIRD_KEYS, rng.randint(0, 8))
    return {key: rng.choice(WEIRD_VALUES) for key in keys}


def hostile_context(rng: random.Random) -> dict[str, Any]:
    return rng.choice(
        [
            {},
            {"ip": "198.51.100.1", "page": {"url": "https://x.example/" + "p" * 3000, "title": None}},
            {"groupId": hostile_id(rng), "userAgent": "a" * 2000},
            {"page": "not-a-dict", "ip": 12345},
            {"traits": {"deep": {"deeper": [1, 2, {"deepest": math.nan}]}}},
        ]
    )


def test_hundreds_of_hostile_messages(
    plugin: Sandbox, segment_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261123)
    accepted_tracks = 0
    accepted = 0
    for _ in range(400):
        call = rng.choice(["track", "track", "identify", "group"])
        user = hostile_id(rng)
        try:
            if call == "track":
                segment_client.track(
                    user,
                    rng.choice(["Clicked", "a" * 300, "événement", "  spaced  "]),
                    hostile_properties(rng),
                    context=hostile_context(rng),
                )
                accepted_tracks += 1
            elif call == "identify":
                segment_client.identify(user, hostile_properties(rng), context=hostile_context(rng))
            else:
                segment_client.group(user, hostile_id(rng), hostile_properties(rng))
            accepted += 1
        except Exception as exc:  # the SDK itself refuses some input (32 KB limit, undecodable bytes)
            frames = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
            assert "segment/analytics" in frames[-1], frames  # raised inside the SDK, before any hook ran
    segment_client.flush()

    events = plugin.track_events()
    assert len(plugin.segment_messages()) == accepted
    assert len(events) >= 0.9 * accepted_tracks, {
        k: v for k, v in pendo_plugin.stats().items() if "skip" in k or "drop" in k
    }
    bad_names = [
        name
        for event in events
        for name in event.get("properties", {})
        if property_name_problem(name) is not None
    ]
    assert bad_names == []
    assert [v for v in plugin.violations() if "property" in v] == []
    assert not any(record.exc_info for record in caplog.records)
    assert "dropped:internal_error" not in pendo_plugin.stats()


SCHEMA = {"visitor": {"plan": "string", "logins": "number", "beta": "boolean", "createdAt": "time"}}


def test_unknown_field_and_bad_value_spare_every_other_row_and_field(
    plugin: Sandbox, segment_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plugin.set_schema(SCHEMA)
    pendo_plugin.configure(batch_interval=30)  # one batch, sent at flush
    created = dt.datetime.combine(dt.date.today() - dt.timedelta(days=40), dt.time(), tzinfo=dt.timezone.utc)
    created_ms = int((created - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 1000
    segment_client.identify("v1", {"plan": "pro", "logins": 5, "favouriteColour": "teal"})
    segment_client.identify("v2", {"plan": "free", "logins": "five", "beta": "true"})
    segment_client.identify(
        "v3", {"plan": "team", "createdAt": created}
    )
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        segment_client.flush()

    visitors = plugin.visitors()
    assert visitors["v1"] == {"plan": "pro", "logins": 5}
    assert visitors["v2"]["plan"] == "free"
    assert visitors["v2"].get("beta") is True
    assert "logins" not in visitors["v2"]
    assert visitors["v3"] == {"plan": "team", "createdAt": created_ms}
    assert len(plugin.metadata_requests("visitor")) == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert any("favouriteColour" in line and "Data Mappings" in line for line in warnings)
    assert pendo_plugin.stats()["dropped_field:unknown:visitor"] == 1


def test_a_400_batch_is_split_to_isolate_the_bad_row(plugin: Sandbox, segment_client: Any) -> None:
    plugin.set_schema(SCHEMA)
    pendo_plugin.configure(batch_interval=30, schema_check=False)  # the plugin cannot see the schema
    for n in range(7):
        segment_client.identify(f"w{n}", {"plan": f"p{n}"})
    segment_client.identify("w-bad", {"plan": "x", "notAField": 1})
    segment_client.flush()

    visitors = plugin.visitors()
    assert {f"w{n}" for n in range(7)} <= set(visitors)
    assert "w-bad" not in visitors
    assert pendo_plugin.stats()["dropped:http_400:visitor"] == 1
