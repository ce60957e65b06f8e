"""Consent, property rules and the pendo_transform hook through the real Segment SDK against the sandbox
(docs/privacy.md): what Segment's cloud would keep from Pendo never reaches it, and Segment's own upload
is untouched. One sandbox, plugin and client per module; each test configures what it needs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import config, counters
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins
from pendo_plugin.segment.hookspecs import hookimpl
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET, stop_runtime

CALLS = ("identify", "group", "track")
PAYLOAD_KIND = {"identify": "visitor", "group": "account", "track": "track"}


@pytest.fixture(scope="module")
def pendo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    keys = {"track_secret": TRACK_SECRET, "integration_key": INTEGRATION_KEY, "api_key": "public-app-key"}
    with Sandbox(**keys) as server:
        stop_runtime()
        pendo_plugin.install()
        try:
            yield server
        finally:
            stop_runtime()
            config.configure(reset=True)
            counters.reset()


@pytest.fixture(scope="module")
def client(pendo: Sandbox) -> Iterator[Any]:
    from segment.analytics import Client

    segment = Client("test-write-key", host=pendo.url, upload_interval=0.05)
    try:
        yield segment
    finally:
        segment.flush()
        segment.join()


@pytest.fixture
def setup(pendo: Sandbox, tmp_path: Path) -> Iterator[Any]:
    """``setup(**settings)``: the plugin against the module's sandbox with these settings, from zero."""

    def configure(**settings: Any) -> None:
        pendo_plugin.configure(
            reset=True, track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, data_url=pendo.url,
            api_url=pendo.url, spool_dir=str(tmp_path / "spool"), max_retries=2, retry_budget=10,
            batch_interval=0.05, **settings,
        )

    pendo.reset()
    counters.reset()
    configure()
    yield configure
    pendo.reset()


def send(client: Any, call: str, user: str, context: dict[str, Any] | None = None,
         values: dict[str, Any] | None = None) -> None:
    """One ``call`` for ``user`` (group: account ``acct-<user>``), then both flushes."""
    values = values if values is not None else {"plan": "pro"}
    if call == "identify":
        client.identify(user, values, context=context or {})
    elif call == "group":
        client.group(user, f"acct-{user}", values, context=context or {})
    else:
        client.track(user, "Consent Probe", values, context=context or {})
    client.flush()
    assert pendo_plugin.flush(10)


def in_pendo(pendo: Sandbox, call: str, user: str) -> dict[str, Any] | None:
    """What Pendo holds for that call: the track event's properties or the row's values, or None."""
    if call == "identify":
        return pendo.visitors().get(user)
    if call == "group":
        return pendo.accounts().get(f"acct-{user}")
    events = [event for event in pendo.track_events() if event["visitorId"] == user]
    return events[-1]["properties"] if events else None


def in_segment(pendo: Sandbox, user: str) -> list[dict[str, Any]]:
    return [message for message in pendo.segment_messages() if message.get("userId") == user]


# ----------------------------------------------------------------------------------- Segment consent

SEGMENT_CASES = [
    # (case, PENDO_CONSENT_CATEGORIES, context.consent, sent to Pendo)
    ("no_object", "Analytics", None, True),
    ("all_true", "Analytics", {"categoryPreferences": {"Analytics": True, "Advertising": False}}, True),
    ("one_false", "Analytics", {"categoryPreferences": {"Analytics": False}}, False),
    ("missing", "Analytics", {"categoryPreferences": {"Advertising": True}}, False),
    ("empty_map", "Analytics", {"categoryPreferences": {}}, False),
    ("case_mismatch", "Analytics", {"categoryPreferences": {"analytics": True}}, False),
    ("two_categories_true", "Analytics,Advertising",
     {"categoryPreferences": {"Analytics": True, "Advertising": True}}, True),
    ("two_categories_one_false", "Analytics,Advertising",
     {"categoryPreferences": {"Analytics": True, "Advertising": False}}, False),
    ("no_categories_configured", "", {"categoryPreferences": {"Analytics": False}}, True),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("case", "categories", "consent", "sent"), SEGMENT_CASES,
                         ids=[case[0] for case in SEGMENT_CASES])
def test_segment_consent(pendo: Sandbox, client: Any, setup: Any, call: str, case: str, categories: str,
                         consent: dict[str, Any] | None, sent: bool) -> None:
    setup(consent_categories=categories)
    user = f"{case}-{call}"
    send(client, call, user, None if consent is None else {"consent": consent})

    assert (in_pendo(pendo, call, user) is not None) is sent
    assert len(in_segment(pendo, user)) == 1  # Segment's upload is untouched
    stats = pendo_plugin.stats()
    assert stats.get(f"skipped:consent:{call}", 0) == (0 if sent else 1)
    assert stats.get(f"consent:unmapped:{call}", 0) == (1 if case == "no_categories_configured" else 0)


# ----------------------------------------------------------------------------------- RudderStack consent

RUDDERSTACK_CASES = [
    ("and_all_allowed", {"allowedConsentIds": ["Analytics", "Ads"], "deniedConsentIds": [],
                         "resolutionStrategy": "and", "provider": "custom"}, True),
    ("and_one_denied", {"allowedConsentIds": ["Analytics"], "deniedConsentIds": ["Ads"],
                        "resolutionStrategy": "and", "provider": "custom"}, False),
    ("no_strategy_is_and", {"allowedConsentIds": ["Analytics"], "deniedConsentIds": ["Ads"],
                            "provider": "oneTrust"}, False),
    ("or_one_allowed", {"allowedConsentIds": ["Ads"], "deniedConsentIds": ["Analytics"],
                        "resolutionStrategy": "or", "provider": "custom"}, True),
    ("or_none_allowed", {"allowedConsentIds": ["Other"], "deniedConsentIds": ["Analytics", "Ads"],
                         "resolutionStrategy": "or", "provider": "custom"}, False),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("case", "management", "sent"), RUDDERSTACK_CASES,
                         ids=[case[0] for case in RUDDERSTACK_CASES])
def test_rudderstack_consent(pendo: Sandbox, client: Any, setup: Any, call: str, case: str,
                             management: dict[str, Any], sent: bool) -> None:
    setup(consent_categories="Analytics,Ads")
    user = f"rs-{case}-{call}"
    send(client, call, user, {"consentManagement": management})

    assert (in_pendo(pendo, call, user) is not None) is sent
    assert len(in_segment(pendo, user)) == 1
    assert pendo_plugin.stats().get(f"skipped:consent:{call}", 0) == (0 if sent else 1)


def test_both_consent_fields_must_agree(pendo: Sandbox, client: Any, setup: Any) -> None:
    setup(consent_categories="Analytics")
    context = {"consent": {"categoryPreferences": {"Analytics": True}},
               "consentManagement": {"allowedConsentIds": [], "deniedConsentIds": ["Analytics"]}}
    send(client, "track", "both-fields", context)
    assert in_pendo(pendo, "track", "both-fields") is None


# ----------------------------------------------------------------------------------- webhook mode


@pytest.mark.parametrize("call", CALLS)
def test_webhook_mode_honours_consent_and_property_rules(pendo: Sandbox, client: Any, setup: Any,
                                                         call: str) -> None:
    setup(mode="webhook", api_key="public-app-key", consent_categories="Analytics",
          deny_properties="ssn,address.street")
    refused = {"consent": {"categoryPreferences": {"Analytics": False}}}
    granted = {"consent": {"categoryPreferences": {"Analytics": True}}, "traits": {"ssn": "123-45-6789"}}
    values = {"ssn": "123-45-6789", "address": {"street": "1 Main St", "city": "Paris"}, "plan": "pro"}
    send(client, call, f"wh-no-{call}", refused, values)
    send(client, call, f"wh-yes-{call}", granted, values)

    received = {message["userId"]: message for message in pendo.webhook_messages()}
    assert sorted(received) == [f"wh-yes-{call}"]
    message = received[f"wh-yes-{call}"]
    field = "properties" if call == "track" else "traits"
    assert message[field] == {"address": {"city": "Paris"}, "plan": "pro"}
    assert "ssn" not in message["context"]["traits"]
    assert "123-45-6789" not in json.dumps(pendo.webhook_messages())
    assert in_segment(pendo, f"wh-yes-{call}")[0][field]["ssn"] == "123-45-6789"  # Segment's copy unchanged


# ----------------------------------------------------------------------------------- property rules


def _hmac(key: str, value: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


PERSON = {"ssn": "123-45-6789", "email": "ada@example.com", "plan": "pro",
          "address": {"street": "1 Main St", "city": "Paris"}}


@pytest.mark.parametrize("call", CALLS)
def test_deny_and_hash_with_a_key(pendo: Sandbox, client: Any, setup: Any, call: str) -> None:
    setup(deny_properties="ssn,address.street", hash_properties="email", hash_key="k-0001")
    send(client, call, f"rules-{call}", None, PERSON)

    got = in_pendo(pendo, call, f"rules-{call}")
    assert got is not None
    assert "ssn" not in got and "address_street" not in got
    assert got["address_city"] == "Paris" and got["plan"] == "pro"
    assert got["email"] == _hmac("k-0001", "ada@example.com")
    assert in_segment(pendo, f"rules-{call}")[0]["traits" if call != "track" else "properties"] == PERSON
    stats = pendo_plugin.stats()
    assert stats[f"redacted:denied_property:{call}"] == 2
    assert stats[f"redacted:hashed:{call}"] == 1


@pytest.mark.parametrize("call", CALLS)
def test_hash_without_a_key_drops_the_field(pendo: Sandbox, client: Any, setup: Any, call: str) -> None:
    setup(hash_properties="email")
    send(client, call, f"nokey-{call}", None, PERSON)

    got = in_pendo(pendo, call, f"nokey-{call}")
    assert got is not None and "email" not in got and got["plan"] == "pro"
    assert "ada@example.com" not in json.dumps([pendo.track_events(), pendo.visitors(), pendo.accounts()])
    assert pendo_plugin.stats()[f"redacted:hash_no_key:{call}"] == 1


def test_allow_list_keeps_only_those_track_properties(pendo: Sandbox, client: Any, setup: Any) -> None:
    setup(allow_properties="plan,address.city")
    send(client, "track", "allow-track", None, PERSON)
    send(client, "identify", "allow-identify", None, PERSON)

    assert in_pendo(pendo, "track", "allow-track") == {"plan": "pro", "address_city": "Paris"}
    assert in_pendo(pendo, "identify", "allow-identify")["ssn"] == "123-45-6789"  # traits: deny/hash only
    assert pendo_plugin.stats()["redacted:not_allowed_property:track"] == 3


def test_rules_from_a_file(pendo: Sandbox, client: Any, setup: Any, tmp_path: Path) -> None:
    rules = tmp_path / "deny.txt"
    rules.write_text("# never in Pendo\nssn\naddress.street  # nested\n")
    setup(deny_properties=f"@{rules}")
    send(client, "track", "file-rules", None, PERSON)
    assert in_pendo(pendo, "track", "file-rules") == {
        "email": "ada@example.com", "plan": "pro", "address_city": "Paris"
    }


# ----------------------------------------------------------------------------------- pendo_transform


class Transform:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def pendo_transform(self, kind: str, payload: dict[str, Any], message: Any) -> Any:
        self.seen.append((kind, payload))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(kind, payload) if callable(self.answer) else self.answer


@pytest.fixture
def transform() -> Iterator[Any]:
    registered: list[str] = []

    def register(answer: Any) -> Transform:
        plugin = Transform(answer)
        registered.append(plugins.register_plugin(plugin, name=f"redactor-{len(registered)}") or "")
        return plugin

    yield register
    for name in registered:
        plugins.unregister_plugin(name=name)


def _replace(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind == "track":
        return {**payload, "properties": {"tier": "gold", "bad name!": 1}}
    return {"tier": "gold"}


@pytest.mark.parametrize("call", CALLS)
def test_transform_replaces(pendo: Sandbox, client: Any, setup: Any, transform: Any, call: str) -> None:
    setup(deny_properties="ssn")
    hook = transform(_replace)
    send(client, call, f"tr-{call}", None, PERSON)

    got = in_pendo(pendo, call, f"tr-{call}")
    assert got is not None and got["tier"] == "gold" and "plan" not in got
    if call == "track":
        assert got == {"tier": "gold", "bad_name": 1}  # checked against Pendo's rules again
    assert "ssn" not in json.dumps(hook.seen)  # called after the property rules
    assert pendo_plugin.stats()[f"transformed:{PAYLOAD_KIND[call]}"] == 1


@pytest.mark.parametrize("call", CALLS)
def test_transform_drops(pendo: Sandbox, client: Any, setup: Any, transform: Any, call: str) -> None:
    transform(False)
    send(client, call, f"drop-{call}", None, PERSON)
    kind = PAYLOAD_KIND[call]
    assert in_pendo(pendo, call, f"drop-{call}") is None
    assert pendo_plugin.stats()[f"dropped:transform:{kind}"] == 1
    assert len(in_segment(pendo, f"drop-{call}")) == 1


@pytest.mark.parametrize("call", CALLS)
def test_transform_exception_fails_closed(pendo: Sandbox, client: Any, setup: Any, transform: Any,
                                          call: str) -> None:
    transform(RuntimeError("redaction service down"))
    send(client, call, f"crash-{call}", None, PERSON)
    kind = PAYLOAD_KIND[call]
    assert in_pendo(pendo, call, f"crash-{call}") is None
    stats = pendo_plugin.stats()
    assert stats[f"dropped:transform_error:{kind}"] == 1
    assert stats["plugin_error:pendo_transform"] >= 1
    assert len(in_segment(pendo, f"crash-{call}")) == 1


def test_transform_returning_what_pendo_refuses_is_dropped(pendo: Sandbox, client: Any, setup: Any,
                                                           transform: Any) -> None:
    transform({"event": "", "visitorId": None})
    send(client, "track", "invalid-shape", None, PERSON)
    assert pendo.track_events() == []
    assert pendo_plugin.stats()["dropped:transform_invalid:track"] == 1


# ----------------------------------------------------------------------------------- replay


def test_replay_of_an_export_applies_consent_and_rules(pendo: Sandbox, setup: Any, tmp_path: Path) -> None:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat()
    lines = []
    for call in CALLS:
        for user, granted in ((f"rp-no-{call}", False), (f"rp-yes-{call}", True)):
            consent = {"consent": {"categoryPreferences": {"Analytics": granted}}}
            message: dict[str, Any] = {"type": call, "userId": user, "timestamp": now,
                                       "messageId": f"m-{user}", "context": consent}
            if call == "track":
                message.update(event="Replayed", properties=PERSON)
            else:
                message["traits"] = PERSON
            if call == "group":
                message["groupId"] = f"acct-{user}"
            lines.append(json.dumps(message))
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PENDO_TRACK_SECRET": TRACK_SECRET, "PENDO_INTEGRATION_KEY": INTEGRATION_KEY,
           "PENDO_DATA_URL": pendo.url, "PENDO_API_URL": pendo.url,
           "PENDO_SPOOL_DIR": str(tmp_path / "spool"),
           "PENDO_CONSENT_CATEGORIES": "Analytics", "PENDO_DENY_PROPERTIES": "ssn",
           "PENDO_HASH_PROPERTIES": "email", "PENDO_HASH_KEY": "k-0001", "PENDO_AUTOLOAD": "0"}
    command = [sys.executable, "-m", "pendo_plugin.cli", "replay", str(export), "--no-checkpoint"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    for call in CALLS:
        assert in_pendo(pendo, call, f"rp-no-{call}") is None
        got = in_pendo(pendo, call, f"rp-yes-{call}")
        assert got is not None and "ssn" not in got
        assert got["email"] == _hmac("k-0001", "ada@example.com")
