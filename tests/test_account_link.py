"""identify's ``context.groupId`` links the visitor to that account (Segment's spec, and the default
mapping of Segment's own Pendo Web destination): later track calls without a group of their own
carry that ``accountId``."""

from __future__ import annotations

import time
from typing import Any

import pendo_plugin
from pendo_plugin.config import Settings
from pendo_plugin.destination.route import Router
from pendo_plugin.pendo.translate import translate
from pendo_plugin.sandbox import Sandbox

NOW_MS = int(time.time() * 1000)


def settings() -> Settings:
    return pendo_plugin.config.configure(reset=True, track_secret="s", integration_key="k", spool_dir="off")


def test_identify_context_group_id_links_the_visitor_even_without_traits() -> None:
    result = translate({"type": "identify", "userId": "u1", "context": {"groupId": 42}}, now_ms=NOW_MS)
    assert result.skipped == "no_traits"
    assert result.account_link == ("u1", "42")


def test_identify_context_group_id_wins_over_the_trait() -> None:
    both = {"type": "identify", "userId": "u1", "traits": {"groupId": "trait"}}
    assert translate({**both, "context": {"groupId": "ctx"}}, now_ms=NOW_MS).account_link == ("u1", "ctx")
    assert translate({**both, "context": {"groupId": " "}}, now_ms=NOW_MS).account_link == ("u1", "trait")


def test_later_track_without_a_group_carries_the_linked_account() -> None:
    router = Router()
    current = settings()
    try:
        router.route({"type": "identify", "userId": "u1", "context": {"groupId": "acct-3"}}, current)
        [plain] = router.route({"type": "track", "userId": "u1", "event": "Saved"}, current, now_ms=NOW_MS)
        own = {"type": "track", "userId": "u1", "event": "Saved", "properties": {"groupId": "other"}}
        [explicit] = router.route(own, current, now_ms=NOW_MS)
        [stranger] = router.route({"type": "track", "userId": "u9", "event": "Saved"}, current, now_ms=NOW_MS)
    finally:
        pendo_plugin.config.configure(reset=True)
    assert plain.body["accountId"] == "acct-3"
    assert explicit.body["accountId"] == "other"
    assert "accountId" not in stranger.body


def test_identify_context_group_id_reaches_pendo_on_later_track(plugin: Sandbox, segment_client: Any) -> None:
    segment_client.identify("u3", {"plan": "pro"}, context={"groupId": "acct-3"})
    segment_client.track("u3", "Seat Added")
    segment_client.flush()

    [event] = [event for event in plugin.track_events() if event["event"] == "Seat Added"]
    assert event["visitorId"] == "u3"
    assert event["accountId"] == "acct-3"
    assert plugin.visitors()["u3"] == {"plan": "pro"}
