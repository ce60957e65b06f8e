"""The OpenFeature adapter, against OpenFeature's real in-memory provider."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pluggy
import pytest

pytest.importorskip("openfeature")

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from pendo_plugin.counters import snapshot
from pendo_plugin.integrations.openfeature import PROVIDER_ERROR, OpenFeatureRollout, evaluation_context
from pendo_plugin.pendo.rollout import RolloutRules, decide
from pendo_plugin.segment import hookspecs

_domains = itertools.count()
TRACK = {"type": "track", "userId": "u1", "event": "Clicked", "context": {"groupId": "acme"}}


@pytest.fixture(autouse=True)
def _clean_openfeature() -> Iterator[None]:
    yield
    api.clear_providers()


def errors() -> int:
    return snapshot().get(PROVIDER_ERROR, 0)


def client_for(provider: Any) -> OpenFeatureClient:
    """A client bound to ``provider`` under its own domain, leaving the global default alone."""
    domain = f"pendo-test-{next(_domains)}"
    api.set_provider(provider, domain=domain)
    return api.get_client(domain=domain)


def flag(value: bool, **kwargs: Any) -> InMemoryFlag[bool]:
    return InMemoryFlag("on" if value else "off", {"on": True, "off": False}, **kwargs)


def rollout_with(flags: dict[str, InMemoryFlag[Any]], **kwargs: Any) -> OpenFeatureRollout:
    return OpenFeatureRollout(client=client_for(InMemoryProvider(flags)), **kwargs)


class RaisingProvider(InMemoryProvider):
    def resolve_boolean_details(self, *args: Any, **kwargs: Any) -> FlagResolutionDetails[bool]:
        raise RuntimeError("flag service down")


class RaisingClient:
    def get_boolean_details(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in a hook")


@pytest.mark.parametrize("value", [True, False])
def test_flag_value_is_the_answer(value: bool) -> None:
    before = errors()
    assert rollout_with({"pendo-rollout": flag(value)}).pendo_rollout(TRACK) is value
    assert errors() == before


def test_custom_flag_key() -> None:
    rollout = rollout_with({"pendo-dual-write": flag(True)}, flag_key="pendo-dual-write")
    assert rollout.pendo_rollout(TRACK) is True


def test_missing_flag_is_no_answer_and_counted() -> None:
    before = errors()
    assert rollout_with({}).pendo_rollout(TRACK) is None
    assert errors() == before + 1


def test_provider_raising_is_no_answer_and_counted() -> None:
    before = errors()
    rollout = OpenFeatureRollout(client=client_for(RaisingProvider({})))
    assert rollout.pendo_rollout(TRACK) is None
    assert rollout.pendo_rollout(TRACK) is None
    assert errors() == before + 2


def test_client_raising_is_no_answer_and_counted() -> None:
    before = errors()
    assert OpenFeatureRollout(client=RaisingClient()).pendo_rollout(TRACK) is None  # type: ignore[arg-type]
    assert errors() == before + 1


@pytest.mark.parametrize("reason", [Reason.DISABLED, Reason.DEFAULT, "DEFAULT"])
def test_disabled_or_default_reason_is_no_answer_not_an_error(reason: str) -> None:
    def evaluator(flag: InMemoryFlag[bool], context: EvaluationContext) -> FlagResolutionDetails[bool]:
        return FlagResolutionDetails(value=True, reason=reason)

    before = errors()
    assert (
        rollout_with({"pendo-rollout": flag(True, context_evaluator=evaluator)}).pendo_rollout(TRACK) is None
    )
    assert errors() == before


def test_no_provider_set_is_no_answer() -> None:
    assert OpenFeatureRollout().pendo_rollout(TRACK) is None  # the default no-op provider: reason DEFAULT


@pytest.mark.parametrize("default", [True, False])
def test_default_is_returned_when_there_is_no_answer(default: bool) -> None:
    assert rollout_with({}, default=default).pendo_rollout(TRACK) is default
    assert (
        OpenFeatureRollout(client=client_for(RaisingProvider({})), default=default).pendo_rollout(TRACK)
        is default
    )


def test_evaluation_context_sent_to_the_provider() -> None:
    seen: list[EvaluationContext] = []

    def evaluator(flag: InMemoryFlag[bool], context: EvaluationContext) -> FlagResolutionDetails[bool]:
        seen.append(context)
        return FlagResolutionDetails(
            value=context.attributes.get("account_id") == "acme", reason=Reason.TARGETING_MATCH
        )

    rollout = rollout_with({"pendo-rollout": flag(False, context_evaluator=evaluator)})
    assert rollout.pendo_rollout(TRACK) is True
    assert rollout.pendo_rollout({"type": "identify", "anonymousId": "a1"}) is False
    assert seen[0].targeting_key == "u1"
    assert dict(seen[0].attributes) == {"call": "track", "event": "Clicked", "account_id": "acme"}
    assert seen[1].targeting_key == "_PENDO_T_a1"
    assert dict(seen[1].attributes) == {"call": "identify"}


def test_evaluation_context_edge_cases() -> None:
    group = evaluation_context({"type": "group", "userId": 42, "groupId": "g1", "event": "x"})
    assert group.targeting_key == "42"
    assert group.attributes == {"call": "group", "account_id": "g1"}
    assert evaluation_context({"type": "track", "userId": "", "anonymousId": ""}).targeting_key is None
    assert "account_id" not in evaluation_context({"type": "track", "context": {"groupId": ""}}).attributes
    with_property = evaluation_context({"type": "track", "userId": "u", "properties": {"accountId": "a9"}})
    assert with_property.attributes["account_id"] == "a9"


def test_registered_as_a_pluggy_hook() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(rollout_with({"pendo-rollout": flag(False)}))
    assert manager.hook.pendo_rollout(message=TRACK) is False


def test_no_answer_lets_the_built_in_rules_decide() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(rollout_with({}))
    answer = manager.hook.pendo_rollout(message=TRACK)
    assert answer is None
    decision = decide(
        TRACK, RolloutRules(percent=0), visitor_id="u1", account_id="acme", provider_answer=answer
    )
    assert decision.reason == "off_percent"
