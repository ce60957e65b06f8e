"""The routing shortcuts change no result: ids resolved once, the memo of valid names, the hold reasons
kept per settings object, and the ``pendo_rollout`` hook skipped while no plugin implements it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import config, counters
from pendo_plugin.destination.route import Router
from pendo_plugin.pendo import sanitize
from pendo_plugin.pendo.sanitize import MAX_KNOWN_NAMES, clean_metadata_values, clean_properties
from pendo_plugin.pendo.translate import account_id_of, translate, visitor_id_of
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins
from pendo_plugin.segment.hookspecs import hookimpl

WHEN = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
NOW_MS = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


class Named(str):
    """A ``str`` subclass: never a valid name as it is (the rules want a plain ``str``)."""


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Saved", "userId": "u1", "timestamp": WHEN.isoformat(), **fields}


@pytest.mark.parametrize(
    ("message", "remembered"),
    [
        (track(), None),
        (track(), "acct-remembered"),
        (track(context={"groupId": 42}), "acct-remembered"),
        (track(properties={"groupId": " ", "accountId": Decimal("7.0")}), None),
        (track(userId=None, anonymousId="anon-1"), None),
        (track(userId="x" * 300), None),
        (track(userId=" "), None),
        (track(properties={"accountId": "y" * 300}), None),
        (track(context={"groupId": "\ud800"}), None),
        (track(event=" "), None),
    ],
)
def test_a_track_translated_with_the_routers_ids_equals_one_resolving_them(
    message: dict[str, Any], remembered: str | None
) -> None:
    ids = (visitor_id_of(message), account_id_of(message, remembered))
    given = translate(message, remembered_account=remembered, now_ms=NOW_MS, ids=ids)
    assert given == translate(message, remembered_account=remembered, now_ms=NOW_MS)


def test_a_name_found_valid_once_gives_the_same_result_for_a_str_subclass_key() -> None:
    assert clean_properties({"plan": "pro"}) == ({"plan": "pro"}, ())
    out, _ = clean_properties({Named("plan"): "pro"})  # the memo holds "plan" now
    assert out == {"plan": "pro"}
    assert [type(name) for name in out] == [str]  # cleaned through the rules, not passed through
    values, _ = clean_metadata_values({Named("plan"): "pro"})
    assert [type(name) for name in values] == [str]


def test_invalid_names_are_renamed_every_time() -> None:
    for _ in range(3):
        assert clean_properties({"Plan Name": 1}) == ({"Plan_Name": 1}, ("property_renamed",))
        assert clean_metadata_values({"Plan Name": 1}) == ({"Plan_Name": 1}, ("property_renamed",))


def test_the_memo_of_valid_names_stays_bounded() -> None:
    for n in range(MAX_KNOWN_NAMES + 100):
        assert clean_properties({f"p{n}": n}) == ({f"p{n}": n}, ())
        assert len(sanitize._known_property_names) <= MAX_KNOWN_NAMES
    for n in range(MAX_KNOWN_NAMES + 100):
        assert clean_metadata_values({f"f{n}": n}) == ({f"f{n}": n}, ())
        assert len(sanitize._known_field_names) <= MAX_KNOWN_NAMES


def test_the_router_follows_each_new_settings_object() -> None:
    values = {"track_secret": "s", "integration_key": "k", "spool_dir": "off"}
    sending = config.load(values, environ={})
    shadow = config.load({**values, "shadow": True}, environ={})
    no_secret = config.load({**values, "track_secret": None}, environ={})
    router = Router()
    counters.reset()
    assert len(router.route(track(), sending)) == 1
    assert router.route(track(), shadow) == []
    assert router.route(track(), no_secret) == []
    assert len(router.route(track(), sending)) == 1
    stats = counters.snapshot()
    assert (stats["queued:track"], stats["shadow:track"], stats["skipped:no_secret:track"]) == (2, 1, 1)


class Refuser:
    """A flag provider that says no to everyone."""

    @hookimpl
    def pendo_rollout(self, message: dict[str, Any]) -> bool:
        return False


def test_a_provider_registered_after_routing_started_is_asked(plugin: Sandbox, segment_client: Any) -> None:
    assert not plugins.implemented("pendo_rollout")
    segment_client.track("before", "Flagged")
    segment_client.flush()
    plugins.register_plugin(Refuser(), name="test-refuser")
    try:
        assert plugins.implemented("pendo_rollout")
        segment_client.track("during", "Flagged")
        segment_client.flush()
    finally:
        plugins.unregister_plugin(name="test-refuser")
    assert not plugins.implemented("pendo_rollout")
    segment_client.track("after", "Flagged")
    segment_client.flush()

    assert {event["visitorId"] for event in plugin.track_events()} == {"before", "after"}
    assert pendo_plugin.stats()["rollout:off_provider"] == 1
