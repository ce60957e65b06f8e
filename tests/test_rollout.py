"""The pure rollout decision: buckets, percent, lists, switches and their precedence."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pendo_plugin.pendo.rollout import (
    BUCKETS,
    REASONS,
    Decision,
    RolloutRules,
    bucket,
    decide,
    in_percent,
    integrations_allow,
    threshold,
)

SALT = "pendo-rollout-v1"
IDS = [f"user-{n}" for n in range(10_000)]


def reference_bucket(unit_id: str, salt: str) -> int:
    """The documented formula, written out independently of the module."""
    digest = hashlib.sha256((salt + ":" + unit_id).encode("utf-8")).digest()
    return int.from_bytes(digest[0:8], byteorder="big") % 10000


def msg(call: str = "track", **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": call, "userId": "u1", **fields}
    if call == "track":
        message.setdefault("event", "Clicked")
    return message


def run(message: dict[str, Any], rules: RolloutRules, **ids: Any) -> Decision:
    ids.setdefault("visitor_id", "u1")
    ids.setdefault("account_id", None)
    return decide(message, rules, **ids)


def visitor_in(percent: float, salt: str = SALT) -> str:
    return next(i for i in IDS if in_percent(i, percent, salt))


def visitor_out(percent: float, salt: str = SALT) -> str:
    return next(i for i in IDS if not in_percent(i, percent, salt))


# -- bucket ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit_id", "salt", "expected"),
    [
        ("user-1", SALT, 2858),
        ("_PENDO_T_anon-42", SALT, 9132),
        ("acme-corp", SALT, 2988),
        ("user-1", "other-salt", 3722),
        ("ünïcødé", SALT, 3201),
    ],
)
def test_bucket_pinned_values(unit_id: str, salt: str, expected: int) -> None:
    assert reference_bucket(unit_id, salt) == expected
    assert bucket(unit_id, salt) == expected


@given(st.text(), st.text())
def test_bucket_matches_reference_formula(unit_id: str, salt: str) -> None:
    assert bucket(unit_id, salt) == reference_bucket(unit_id, salt)
    assert 0 <= bucket(unit_id, salt) < BUCKETS


def test_distribution_30_percent() -> None:
    assert 2_700 <= sum(in_percent(i, 30, SALT) for i in IDS) <= 3_300


def test_salt_reshuffles() -> None:
    a = {i for i in IDS if in_percent(i, 50, SALT)}
    b = {i for i in IDS if in_percent(i, 50, "pendo-rollout-v2")}
    assert 0.4 < len(a & b) / len(a) < 0.6


def test_monotonic_30_subset_of_60() -> None:
    at_30 = {i for i in IDS if in_percent(i, 30, SALT)}
    at_60 = {i for i in IDS if in_percent(i, 60, SALT)}
    assert at_30 < at_60


@given(
    st.text(max_size=40),
    st.floats(0, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
)
def test_monotonic_property(unit_id: str, p1: float, p2: float) -> None:
    low, high = sorted((p1, p2))
    if in_percent(unit_id, low, SALT):
        assert in_percent(unit_id, high, SALT)


def test_granularity_one_hundredth_percent() -> None:
    assert threshold(0.01) == 1
    assert threshold(12.34) == 1234
    assert threshold(0) == 0
    assert threshold(100) == BUCKETS
    zero = next(i for i in (f"x{n}" for n in range(200_000)) if bucket(i, SALT) == 0)
    one = next(i for i in (f"x{n}" for n in range(200_000)) if bucket(i, SALT) == 1)
    assert in_percent(zero, 0.01, SALT) and not in_percent(one, 0.01, SALT)
    assert in_percent(one, 0.02, SALT)
    assert not in_percent(zero, 0, SALT)


def test_percent_edges_all_and_none() -> None:
    assert all(in_percent(i, 100, SALT) for i in IDS[:500])
    assert not any(in_percent(i, 0, SALT) for i in IDS[:500])


# -- integrations switch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("integrations", "allowed"),
    [
        (None, True),
        ({}, True),
        ({"Pendo": False}, False),
        ({"Pendo": True}, True),
        ({"All": False}, False),
        ({"all": False}, False),
        ({"All": False, "Pendo": True}, True),
        ({"all": False, "Pendo": True}, True),
        ({"All": True, "Pendo": False}, False),
        ({"All": False, "Pendo": {"apiKey": "x"}}, True),
        ({"Pendo": {}}, True),
        ({"All": {}}, True),
        ({"Amplitude": False}, True),
        ({"pendo": False}, False),
    ],
)
def test_integrations_allow(integrations: dict[str, Any] | None, allowed: bool) -> None:
    assert integrations_allow(integrations) is allowed


def test_integrations_switch_in_decide() -> None:
    assert run(msg(integrations={"Pendo": False}), RolloutRules()) == Decision(False, "off_integrations")
    assert run(msg(integrations={"All": False, "Pendo": True}), RolloutRules()).send


# -- rules and precedence ---------------------------------------------------------------------------


def test_default_rules_send_everything() -> None:
    for call in ("identify", "group", "track"):
        assert run(msg(call), RolloutRules()) == Decision(True, "in_percent")


def test_kill_switch_beats_everything() -> None:
    rules = RolloutRules(enabled=False, allow_visitors=frozenset({"u1"}))
    assert run(msg(), rules, provider_answer=True) == Decision(False, "off_kill_switch")


def test_integrations_beat_allow_lists_and_provider() -> None:
    rules = RolloutRules(allow_visitors=frozenset({"u1"}))
    decision = run(msg(integrations={"Pendo": False}), rules, provider_answer=True)
    assert decision.reason == "off_integrations"


@pytest.mark.parametrize("call", ["page", "screen", "alias", None])
def test_calls_outside_pendo_are_off(call: str | None) -> None:
    assert run({"type": call, "userId": "u1"}, RolloutRules()).reason == "off_calls"


def test_calls_filter() -> None:
    rules = RolloutRules(calls=frozenset({"identify", "group"}), allow_visitors=frozenset({"u1"}))
    assert run(msg("track"), rules).reason == "off_calls"
    assert run(msg("identify"), rules).send


def test_no_id() -> None:
    assert run(msg(), RolloutRules(), visitor_id=None) == Decision(False, "off_no_id")
    assert run(msg(), RolloutRules(), visitor_id="", account_id="").reason == "off_no_id"
    assert run(msg("group"), RolloutRules(), visitor_id=None, account_id="acme").send


def test_deny_lists() -> None:
    assert run(msg(), RolloutRules(deny_visitors=frozenset({"u1"}))).reason == "off_deny_visitor"
    rules = RolloutRules(deny_accounts=frozenset({"acme"}))
    assert run(msg(), rules, account_id="acme").reason == "off_deny_account"
    assert run(msg(), rules, account_id="other").send
    assert (
        run(msg(event="Secret"), RolloutRules(deny_events=frozenset({"Secret"}))).reason == "off_deny_event"
    )


def test_deny_wins_over_allow() -> None:
    both = RolloutRules(allow_visitors=frozenset({"u1"}), deny_visitors=frozenset({"u1"}))
    assert run(msg(), both, provider_answer=True).reason == "off_deny_visitor"
    rules = RolloutRules(allow_visitors=frozenset({"u1"}), deny_accounts=frozenset({"acme"}))
    assert run(msg(), rules, account_id="acme").reason == "off_deny_account"
    rules = RolloutRules(allow_accounts=frozenset({"acme"}), deny_visitors=frozenset({"u1"}))
    assert run(msg(), rules, account_id="acme").reason == "off_deny_visitor"
    rules = RolloutRules(allow_events=frozenset({"E"}), deny_events=frozenset({"E"}))
    assert run(msg(event="E"), rules).reason == "off_deny_event"


def test_allow_lists_beat_percent_and_provider() -> None:
    rules = RolloutRules(percent=0, allow_visitors=frozenset({"u1"}), allow_accounts=frozenset({"acme"}))
    assert run(msg(), rules, provider_answer=False) == Decision(True, "in_allow_visitor")
    assert run(msg(), rules, visitor_id="u2", account_id="acme") == Decision(True, "in_allow_account")
    assert run(msg(), rules, visitor_id="u2", account_id="other") == Decision(False, "off_percent")


def test_allow_events_restrict_track_only() -> None:
    rules = RolloutRules(allow_events=frozenset({"Signed Up"}))
    assert run(msg(event="Signed Up"), rules) == Decision(True, "in_percent")
    assert run(msg(event="Clicked"), rules) == Decision(False, "off_not_allowed_event")
    assert run({"type": "track", "userId": "u1"}, rules).reason == "off_not_allowed_event"
    assert run(msg("identify"), rules).send
    assert run(msg("group", event="Clicked"), rules).send


def test_allow_events_do_not_bypass_percent() -> None:
    rules = RolloutRules(percent=0, allow_events=frozenset({"Signed Up"}))
    assert run(msg(event="Signed Up"), rules) == Decision(False, "off_percent")


def test_allow_events_restriction_applies_to_allowed_visitors() -> None:
    rules = RolloutRules(allow_events=frozenset({"Signed Up"}), allow_visitors=frozenset({"u1"}))
    assert run(msg(event="Clicked"), rules).reason == "off_not_allowed_event"
    assert run(msg(event="Signed Up"), rules).reason == "in_allow_visitor"


def test_event_lists_ignore_non_track_messages() -> None:
    rules = RolloutRules(deny_events=frozenset({"Clicked"}))
    assert run(msg("identify", event="Clicked"), rules).send


def test_provider_answer() -> None:
    rules = RolloutRules(percent=0)
    assert run(msg(), rules, provider_answer=True) == Decision(True, "in_provider")
    assert run(msg(), RolloutRules(), provider_answer=False) == Decision(False, "off_provider")
    assert run(msg(), rules, provider_answer=None) == Decision(False, "off_percent")


def test_percent_uses_visitor_bucket() -> None:
    rules = RolloutRules(percent=30)
    inside, outside = visitor_in(30), visitor_out(30)
    assert run(msg(), rules, visitor_id=inside) == Decision(True, "in_percent")
    assert run(msg(), rules, visitor_id=outside) == Decision(False, "off_percent")


def test_custom_salt_is_used() -> None:
    rules = RolloutRules(percent=30, salt="s2")
    for visitor in IDS[:200]:
        assert run(msg(), rules, visitor_id=visitor).send is in_percent(visitor, 30, "s2")


# -- account unit ---------------------------------------------------------------------------------


def test_account_unit_same_decision_for_all_visitors_of_an_account() -> None:
    rules = RolloutRules(percent=50, unit="account")
    sends = set()
    for account in (f"acct-{n}" for n in range(50)):
        decisions = {
            run(msg(call), rules, visitor_id=visitor, account_id=account)
            for call in ("identify", "track")
            for visitor in IDS[:40]
        }
        assert len(decisions) == 1
        (decision,) = decisions
        assert decision.send is in_percent(account, 50, SALT)
        sends.add(decision.send)
    assert sends == {True, False}


def test_account_unit_falls_back_to_visitor_without_account() -> None:
    rules = RolloutRules(percent=30, unit="account")
    assert run(msg(), rules, visitor_id=visitor_in(30), account_id=None).send
    assert not run(msg(), rules, visitor_id=visitor_out(30), account_id=None).send


def test_visitor_unit_without_visitor_uses_account() -> None:
    rules = RolloutRules(percent=30)
    account = visitor_in(30)
    assert run(msg("group"), rules, visitor_id=None, account_id=account).send


# -- the value objects ------------------------------------------------------------------------------


def test_rules_are_immutable_and_coerce_lists() -> None:
    rules = RolloutRules(allow_visitors=["a", "b"], calls={"track"})  # type: ignore[arg-type]
    assert rules.allow_visitors == frozenset({"a", "b"}) and rules.calls == frozenset({"track"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.percent = 5  # type: ignore[misc]
    assert hash(rules) == hash(RolloutRules(allow_visitors=frozenset("ab"), calls=frozenset({"track"})))


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"percent": 140}, ValueError, "PENDO_ROLLOUT_PERCENT"),
        ({"percent": -1}, ValueError, "PENDO_ROLLOUT_PERCENT"),
        ({"percent": float("nan")}, ValueError, "PENDO_ROLLOUT_PERCENT"),
        ({"unit": "team"}, ValueError, "PENDO_ROLLOUT_UNIT"),
        ({"calls": frozenset({"page"})}, ValueError, "PENDO_CALLS"),
        ({"deny_events": "Clicked"}, TypeError, "deny_events"),
    ],
)
def test_rules_reject_bad_values(kwargs: dict[str, Any], error: type[Exception], names: str) -> None:
    with pytest.raises(error, match=names):
        RolloutRules(**kwargs)


EVERY_REASON = [
    (msg(), RolloutRules(), {}, "in_percent"),
    (msg(), RolloutRules(percent=0, allow_visitors=frozenset({"u1"})), {}, "in_allow_visitor"),
    (
        msg(),
        RolloutRules(percent=0, allow_accounts=frozenset({"a"})),
        {"account_id": "a"},
        "in_allow_account",
    ),
    (msg(), RolloutRules(percent=0), {"provider_answer": True}, "in_provider"),
    (msg(), RolloutRules(enabled=False), {}, "off_kill_switch"),
    (msg(integrations={"All": False}), RolloutRules(), {}, "off_integrations"),
    (msg("page"), RolloutRules(), {}, "off_calls"),
    (msg(), RolloutRules(), {"visitor_id": None}, "off_no_id"),
    (msg(), RolloutRules(deny_visitors=frozenset({"u1"})), {}, "off_deny_visitor"),
    (msg(), RolloutRules(deny_accounts=frozenset({"a"})), {"account_id": "a"}, "off_deny_account"),
    (msg(), RolloutRules(deny_events=frozenset({"Clicked"})), {}, "off_deny_event"),
    (msg(), RolloutRules(allow_events=frozenset({"Other"})), {}, "off_not_allowed_event"),
    (msg(), RolloutRules(percent=0), {}, "off_percent"),
    (msg(), RolloutRules(), {"provider_answer": False}, "off_provider"),
]


@pytest.mark.parametrize(("message", "rules", "ids", "reason"), EVERY_REASON)
def test_each_reason(message: dict[str, Any], rules: RolloutRules, ids: dict[str, Any], reason: str) -> None:
    decision = run(message, rules, **ids)
    assert decision.reason == reason
    assert decision.send is reason.startswith("in_")


def test_reasons_lists_every_reason_decide_returns() -> None:
    # "in_allow_event" is in the contract but never returned: allow_events only restricts.
    assert {reason for *_, reason in EVERY_REASON} == REASONS
    assert "in_allow_event" not in REASONS


def test_decide_is_cheap() -> None:
    rules = RolloutRules(percent=37.5, deny_visitors=frozenset({"x"}), allow_events=frozenset({"Clicked"}))
    message = msg()
    start = time.perf_counter()
    for n in range(20_000):
        decide(message, rules, visitor_id=IDS[n % 10_000], account_id="acme")
    per_call = (time.perf_counter() - start) / 20_000
    assert per_call < 50e-6  # a few microseconds in practice; generous for slow CI machines


# -- the playbook stays true --------------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "rollout.md"


@pytest.mark.skipif(not DOC.exists(), reason="docs not shipped with this checkout")
def test_doc_test_vectors_and_reasons_match_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    vectors = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| (\d+) \|$", text, flags=re.MULTILINE)
    assert len(vectors) >= 4
    for salt, unit_id, expected in vectors:
        assert bucket(unit_id, salt) == int(expected)
    for reason in REASONS:
        assert f"`{reason}`" in text


@given(st.binary(min_size=32, max_size=32))
def test_documented_two_halves_formula(digest: bytes) -> None:
    hi, lo = int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:8], "big")
    assert ((hi % 10000) * 7296 + lo) % 10000 == int.from_bytes(digest[:8], "big") % 10000
