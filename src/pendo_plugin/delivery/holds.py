"""Whether one payload may be sent now: the one check applied to every payload before it is sent and to
what already waits in memory when the settings change (``Dispatcher.recheck``).

:meth:`Settings.hold_reason` covers the kill switch, bad settings, a missing secret or key, and shadow
mode. On top of it the rollout flags are decided again for the payload, so a lowered percentage or a
deny list set for the fleet holds what was routed before the change: ``rollout``. The decision is taken
again only where the payload alone names its rollout unit exactly (a track event, a webhook message, a
visitor row bucketed by visitor); an account row is checked against the account deny list only, and
nothing is decided again while a ``pendo_rollout`` provider is installed (it answers per message, which
a payload no longer is). A held payload is kept (spool, stream) and sent after the flags clear.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin.config import Settings
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.pendo.rollout import CALLS, RolloutRules, decide
from pendo_plugin.pendo.translate import account_id_of, visitor_id_of
from pendo_plugin.segment import plugins


def _narrowed(rules: RolloutRules) -> bool:
    """Whether ``rules`` keep anything out beyond the kill switch (the common case: they do not)."""
    return (
        rules.percent < 100.0
        or rules.calls != CALLS
        or bool(rules.deny_visitors or rules.deny_accounts or rules.deny_events or rules.allow_events)
    )


def _decided_off(payload: Payload, rules: RolloutRules) -> bool:
    body: Any = payload.body
    if payload.kind == "track":
        message = {"type": "track", "event": body.get("event")}
        visitor, account = body.get("visitorId"), body.get("accountId")
    elif payload.kind == "webhook":
        message, visitor, account = body, visitor_id_of(body), account_id_of(body)
    elif payload.kind == "visitor" and rules.unit == "visitor":
        message, visitor, account = {"type": "identify"}, payload.row_id, None
    elif payload.kind == "visitor":
        return "identify" not in rules.calls or payload.row_id in rules.deny_visitors
    else:
        return "group" not in rules.calls or payload.row_id in rules.deny_accounts
    visitor = visitor if isinstance(visitor, str) else None
    account = account if isinstance(account, str) else None
    return not decide(message, rules, visitor_id=visitor, account_id=account).send


def hold_reason(payload: Payload, settings: Settings) -> str | None:
    """Why ``payload`` must not be sent from here now (``off``, ``no_secret``, ``shadow``, ``rollout``),
    or None when it may."""
    reason = settings.hold_reason(payload.route)
    if reason is not None:
        return reason
    rules = settings.rollout
    if not _narrowed(rules) or plugins.implemented("pendo_rollout"):
        return None
    return "rollout" if _decided_off(payload, rules) else None
