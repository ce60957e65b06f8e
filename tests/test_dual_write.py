"""End to end in one process: the real Segment client, the plugin, and the Pendo stand-in on loopback."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.sandbox import Sandbox

CONTEXT = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (test)",
    "page": {"url": "https://app.example.com/settings", "title": "Settings"},
}


def events_named(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    return [event for event in sandbox.track_events() if event["event"] == name]


def test_identify_group_and_track_reach_pendo(plugin: Sandbox, segment_client: Any) -> None:
    # relative to now: Pendo skips events older than 7 days, so a fixed date would rot
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).replace(microsecond=123000)
    segment_client.identify("u1", {"plan": "pro", "logins": 5})
    segment_client.group("u1", "acct-1", {"name": "Acme", "seats": 12})
    segment_client.track("u1", "Report Exported", {"format": "csv"}, context=CONTEXT, timestamp=when)
    segment_client.track(anonymous_id="anon-7", event="Pricing Viewed", properties={"groupId": "acct-9"})
    segment_client.flush()

    assert plugin.visitors()["u1"] == {"plan": "pro", "logins": 5}
    assert plugin.accounts()["acct-1"] == {"name": "Acme", "seats": 12}
    [exported] = events_named(plugin, "Report Exported")
    assert exported["visitorId"] == "u1"
    assert exported["accountId"] == "acct-1"  # remembered from the group call
    assert exported["timestamp"] == int(when.timestamp() * 1000)
    assert exported["properties"] == {"format": "csv"}
    assert exported["context"] == {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0 (test)",
        "url": "https://app.example.com/settings",
        "title": "Settings",
    }
    [pricing] = events_named(plugin, "Pricing Viewed")
    assert pricing["visitorId"] == "_PENDO_T_anon-7"
    assert pricing["accountId"] == "acct-9"
    assert plugin.violations() == []


def test_account_remembered_from_identify_group_id_trait(plugin: Sandbox, segment_client: Any) -> None:
    segment_client.identify("u2", {"groupId": "acct-2"})
    segment_client.track("u2", "Seat Added")
    segment_client.flush()

    [event] = events_named(plugin, "Seat Added")
    assert event["accountId"] == "acct-2"


@pytest.mark.parametrize(
    ("integrations", "reaches_pendo"),
    [
        ({"Pendo": False}, False),
        ({"All": False}, False),
        ({"all": False}, False),
        ({"All": False, "Pendo": True}, True),
        ({"Pendo": True}, True),
        ({"Amplitude": False}, True),
    ],
)
def test_segment_integrations_switch(
    plugin: Sandbox, segment_client: Any, integrations: dict[str, bool], reaches_pendo: bool
) -> None:
    segment_client.track("u3", "Switched", {"case": str(integrations)}, integrations=integrations)
    segment_client.flush()

    assert bool(events_named(plugin, "Switched")) is reaches_pendo
    assert len(plugin.segment_messages()) == 1  # Segment always gets it
    if not reaches_pendo:
        assert pendo_plugin.stats()["rollout:off_integrations"] == 1


def test_page_screen_alias_go_to_segment_only(plugin: Sandbox, segment_client: Any) -> None:
    segment_client.page("u4", name="Home")
    segment_client.screen("u4", name="Dashboard")
    segment_client.alias("old-id", "u4")
    segment_client.flush()

    assert plugin.track_events() == []
    assert len(plugin.segment_messages()) == 3
    stats = pendo_plugin.stats()
    assert (stats["skipped:call:page"], stats["skipped:call:screen"], stats["skipped:call:alias"]) == (
        1,
        1,
        1,
    )


def test_segment_receives_every_message_unchanged(plugin: Sandbox, segment_client: Any) -> None:
    segment_client.identify("u5", {"plan": "free"})
    segment_client.track("u5", "Clicked", {"weird key!": 1, "n": 2})
    segment_client.flush()

    received = {message["type"]: message for message in plugin.segment_messages()}
    assert received["track"]["properties"] == {"weird key!": 1, "n": 2}
    assert received["identify"]["traits"] == {"plan": "free"}
    [event] = events_named(plugin, "Clicked")
    assert event["properties"] == {"weird_key": 1, "n": 2}


def test_send_false_sends_nothing_to_pendo(plugin: Sandbox) -> None:
    from segment.analytics import Client

    client = Client("test-write-key", host=plugin.url, send=False)
    client.track("u6", "Never Sent")
    client.flush()
    pendo_plugin.flush(5)

    assert plugin.track_events() == []
    assert "seen" not in pendo_plugin.stats()


def test_sync_mode_delivers_before_the_call_returns(plugin: Sandbox) -> None:
    from segment.analytics import Client

    client = Client("test-write-key", host=plugin.url, sync_mode=True)
    client.track("u7", "Synced")

    assert [event["visitorId"] for event in events_named(plugin, "Synced")] == ["u7"]
    assert len(plugin.segment_messages()) == 1


def test_flush_waits_for_pendo_too(plugin: Sandbox, segment_client: Any) -> None:
    plugin.set_latency(0.2)
    for n in range(20):
        segment_client.track("u8", "Slow Pendo", {"n": n})
    segment_client.flush()

    assert sorted(event["properties"]["n"] for event in events_named(plugin, "Slow Pendo")) == list(range(20))


def test_metadata_rows_for_one_visitor_are_merged(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(batch_interval=30)  # keep rows queued until flush
    segment_client.identify("u9", {"plan": "free", "logins": 1})
    segment_client.identify("u9", {"plan": "pro"})
    segment_client.flush()

    requests = plugin.metadata_requests("visitor")
    assert requests == [[{"visitorId": "u9", "values": {"plan": "pro", "logins": 1}}]]


def test_webhook_mode_posts_raw_segment_messages(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(mode="webhook", api_key="public-app-key")
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)).replace(microsecond=0)
    segment_client.identify("u10", {"plan": "pro", "since": since})
    segment_client.group("u10", "acct-10", {"name": "Hooks Inc"})
    segment_client.track("u10", "Hooked", {"n": 1})
    segment_client.page("u10", name="Home")
    segment_client.flush()

    received = {message["type"]: message for message in plugin.webhook_messages()}  # sent concurrently
    assert sorted(received) == ["group", "identify", "track"]
    assert received["identify"]["traits"]["since"].startswith(since.strftime("%Y-%m-%dT%H:%M:%S"))
    assert received["track"]["properties"] == {"n": 1}
    assert {message["messageId"] for message in received.values()} <= {
        message["messageId"] for message in plugin.segment_messages()
    }
    assert plugin.track_events() == []
    assert [request.path for request in plugin.request_log() if "segmentio" in request.path] == [
        "/data/segmentio/***"
    ] * 3
