"""From one Segment message to the payloads Pendo should get: rollout decision, then translation.

Runs in the worker thread, never on the app's. Keeps the one piece of state translation needs:
the account last seen for each visitor (bounded, least recently used dropped first).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from pendo_plugin import counters, shown
from pendo_plugin.config import Settings
from pendo_plugin.destination import privacy
from pendo_plugin.logs import log_once
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.coerce import parse_timestamp_ms
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.pendo.rollout import decide
from pendo_plugin.pendo.translate import (
    MetadataRow,
    TrackEvent,
    account_id_of,
    to_webhook_body,
    translate,
    visitor_id_of,
)
from pendo_plugin.segment import plugins

MAX_REMEMBERED_ACCOUNTS = 100_000
_CALLS = frozenset({"identify", "group", "track"})


class AccountMemory:
    """The last account seen per visitor, bounded in size."""

    def __init__(self, capacity: int = MAX_REMEMBERED_ACCOUNTS) -> None:
        self.capacity = capacity
        self._accounts: OrderedDict[str, str] = OrderedDict()

    def get(self, visitor_id: str | None) -> str | None:
        """The remembered account of ``visitor_id``, if any."""
        if visitor_id is None:
            return None
        return self._accounts.get(visitor_id)

    def remember(self, visitor_id: str, account_id: str) -> None:
        """Link ``visitor_id`` to ``account_id`` for later track calls."""
        self._accounts[visitor_id] = account_id
        self._accounts.move_to_end(visitor_id)
        if len(self._accounts) > self.capacity:
            self._accounts.popitem(last=False)


def provider_answer(message: Mapping[str, Any]) -> bool | None:
    """The external flag provider's answer through the ``pendo_rollout`` hook (errors count, then None)."""
    if not plugins.implemented("pendo_rollout"):  # the common case: no provider, no hook call
        return None
    answer = plugins.first_result("pendo_rollout", message=message)
    return None if answer is None else bool(answer)


def to_payload(item: TrackEvent | MetadataRow, stamp_ms: int) -> Payload | None:
    """The payload for one translated item (None, counted and logged, if it cannot be encoded as JSON);
    a metadata row carries its message's timestamp (``stamp_ms``, epoch ms) so the newest value of a
    field wins wherever rows are merged."""
    if isinstance(item, TrackEvent):
        return _encoded("track", payload.event, "track", item.body)
    return _encoded(item.kind, payload.metadata, item.kind, item.entity_id, item.values, stamp_ms)


def _encoded(kind: str, build: Callable[..., Payload], *args: Any) -> Payload | None:
    try:
        return build(*args)
    except (ValueError, TypeError) as exc:
        counters.record("dropped", "unserialisable", kind)
        log_once(
            f"unserialisable:{kind}",
            logging.ERROR,
            "pendo_plugin: cannot encode a %s payload: %s",
            kind,
            exc,
        )
        return None


class Router:
    """Decides and translates messages; counts every outcome in :mod:`pendo_plugin.counters`."""

    def __init__(self) -> None:
        self.accounts = AccountMemory()

    def route(
        self,
        message: Mapping[str, Any],
        settings: Settings,
        *,
        now_ms: int | None = None,
        max_age_days: float | bool | None = True,
    ) -> list[Payload]:
        """The payloads for one message (empty when skipped); never raises."""
        tally = counters.Tally()
        try:
            return self._route_one(message, settings, tally, now_ms, max_age_days)
        finally:
            tally.commit()

    def route_all(self, messages: list[Mapping[str, Any]], settings: Settings) -> list[Payload]:
        """The payloads for a slice of messages, counted once for the slice; never raises."""
        tally = counters.Tally()
        payloads: list[Payload] = []
        try:
            for message in messages:
                payloads.extend(self._route_one(message, settings, tally, None, True))
        finally:
            tally.commit()
        return payloads

    def _route_one(
        self,
        message: Mapping[str, Any],
        settings: Settings,
        tally: counters.Tally,
        now_ms: int | None,
        max_age_days: float | bool | None,
    ) -> list[Payload]:
        try:
            return self._route(message, settings, tally, now_ms, max_age_days)
        except Exception as exc:
            tally.add("dropped", "internal_error")
            log_once(
                f"route:{type(exc).__name__}",
                logging.ERROR,
                "pendo_plugin: could not translate a %s message: %s: %s",
                shown.escape(message.get("type") if type(message) is dict else "?", 40),
                type(exc).__name__,
                shown.escape(exc, 200),  # an app object's error may quote anything
            )
            return []

    def _route(
        self,
        message: Mapping[str, Any],
        settings: Settings,
        tally: counters.Tally,
        now_ms: int | None,
        max_age_days: float | bool | None,
    ) -> list[Payload]:
        call = str(message.get("type"))
        kind = counters.call_kind(call)
        tally.add("seen")
        tally.add("seen", None, kind)
        if call not in _CALLS:
            tally.add("skipped", "call", kind)
            return []
        if privacy.consent_refuses(message, settings, kind, tally):
            return []
        visitor = visitor_id_of(message)
        remembered = self.accounts.get(visitor)
        account = account_id_of(message, remembered)
        if call == "group" and visitor and message.get("groupId") is not None:
            account = str(message["groupId"])
        decision = decide(
            message,
            settings.rollout,
            visitor_id=visitor,
            account_id=account,
            provider_answer=provider_answer(message),
        )
        tally.add("rollout", decision.reason)
        if not decision.send:
            return []
        message = privacy.redacted(message, settings, kind, tally)
        if settings.mode == "webhook":
            body = privacy.transformed("webhook", to_webhook_body(message), message, tally)
            if body is None or not self._deliverable(settings, "webhook", "webhook", tally):
                return []
            webhook = _encoded("webhook", payload.event, "webhook", body)
            return [webhook] if webhook is not None else []
        age = settings.max_event_age_days if max_age_days is True else max_age_days
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        translation = translate(
            message,
            remembered_account=remembered,
            now_ms=now_ms,
            max_age_days=age if isinstance(age, (int, float)) else None,
            ids=(visitor, account),  # resolved above: for a track call, the same as translate's
        )
        if translation.account_link is not None:
            self.accounts.remember(*translation.account_link)
        for fix in translation.fixes:
            tally.add("fixed", fix)
            log_once(
                f"fix:{fix}",
                logging.INFO,
                "pendo_plugin: adjusted a payload to Pendo's rules (%s); counted as fixed:%s",
                fix,
                fix,
            )
        if translation.skipped:
            tally.add("skipped", translation.skipped)
            if translation.skipped == "too_old":
                log_once(
                    "too_old",
                    logging.WARNING,
                    "pendo_plugin: dropped a track event older than %s days "
                    "(Pendo does not process them); counted as skipped:too_old",
                    age,
                )
            return []
        payloads = []
        for item in translation.payloads:  # at most one
            kind, route = ("track", "track") if isinstance(item, TrackEvent) else (item.kind, "meta")
            kept = self._transformed(item, kind, message, tally)
            # the settings are checked before encoding: a held payload is not encoded
            if kept is not None and self._deliverable(settings, kind, route, tally):
                stamp = now_ms  # only a metadata row carries it: the message's time, now if ahead
                if route == "meta":
                    sent_at = parse_timestamp_ms(message.get("timestamp"))
                    stamp = now_ms if sent_at is None else min(sent_at, now_ms)
                built = to_payload(kept, stamp)
                if built is not None:
                    payloads.append(built)
        return payloads

    @staticmethod
    def _transformed(
        item: TrackEvent | MetadataRow, kind: str, message: Mapping[str, Any], tally: counters.Tally
    ) -> TrackEvent | MetadataRow | None:
        """``item`` after the ``pendo_transform`` hook (itself when there is none), or None when dropped."""
        body = item.body if isinstance(item, TrackEvent) else item.values
        changed = privacy.transformed(kind, body, message, tally)
        if changed is None or changed is body:
            return None if changed is None else item
        return item._replace(body=changed) if isinstance(item, TrackEvent) else item._replace(values=changed)

    @staticmethod
    def _deliverable(settings: Settings, kind: str, route: str, tally: counters.Tally) -> bool:
        """Whether a payload of ``kind`` may be sent from here (``route``: what the settings call it);
        counted either way."""
        reason = settings.hold_reason(route)
        if reason is None:
            tally.add("queued", None, kind)
            return True
        if reason == "shadow":
            tally.add("shadow", None, kind)
        else:
            tally.add("skipped", reason, kind)
        return False
