"""OpenFeature as the rollout provider: one boolean flag decides, per message, whether it goes to Pendo.

Needs the ``openfeature`` extra (``pip install 'segment-pendo-plugin[openfeature]'``) and a provider
set with ``openfeature.api.set_provider(...)``. Register the adapter once at start-up::

    from pendo_plugin.segment.bridge import register_plugin
    from pendo_plugin.integrations.openfeature import OpenFeatureRollout

    register_plugin(OpenFeatureRollout(flag_key="pendo-rollout"))

The evaluation context's ``targeting_key`` is the Pendo visitor id; its attributes are ``call``
(identify, group, track), ``event`` (track only) and ``account_id`` (the account id the message itself
carries: ``context.groupId``, ``properties.groupId``/``accountId``, or a group call's ``groupId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason

from pendo_plugin import counters
from pendo_plugin.pendo.translate import account_id_of, visitor_id_of
from pendo_plugin.segment.hookspecs import hookimpl

__all__ = ["PROVIDER_ERROR", "OpenFeatureRollout", "evaluation_context"]

PROVIDER_ERROR = "rollout:provider_error"
"""The stats counter incremented each time the provider errs or raises."""

_NO_ANSWER = frozenset({Reason.DEFAULT, Reason.DISABLED})
"""Reasons that mean "no targeting happened": the value is only the default we passed in."""


class OpenFeatureRollout:
    """A ``pendo_rollout`` plugin answering from an OpenFeature boolean flag.

    ``client``: an OpenFeature client (default: ``openfeature.api.get_client()``, the default provider).
    ``flag_key``: the boolean flag to evaluate. ``default``: the answer when the provider has none
    (error, ``DEFAULT`` or ``DISABLED`` reason): None leaves the decision to the built-in rules,
    False fails closed, True fails open.
    """

    def __init__(
        self,
        client: OpenFeatureClient | None = None,
        flag_key: str = "pendo-rollout",
        default: bool | None = None,
    ) -> None:
        self.client = client if client is not None else api.get_client()
        self.flag_key = flag_key
        self.default = default

    def __repr__(self) -> str:
        return f"OpenFeatureRollout(flag_key={self.flag_key!r}, default={self.default!r})"

    @hookimpl
    def pendo_rollout(self, message: Mapping[str, Any]) -> bool | None:
        """True or False from the flag; ``default`` when the provider errs, raises or has no answer."""
        try:
            details = self.client.get_boolean_details(
                self.flag_key, bool(self.default), evaluation_context(message)
            )
        except Exception:  # a provider or hook bug must never reach the app
            counters.record("rollout", "provider_error")
            return self.default
        return self._answer(details)

    def _answer(self, details: FlagEvaluationDetails[bool]) -> bool | None:
        if details.error_code is not None or details.reason == Reason.ERROR:
            counters.record("rollout", "provider_error")
            return self.default
        if details.reason in _NO_ANSWER:
            return self.default
        return bool(details.value)


def evaluation_context(message: Mapping[str, Any]) -> EvaluationContext:
    """The OpenFeature context of one Segment message: visitor id as targeting key, plus call,
    event and account id attributes (each only when the message has it)."""
    call = message.get("type")
    attributes: dict[str, Any] = {"call": str(call)}
    event = message.get("event")
    if call == "track" and isinstance(event, str):
        attributes["event"] = event
    account_id = account_id_of(message)
    if account_id is not None:
        attributes["account_id"] = account_id
    return EvaluationContext(targeting_key=visitor_id_of(message), attributes=attributes)
