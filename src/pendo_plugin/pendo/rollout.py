"""Which messages go to Pendo: the pure rollout decision.

No I/O, no logging, no mutable global state: :func:`decide` is a function of one message, one
:class:`RolloutRules` value and the ids the caller already resolved, so it is cheap to call once
per message and trivial to test. The precedence is documented in ``docs/rollout.md``:

1. kill switch (``enabled``)            -> ``off_kill_switch``
2. Segment's ``integrations`` switch    -> ``off_integrations``
3. ``calls`` (message ``type``)         -> ``off_calls``
4. no visitor id and no account id      -> ``off_no_id``
5. deny lists (visitor, account, event) -> ``off:deny_*``; then ``allow_events`` restricts track
   events to its names                  -> ``off_not_allowed_event``
6. allow lists (visitor, account)       -> ``in_allow_visitor`` / ``in_allow_account``
7. an external provider's answer        -> ``in_provider`` / ``off_provider`` (None falls through)
8. the percent bucket of the rollout unit -> ``in_percent`` / ``off_percent``
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BUCKETS",
    "CALLS",
    "REASONS",
    "UNITS",
    "Decision",
    "RolloutRules",
    "bucket",
    "decide",
    "in_percent",
    "integrations_allow",
    "threshold",
]

BUCKETS = 10_000
"""Number of buckets: one bucket is 0.01 % of the rollout units."""

CALLS: frozenset[str] = frozenset({"identify", "group", "track"})
"""The Segment calls Pendo can receive; ``page``, ``screen`` and ``alias`` stay Segment-only."""

UNITS: tuple[str, ...] = ("visitor", "account")
"""The rollout units: bucket by Pendo visitor id, or by account id (all users of one account together)."""

ID_LIST_FIELDS: tuple[str, ...] = (
    "allow_visitors",
    "deny_visitors",
    "allow_accounts",
    "deny_accounts",
    "allow_events",
    "deny_events",
)
"""The allow/deny list fields of :class:`RolloutRules` (and the settings of the same names)."""

_LIST_FIELDS = ("calls", *ID_LIST_FIELDS)


@dataclass(frozen=True, slots=True)
class RolloutRules:
    """The built-in rollout flags, one immutable value (build a new one to change them).

    Every set-valued field accepts any iterable of strings and is stored as a ``frozenset``.
    Out-of-range values raise ``ValueError`` naming the environment variable, so the configuration
    layer can log one clear line and keep the plugin off.
    """

    enabled: bool = True
    """``PENDO_ENABLED``: the master switch; False sends nothing (kill switch)."""
    percent: float = 100.0
    """``PENDO_ROLLOUT_PERCENT``: 0-100, rounded to steps of 0.01; raising it only adds units."""
    unit: Literal["visitor", "account"] = "visitor"
    """``PENDO_ROLLOUT_UNIT``: bucket by visitor id, or by account id (B2B)."""
    salt: str = "pendo-rollout-v1"
    """``PENDO_ROLLOUT_SALT``: changing it reshuffles who is in; keep it for the whole rollout."""
    calls: frozenset[str] = CALLS
    """``PENDO_CALLS``: which of ``identify``, ``group``, ``track`` are written to Pendo."""
    allow_visitors: frozenset[str] = frozenset()
    """Pendo visitor ids that are in regardless of percent and provider (deny lists still win)."""
    deny_visitors: frozenset[str] = frozenset()
    """Pendo visitor ids that are never sent."""
    allow_accounts: frozenset[str] = frozenset()
    """Account ids that are in regardless of percent and provider (deny lists still win)."""
    deny_accounts: frozenset[str] = frozenset()
    """Account ids that are never sent."""
    allow_events: frozenset[str] = frozenset()
    """When non-empty, the only track event names sent; the others are ``off_not_allowed_event``."""
    deny_events: frozenset[str] = frozenset()
    """Track event names that are never sent."""

    def __post_init__(self) -> None:
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, frozenset):
                object.__setattr__(self, name, _frozen(name, value))
        if not 0.0 <= self.percent <= 100.0:  # also rejects NaN
            raise ValueError(f"PENDO_ROLLOUT_PERCENT must be between 0 and 100, got {self.percent!r}")
        if self.unit not in UNITS:
            raise ValueError(f"PENDO_ROLLOUT_UNIT must be 'visitor' or 'account', got {self.unit!r}")
        unknown = self.calls - CALLS
        if unknown:
            raise ValueError(
                f"PENDO_CALLS may only name identify, group, track; unknown: {', '.join(sorted(unknown))}"
            )


def _frozen(name: str, value: Iterable[str]) -> frozenset[str]:
    """``value`` as a frozenset, refusing a bare string (it would become a set of characters)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"RolloutRules.{name} must be a collection of strings, not a single string")
    return frozenset(value)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one message goes to Pendo, and why (``reason`` is a stable stats counter suffix)."""

    send: bool
    reason: str


IN_PERCENT = Decision(True, "in_percent")
IN_ALLOW_VISITOR = Decision(True, "in_allow_visitor")
IN_ALLOW_ACCOUNT = Decision(True, "in_allow_account")
# In the contract but never returned: allow_events only restricts track events (docs/rollout.md).
IN_ALLOW_EVENT = Decision(True, "in_allow_event")
IN_PROVIDER = Decision(True, "in_provider")
OFF_KILL_SWITCH = Decision(False, "off_kill_switch")
OFF_INTEGRATIONS = Decision(False, "off_integrations")
OFF_CALLS = Decision(False, "off_calls")
OFF_DENY_VISITOR = Decision(False, "off_deny_visitor")
OFF_DENY_ACCOUNT = Decision(False, "off_deny_account")
OFF_DENY_EVENT = Decision(False, "off_deny_event")
OFF_NOT_ALLOWED_EVENT = Decision(False, "off_not_allowed_event")
OFF_PERCENT = Decision(False, "off_percent")
OFF_PROVIDER = Decision(False, "off_provider")
OFF_NO_ID = Decision(False, "off_no_id")

REASONS: frozenset[str] = frozenset(
    d.reason
    for d in (
        IN_PERCENT,
        IN_ALLOW_VISITOR,
        IN_ALLOW_ACCOUNT,
        IN_PROVIDER,
        OFF_KILL_SWITCH,
        OFF_INTEGRATIONS,
        OFF_CALLS,
        OFF_DENY_VISITOR,
        OFF_DENY_ACCOUNT,
        OFF_DENY_EVENT,
        OFF_NOT_ALLOWED_EVENT,
        OFF_PERCENT,
        OFF_PROVIDER,
        OFF_NO_ID,
    )
)
"""Every reason :func:`decide` may return (pre-register stats counters with it)."""


def _switched_on(value: Any) -> bool:
    """One ``integrations`` value: a dict (destination options) counts as enabled."""
    return True if isinstance(value, Mapping) else bool(value)


def integrations_allow(integrations: Mapping[str, Any] | None) -> bool:
    """Segment's per-message switch: False for ``{"Pendo": False}``, or ``{"All": False}`` without
    ``"Pendo": True``; True otherwise. ``all`` and ``pendo`` (lower case) are accepted too."""
    if not integrations or not isinstance(integrations, Mapping):
        return True
    pendo = integrations.get("Pendo", integrations.get("pendo"))
    if pendo is not None:
        return _switched_on(pendo)
    everything = integrations.get("All", integrations.get("all"))
    return True if everything is None else _switched_on(everything)


def bucket(unit_id: str, salt: str) -> int:
    """The bucket 0..9999 of ``unit_id``: the first 8 bytes of ``sha256(f"{salt}:{unit_id}")`` (UTF-8),
    read big-endian, modulo 10000. Stable across processes, machines and Python versions."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def threshold(percent: float) -> int:
    """How many of the 10000 buckets are in at ``percent`` (rounded to 0.01, clamped to 0..10000)."""
    return min(BUCKETS, max(0, round(percent * 100)))


def in_percent(unit_id: str, percent: float, salt: str) -> bool:
    """True when ``unit_id``'s bucket is below ``percent``'s threshold; raising percent only adds ids."""
    return bucket(unit_id, salt) < threshold(percent)


def _percent_decision(unit_id: str, rules: RolloutRules) -> Decision:
    """The last rule: the bucket of the rollout unit, hashing only when 0 < percent < 100."""
    limit = threshold(rules.percent)
    if limit >= BUCKETS:
        return IN_PERCENT
    if limit <= 0:
        return OFF_PERCENT
    return IN_PERCENT if bucket(unit_id, rules.salt) < limit else OFF_PERCENT


def decide(
    message: Mapping[str, Any],
    rules: RolloutRules,
    *,
    visitor_id: str | None,
    account_id: str | None,
    provider_answer: bool | None = None,
) -> Decision:
    """Whether ``message`` goes to Pendo under ``rules``; the first matching rule wins.

    ``visitor_id`` and ``account_id`` are the Pendo ids the caller resolved (empty means unknown);
    ``provider_answer`` is an external flag provider's True/False, or None to let the percent decide.
    With ``unit="account"`` and no account id, the visitor id is bucketed instead (see docs).
    """
    if not rules.enabled:
        return OFF_KILL_SWITCH
    integrations = message.get("integrations")
    if integrations and not integrations_allow(integrations):  # Segment's client sends {} by default
        return OFF_INTEGRATIONS
    call = message.get("type")
    if call not in rules.calls:
        return OFF_CALLS
    if not visitor_id and not account_id:
        return OFF_NO_ID
    event = message.get("event") if call == "track" else None
    listed = _lists_decision(rules, visitor_id, account_id, event, is_track=call == "track")
    if listed is not None:
        return listed
    if provider_answer is not None:
        return IN_PROVIDER if provider_answer else OFF_PROVIDER
    if rules.percent >= 100.0:  # the default: every bucket is in, nothing to compute
        return IN_PERCENT
    if rules.unit == "account" and account_id:
        return _percent_decision(account_id, rules)
    return _percent_decision(visitor_id or account_id or "", rules)


def _lists_decision(
    rules: RolloutRules, visitor_id: str | None, account_id: str | None, event: Any, *, is_track: bool
) -> Decision | None:
    """Deny lists, then the ``allow_events`` restriction, then the allow lists; None if none applies."""
    if visitor_id and visitor_id in rules.deny_visitors:
        return OFF_DENY_VISITOR
    if account_id and account_id in rules.deny_accounts:
        return OFF_DENY_ACCOUNT
    if is_track:
        if isinstance(event, str) and event in rules.deny_events:
            return OFF_DENY_EVENT
        if rules.allow_events and not (isinstance(event, str) and event in rules.allow_events):
            return OFF_NOT_ALLOWED_EVENT
    if visitor_id and visitor_id in rules.allow_visitors:
        return IN_ALLOW_VISITOR
    if account_id and account_id in rules.allow_accounts:
        return IN_ALLOW_ACCOUNT
    return None
