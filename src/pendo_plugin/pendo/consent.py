"""Consent: whether a message may reach Pendo, as Segment's and RudderStack's clouds decide it per
destination. Pure: no I/O, no logging.

``categories`` are the consent category ids the Pendo destination is mapped to (``PENDO_CONSENT_CATEGORIES``);
ids are compared case-sensitively, as both clouds do. Both consent fields are checked, whichever SDK sent the
message, and both must agree to send:

- Segment, ``context.consent.categoryPreferences``: sent only when every configured category is ``true`` in
  it (a category that is ``false``, missing, or anything but the JSON ``true`` blocks; so does an empty map).
  No ``consent`` object, or one without ``categoryPreferences``: sent, as Segment does for an event without
  consent.
- RudderStack, ``context.consentManagement``: ``resolutionStrategy`` ``and`` (also when it is missing or
  unknown: the stricter one) needs every configured id in ``allowedConsentIds`` and none in
  ``deniedConsentIds``; ``or`` needs at least one configured id in ``allowedConsentIds``. An object with
  neither list carries no consent: sent.

A consent field of the wrong shape (not an object, a list that is not a list) blocks: fail closed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["carries_consent", "consented"]

SEGMENT_FIELD = "consent"
RUDDERSTACK_FIELD = "consentManagement"


def _context(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    context = message.get("context")
    return context if isinstance(context, Mapping) else None


def carries_consent(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` has a Segment or RudderStack consent field."""
    context = _context(message)
    return context is not None and (SEGMENT_FIELD in context or RUDDERSTACK_FIELD in context)


def consented(message: Mapping[str, Any], categories: Collection[str]) -> bool:
    """Whether ``message`` may be sent to a destination mapped to ``categories`` (none: always)."""
    if not categories:
        return True
    context = _context(message)
    if context is None:
        return True
    segment = context.get(SEGMENT_FIELD)
    if segment is not None and not _segment_allows(segment, categories):
        return False
    rudderstack = context.get(RUDDERSTACK_FIELD)
    return rudderstack is None or _rudderstack_allows(rudderstack, categories)


def _segment_allows(consent: Any, categories: Collection[str]) -> bool:
    if not isinstance(consent, Mapping):
        return False
    if "categoryPreferences" not in consent:
        return True
    preferences = consent["categoryPreferences"]
    if not isinstance(preferences, Mapping):
        return False
    return all(preferences.get(category) is True for category in categories)


def _ids(value: Any) -> frozenset[str] | None:
    """A consent id list as a set; None when it is not a list of ids."""
    if value is None:
        return frozenset()
    if not isinstance(value, (list, tuple)):
        return None
    return frozenset(item for item in value if isinstance(item, str))


def _rudderstack_allows(management: Any, categories: Collection[str]) -> bool:
    if not isinstance(management, Mapping):
        return False
    if "allowedConsentIds" not in management and "deniedConsentIds" not in management:
        return True
    allowed = _ids(management.get("allowedConsentIds"))
    denied = _ids(management.get("deniedConsentIds"))
    if allowed is None or denied is None:
        return False
    strategy = management.get("resolutionStrategy")
    if isinstance(strategy, str) and strategy.strip().lower() == "or":
        return any(category in allowed for category in categories)
    return all(category in allowed for category in categories) and not any(
        category in denied for category in categories
    )
