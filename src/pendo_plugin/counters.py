"""Process-wide counters, recorded through one function and one vocabulary.

Every counter is named ``outcome[:reason][:kind]``: what happened (:data:`OUTCOMES`), why
(:data:`REASONS`, or an HTTP status ``http_<nnn>``), and to which kind of payload or Segment call
(:data:`KINDS`); reason and kind are left out when absent. Reasons and kinds never share a word, so a
name reads back unambiguously (:func:`parse`). A name outside the vocabulary is a bug in this package:
it is logged once and counted as ``bad_counter``, never raised into the app.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from typing import Literal

from pendo_plugin import _fork
from pendo_plugin.logs import log_once

Outcome = Literal[
    "seen", "rollout", "queued", "shadow", "held", "sent", "failed", "skipped", "fixed", "dropped_field",
    "dropped", "superseded", "retried", "retries_exhausted", "auth_failed", "redirect_refused",
    "response_truncated", "written_ahead", "spooled", "unspooled", "overflowed", "parked",
    "already_acknowledged", "spool_write_failed", "spool_ack_failed", "spool_dir_refused", "spool_recovered",
    "spool_quarantined", "plugin_error", "redis", "rate", "fleet_flags", "bad_counter",
    "answer_unreadable",
    "consent", "redacted", "transformed",
]

OUTCOMES: dict[str, str] = {
    "seen": "a Segment message the worker took from its queue (bare: all of them)",
    "rollout": "the rollout decision for one message",
    "queued": "a payload handed to delivery",
    "shadow": "a payload shadow mode would have sent",
    "held": "a payload this process may not send now, left in the spool (fleet mode: the stream)",
    "sent": "a payload Pendo acknowledged (metadata: rows Pendo reported updated)",
    "failed": "a metadata row Pendo answered as not updated (missing/errors in its response)",
    "skipped": "a message or row that produces nothing for Pendo",
    "fixed": "a repair made to fit Pendo's rules",
    "dropped_field": "a field left out of a metadata row",
    "dropped": "a payload lost for good",
    "superseded": "a metadata row replaced by a newer one for the same id before it was sent",
    "retried": "a retry attempt",
    "retries_exhausted": "payloads whose retries ran out (kept in the spool when it is on)",
    "auth_failed": "payloads whose key Pendo refused, kept in the spool for a corrected key",
    "redirect_refused": "a 3xx answer, never followed",
    "response_truncated": "an answer from Pendo longer than the bound, cut",
    "written_ahead": "payloads written to the spool before sending",
    "spooled": "payloads left in the spool to wait",
    "unspooled": "payloads delivered from the spool",
    "overflowed": "payloads routed straight to the spool because the queue was full",
    "parked": "payloads left on disk because Pendo looked down",
    "already_acknowledged": "spooled payloads found already delivered by another process",
    "spool_write_failed": "payloads a spool write failed for (still sent from memory)",
    "spool_ack_failed": "an acknowledgement the spool could not record",
    "spool_dir_refused": "a spool directory refused (unsafe owner, mode or type)",
    "spool_recovered": "payloads of complete temp files renamed into place",
    "spool_quarantined": "a spool file that failed a check, moved to quarantine/ and never sent",
    "plugin_error": "an exception a plugin raised in a hook, caught",
    "redis": "fleet mode: a Redis stream operation",
    "rate": "fleet mode: the shared rate budget",
    "fleet_flags": "fleet mode: the live rollout flags read from Redis",
    "bad_counter": "a counter outside this vocabulary was recorded (a bug in this package; logged once)",
    "answer_unreadable": "a 2xx answer from Pendo that could not be read (too deep, not JSON, odd counts)",
    "consent": "a message carrying consent preferences that no configured category applies to",
    "redacted": "a property or trait value removed or hashed by the property rules",
    "transformed": "a payload the pendo_transform hook replaced",
}

REASONS: dict[str, str] = {
    # rollout: the rule that decided (docs/rollout.md)
    "in_percent": "in the rollout percent",
    "in_allow_visitor": "on the visitor allow list",
    "in_allow_account": "on the account allow list",
    "in_provider": "the flag provider said yes",
    "off_kill_switch": "the kill switch is off",
    "off_integrations": "the message opted out (integrations)",
    "off_calls": "a call type not enabled",
    "off_deny_visitor": "on the visitor deny list",
    "off_deny_account": "on the account deny list",
    "off_deny_event": "on the event deny list",
    "off_not_allowed_event": "an event not on the event allow list",
    "off_percent": "outside the rollout percent",
    "off_provider": "the flag provider said no",
    "off_no_id": "no userId or anonymousId",
    "provider_error": "the flag provider failed; the built-in rules decided",
    # held, skipped: why this process may not send
    "off": "the kill switch is off or the settings are bad",
    "no_secret": "no track secret, integration key or API key for it",
    "shadow": "shadow mode",
    "rollout": "the fleet's rollout flags now leave it out (a lowered percent, a deny list)",
    "fleet_flags": "fleet mode: the fleet's flags are not known yet, or Redis has not confirmed them lately",
    "misconfigured": "bad settings: the plugin is off",
    "sdk_answer": "an SDK whose _enqueue no longer answers (accepted, message)",
    # skipped: the message or row
    "call": "a call type Pendo does not take (kind: the call)",
    "too_old": "a track event older than PENDO_MAX_EVENT_AGE_DAYS",
    "no_visitor_id": "no visitor id",
    "id_too_long": "an id over Pendo's length bound",
    "bad_id": "an id that is not valid UTF-8",
    "blank_account_id": "a blank account id",
    "no_traits": "no traits to send",
    "no_event_name": "a track call without an event name",
    "no_known_fields": "no field of the row exists in Pendo's schema",
    # fixed: the repair (docs/mapping.md)
    "value_surrogate": "a lone surrogate replaced",
    "value_nan": "a NaN left out",
    "value_infinity": "an infinity left out",
    "value_decimal": "a Decimal made a number",
    "value_datetime": "a date or time made ISO text",
    "value_bytes": "bytes decoded as UTF-8",
    "value_uuid": "a UUID made text",
    "value_too_deep": "a value nested too deep, cut",
    "value_key": "a non-text key made text",
    "value_set": "a set made a sorted list",
    "value_other": "another type made text",
    "value_huge_int": "an integer beyond the float range (10**400) left out",
    "value_unreadable": "a value whose conversion raised (an object's own method) left out",
    "nested_flattened": "a nested object flattened into dotted names",
    "nested_stringified": "a nested object sent as JSON text",
    "list_stringified": "a list sent as JSON text",
    "value_dropped": "a value that could not be sent left out",
    "property_renamed": "a name Pendo rejects renamed",
    "property_name_collision": "two names that became the same, one renamed",
    "properties_too_large": "properties over Pendo's size bound",
    "property_truncated": "a property value cut to the bound",
    "property_dropped": "a property left out to fit the bound",
    "metadata_value_truncated": "a metadata value cut to the bound",
    "timestamp_missing": "no timestamp: now",
    "timestamp_invalid": "an unparseable timestamp: now",
    "account_id_dropped": "an account id that cannot be sent, left out",
    "coerced_text": "a value made text for a text field",
    "coerced_number": "a value made a number for a number field",
    "coerced_boolean": "a value made a boolean for a boolean field",
    "coerced_date": "a value made epoch milliseconds for a date field",
    "bad_value": "a value that cannot be coerced to its field's type, left out",
    # dropped_field
    "unknown": "a field that does not exist in Pendo's schema",
    # dropped: why lost
    "queue_full": "the intake and the overflow queue are both full",
    "spool_full": "the spool outgrew PENDO_SPOOL_MAX_MB: its oldest files deleted",
    "spool_torn": "an incomplete temp file of a process that ended while writing it",
    "undeliverable": "delivery failed and the payload cannot be kept (spool off, or writing it failed)",
    "unserialisable": "the payload cannot be encoded as JSON",
    "internal_error": "translating a message or preparing a row raised (a bug; logged once, set aside)",
    "unknown_payload": "a spooled payload of a kind this version does not know",
    "redis_full": "the Redis stream is at its length cap",
    "redis_corrupt": "a Redis stream entry that is not a payload",
    "redis_lost": "entries that waited in the stream when Redis lost it (a restart without persistence)",
    # spool_quarantined: the check that failed
    "not_regular": "not a regular file",
    "symlink": "a symlink",
    "unopenable": "cannot be opened",
    "foreign_owner": "owned by another user",
    "too_large": "over the file size bound",
    "too_many_lines": "over the line count bound",
    "line_too_long": "a line over the line bound",
    "too_deep": "a line nested too deep",
    "not_json": "a line that is not JSON",
    "not_object": "a line that is not a JSON object",
    "dead_letter": "payloads that failed 5 times on their own account, in any processes (the dead letter)",
    # plugin_error: the hook (the plugin is named in the log line)
    "load": "the plugin failed to import",
    "segment_message": "the segment_message hook",
    "segment_flush": "the segment_flush hook",
    "segment_shutdown": "the segment_shutdown hook",
    "segment_startup": "the segment_startup hook",
    "pendo_rollout": "the pendo_rollout hook",
    # redis
    "appended": "payloads appended to the stream",
    "acked": "stream entries acknowledged",
    "requeued": "stream entries appended again for a retry",
    "claimed": "stream entries taken over from a dead consumer",
    "fallback": "payloads kept in the local spool because Redis failed",
    "moved_from_spool": "payloads moved from the local spool to the stream",
    "moved_from_old_keys": "stream entries moved from the key names used before the hash tag",
    "not_replicated": "payloads kept in the local spool, not the stream: WAIT saw too few replicas",
    "errors": "a Redis command failed",
    "round_trips": "a round trip to Redis",
    "pendo_transform": "the pendo_transform hook",
    # privacy (docs/privacy.md): skipped, consent, redacted, dropped
    "consent": "the message's consent preferences refuse Pendo's categories",
    "unmapped": "consent preferences while PENDO_CONSENT_CATEGORIES is unset: sent",
    "denied_property": "a value named in PENDO_DENY_PROPERTIES, removed",
    "not_allowed_property": "a track property not in PENDO_ALLOW_PROPERTIES, removed",
    "hashed": "a value named in PENDO_HASH_PROPERTIES, hashed",
    "hash_no_key": "a value named in PENDO_HASH_PROPERTIES without PENDO_HASH_KEY, removed",
    "transform": "the pendo_transform hook dropped the payload",
    "transform_error": "the pendo_transform hook raised, or a plugin that may implement it failed to load: "
    "the payload dropped (fail closed)",
    "transform_invalid": "the pendo_transform hook returned what does not fit Pendo's rules",
    "dead_lettered": "stream entries that failed too often, moved to the dead stream",
    "group_lost": "the stream's consumer group was gone (Redis lost the stream)",
    # rate
    "waited": "a send waited for the shared budget",
    "paused": "a 429 paused the whole fleet",
    # fleet_flags
    "applied": "flags applied",
    "invalid": "flags refused (a bad value)",
}

HTTP_STATUS = re.compile(r"http_[1-5][0-9]{2}")
"""The one reason computed at run time: an HTTP status Pendo answered (``dropped``, ``auth_failed``,
``redirect_refused``)."""

KINDS: dict[str, str] = {
    "track": "a track event (payload), or a track call",
    "webhook": "a whole Segment message in webhook mode",
    "visitor": "a visitor metadata row",
    "account": "an account metadata row",
    "identify": "an identify call",
    "group": "a group call",
    "page": "a page call",
    "screen": "a screen call",
    "alias": "an alias call",
    "other": "a message of any other type",
}

Key = tuple[str, "str | None", "str | None"]

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_names: dict[Key, str] = {}  # each valid key seen, with its name (bounded: the vocabulary is)


_CALLS = frozenset({"identify", "group", "track", "page", "screen", "alias"})


def call_kind(call: object) -> str:
    """The kind for a Segment message type: the call (``identify``, ..., ``alias``), else ``other``."""
    return call if isinstance(call, str) and call in _CALLS else "other"


def is_reason(reason: str) -> bool:
    """Whether ``reason`` is in the vocabulary (or an HTTP status)."""
    return reason in REASONS or HTTP_STATUS.fullmatch(reason) is not None


def name_of(outcome: str, reason: str | None = None, kind: str | None = None) -> str | None:
    """``outcome[:reason][:kind]``, or None when a part is outside the vocabulary."""
    key = (outcome, reason, kind)
    name = _names.get(key)
    if name is not None:
        return name
    if outcome not in OUTCOMES or (reason is not None and not is_reason(reason)) or (
        kind is not None and kind not in KINDS
    ):
        return None
    name = ":".join(part for part in key if part is not None)
    _names[key] = name
    return name


def parse(name: str) -> Key:
    """``(outcome, reason, kind)`` of a counter name (reason and kind None when absent)."""
    outcome, *rest = name.split(":")
    kind = rest.pop() if rest and rest[-1] in KINDS else None
    return outcome, ":".join(rest) or None, kind


def _checked(outcome: str, reason: str | None, kind: str | None) -> str:
    name = name_of(outcome, reason, kind)
    if name is not None:
        return name
    log_once(
        f"bad-counter:{outcome}:{reason}:{kind}",
        logging.ERROR,
        "pendo_plugin: a counter outside the vocabulary (%r, %r, %r); counted as bad_counter (a bug)",
        outcome,
        reason,
        kind,
    )
    return "bad_counter"


def record(outcome: Outcome, reason: str | None = None, kind: str | None = None, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``outcome[:reason][:kind]`` (e.g. ``record("sent", kind="track")``)."""
    name = _names.get((outcome, reason, kind)) or _checked(outcome, reason, kind)  # known names: one lookup
    with _lock:
        _counts[name] += amount


class Tally:
    """Counts gathered without a lock (a slice's worth), recorded at once by :meth:`commit`."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}

    def add(
        self, outcome: Outcome, reason: str | None = None, kind: str | None = None, amount: int = 1
    ) -> None:
        """Count one ``outcome[:reason][:kind]`` (checked when committed)."""
        key = (outcome, reason, kind)
        self.counts[key] = self.counts.get(key, 0) + amount  # a plain dict: the router calls this per message

    def commit(self) -> None:
        """Record every count under one lock, then start again from zero."""
        if not self.counts:
            return
        named = [(_checked(*key), amount) for key, amount in self.counts.items()]
        self.counts.clear()
        with _lock:
            for name, amount in named:
                _counts[name] += amount


def snapshot() -> dict[str, int]:
    """A copy of every counter, sorted by name."""
    with _lock:
        return dict(sorted(_counts.items()))


def reset() -> None:
    """Set every counter back to zero (tests, and a forked child)."""
    with _lock:
        _counts.clear()


def after_fork() -> None:
    """In a forked child: a fresh lock (the parent's may have been held) and counters from zero."""
    global _lock
    _lock = threading.Lock()
    _counts.clear()


_fork.register(after_in_child=after_fork)
