"""The pure privacy decisions: consent (pendo/consent.py), property rules (pendo/property_rules.py) and the
recheck of a transformed payload (pendo/recheck.py). No servers: these are functions of their input."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pendo_plugin import config
from pendo_plugin.pendo.consent import carries_consent, consented
from pendo_plugin.pendo.property_rules import PropertyRules, apply_rules, keyed_hash
from pendo_plugin.pendo.recheck import rechecked


def with_context(**context: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": "E", "context": context}


@pytest.mark.parametrize(("context", "expected"), [
    ({}, True),
    ({"consent": {}}, True),  # no categoryPreferences: no consent data
    ({"consent": {"categoryPreferences": {"A": True, "B": True}}}, True),
    ({"consent": {"categoryPreferences": {"A": True, "B": "true"}}}, False),  # only the JSON true
    ({"consent": {"categoryPreferences": []}}, False),  # wrong shape: fail closed
    ({"consent": "yes"}, False),
    ({"consentManagement": {"provider": "custom"}}, True),  # neither list: no consent data
    ({"consentManagement": {"allowedConsentIds": "A,B"}}, False),  # not a list: fail closed
    ({"consentManagement": {"allowedConsentIds": ["A", "B"], "resolutionStrategy": "AND"}}, True),
    ({"consentManagement": {"allowedConsentIds": ["A", "B"], "deniedConsentIds": ["B"]}}, False),
    ({"consentManagement": {"allowedConsentIds": ["B"], "resolutionStrategy": "or"}}, True),
    ({"consentManagement": {"allowedConsentIds": ["B"], "resolutionStrategy": "xor"}}, False),  # unknown: and
])
def test_consent_rules(context: dict[str, Any], expected: bool) -> None:
    assert consented(with_context(**context), frozenset({"A", "B"})) is expected


def test_no_categories_sends_everything_and_says_whether_consent_was_carried() -> None:
    refused = with_context(consent={"categoryPreferences": {"A": False}})
    assert consented(refused, frozenset())
    assert carries_consent(refused)
    assert carries_consent(with_context(consentManagement={}))
    assert not carries_consent(with_context(ip="1.2.3.4"))
    assert not carries_consent({"type": "track", "context": "not a dict"})


def test_property_rules_copy_rather_than_change_the_message() -> None:
    message = {"type": "identify", "traits": {"ssn": 1, "a": {"b": 2, "c": 3}},
               "context": {"traits": {"ssn": 1}}}
    before = copy.deepcopy(message)
    out, counts = apply_rules(message, PropertyRules(deny=frozenset({"ssn", "a.b"})))
    assert message == before
    assert out["traits"] == {"a": {"c": 3}} and out["context"]["traits"] == {}
    assert counts == {"denied_property": 3}


def test_rules_reach_into_lists_and_dotted_names() -> None:
    message = {"type": "track", "properties": {"products": [{"sku": 1, "email": "x"}, {"sku": 2}], "a.b": 1}}
    out, _ = apply_rules(message, PropertyRules(deny=frozenset({"products.email", "a.b"})))
    assert out["properties"] == {"products": [{"sku": 1}, {"sku": 2}]}


def test_allow_applies_to_track_properties_only() -> None:
    rules = PropertyRules(allow=frozenset({"plan"}))
    out, counts = apply_rules({"type": "track", "properties": {"plan": 1, "x": 2}, "traits": {"x": 1}}, rules)
    assert out["properties"] == {"plan": 1} and out["traits"] == {"x": 1}
    assert counts == {"not_allowed_property": 1}


def test_hash_is_hmac_sha256_of_the_text_and_null_stays_null() -> None:
    key = b"k"
    assert keyed_hash("ada", key) == hmac.new(key, b"ada", hashlib.sha256).hexdigest()
    assert keyed_hash(42, key) == hmac.new(key, b"42", hashlib.sha256).hexdigest()
    assert keyed_hash(None, key) is None
    assert "secret-key" not in repr(PropertyRules(hash=frozenset({"e"}), hash_key=b"secret-key"))


def test_untouched_message_is_returned_as_is() -> None:
    message = {"type": "track", "properties": {"plan": 1}}
    assert apply_rules(message, PropertyRules(deny=frozenset({"ssn"})))[0] is message


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                  max_size=3), max_leaves=20))
def test_rules_never_raise_and_never_leave_a_denied_name(value: Any) -> None:
    message = {"type": "track", "properties": {"ssn": value, "keep": value}, "traits": value}
    out, _ = apply_rules(message, PropertyRules(deny=frozenset({"ssn", "keep.ssn"}), hash=frozenset({"h"})))
    assert "ssn" not in out["properties"]


def test_settings_parse_the_rules_with_the_list_parser(tmp_path: Any) -> None:
    listed = tmp_path / "hash.txt"
    listed.write_text("email  # joins\nphone\n")
    settings = config.load({"track_secret": "s" * 10, "hash_properties": f"@{listed}", "hash_key": "k-1",
                            "consent_categories": "Analytics, Ads", "deny_properties": "ssn,a.b"}, environ={})
    assert settings.properties.hash == {"email", "phone"} and settings.properties.hash_key == b"k-1"
    assert settings.consent_categories == {"Analytics", "Ads"}
    bad = config.load({"track_secret": "s" * 10, "deny_properties": "a..b"}, environ={})
    assert bad.problems and "PENDO_DENY_PROPERTIES" in bad.problems[0]
    assert "k-1" not in repr(settings) and "k-1" not in str(settings.describe())


@pytest.mark.parametrize(("kind", "body", "ok"), [
    ("track", {"event": "E", "visitorId": "v", "timestamp": 1, "properties": {"a b": 1}}, True),
    ("track", {"event": "", "visitorId": "v", "timestamp": 1}, False),
    ("track", {"event": "E", "visitorId": "v" * 300, "timestamp": 1}, False),
    ("track", {"event": "E", "visitorId": "v", "timestamp": "now"}, False),
    ("visitor", {"plan": "pro"}, True),
    ("visitor", {}, False),
    ("webhook", {"type": "track", "userId": "u"}, True),
    ("webhook", ["not", "a", "dict"], False),
])
def test_recheck(kind: str, body: Any, ok: bool) -> None:
    checked, _ = rechecked(kind, body)
    assert (checked is not None) is ok
    if kind == "track" and ok:
        assert checked == {"type": "track", "event": "E", "visitorId": "v", "timestamp": 1,
                           "properties": {"a_b": 1}, "context": {}}
