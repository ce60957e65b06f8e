"""What Segment's cloud would enforce per destination, enforced in the worker: consent, property rules
and the ``pendo_transform`` hook (docs/privacy.md). The router calls these for every message, live,
in webhook mode and in ``pendo-plugin replay``; the decisions are the pure functions of
:mod:`~pendo_plugin.pendo.consent`, :mod:`~pendo_plugin.pendo.property_rules` and
:mod:`~pendo_plugin.pendo.recheck`; here they are counted and logged.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.consent import carries_consent, consented
from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.pendo.property_rules import apply_rules
from pendo_plugin.pendo.recheck import rechecked
from pendo_plugin.segment import plugins

HOOK = "pendo_transform"


def consent_refuses(message: Mapping[str, Any], settings: Settings, kind: str, tally: counters.Tally) -> bool:
    """Whether the message's consent keeps it from Pendo (counted as ``skipped:consent:<kind>``). With no
    categories configured nothing is refused; a message carrying consent then is counted
    (``consent:unmapped:<kind>``) and logged once."""
    categories = settings.consent_categories
    if not categories:
        if carries_consent(message):
            tally.add("consent", "unmapped", kind)
            log_once(
                "consent-unmapped",
                logging.WARNING,
                "pendo_plugin: messages carry consent preferences but PENDO_CONSENT_CATEGORIES is not set, "
                "so they are all sent to Pendo (as to a destination mapped to no category); set it to the "
                "categories Pendo is mapped to in Segment (counted as consent:unmapped)",
            )
        return False
    if consented(message, categories):
        return False
    tally.add("skipped", "consent", kind)
    return True


def redacted(
    message: Mapping[str, Any], settings: Settings, kind: str, tally: counters.Tally
) -> Mapping[str, Any]:
    """The message with the property rules applied (itself when none is configured), each change counted
    as ``redacted:<rule>:<kind>``."""
    rules = settings.properties
    if not rules.active:
        return message
    message, counts = apply_rules(message, rules)
    for reason, amount in counts.items():
        tally.add("redacted", reason, kind, amount)
    if "hash_no_key" in counts:
        log_once(
            "hash-no-key",
            logging.ERROR,
            "pendo_plugin: PENDO_HASH_PROPERTIES is set but PENDO_HASH_KEY is not, so those fields are "
            "left out of what Pendo gets (fail closed); counted as redacted:hash_no_key",
        )
    return message


def transformed(
    kind: str, body: dict[str, Any], message: Mapping[str, Any], tally: counters.Tally
) -> dict[str, Any] | None:
    """``body`` after every ``pendo_transform`` implementation, in turn, and Pendo's rules again (each gets
    copies of ``body`` and ``message``, so none can change what Segment uploads); None when a plugin failed
    to load (it may be a transform: ``dropped:transform_error:<kind>``), or when
    one dropped it (``dropped:transform:<kind>``), raised (``dropped:transform_error:<kind>``, fail closed) or
    returned what cannot be sent (``dropped:transform_invalid:<kind>``)."""
    transforms = plugins.implemented(HOOK)  # loads the entry points once; then a cached answer
    if plugins.failed_to_load():  # one may be the transform that redacts: fail closed, as if it raised
        tally.add("dropped", "transform_error", kind)
        log_once(
            "transform-not-loaded",
            logging.ERROR,
            "pendo_plugin: segment_analytics plugin(s) %s failed to load and may implement pendo_transform, "
            "so nothing is sent to Pendo until they load or are listed in SEGMENT_ANALYTICS_PLUGINS_DISABLED "
            "(counted as dropped:transform_error)",
            ", ".join(sorted(plugins.failed_to_load())),
        )
        return None
    if not transforms:  # the common case: no transform, no copy
        return body
    message = json_safe(message)[0]  # a copy: a transform that changes it must not change Segment's upload
    for plugin, function, argnames in plugins.implementations(HOOK):
        arguments = {"kind": kind, "payload": copy.deepcopy(body), "message": message}
        try:
            answer = function(*[arguments[name] for name in argnames])
        except Exception as exc:
            plugins.report_error(plugin, HOOK, exc, with_text=False)
            tally.add("dropped", "transform_error", kind)
            return None
        if answer is None or answer is True:
            continue
        if answer is False:
            tally.add("dropped", "transform", kind)
            return None
        checked, fixes = rechecked(kind, answer)
        if checked is None:
            tally.add("dropped", "transform_invalid", kind)
            log_once(
                f"transform-invalid:{plugin}",
                logging.ERROR,
                "segment_analytics plugin %r returned a %s payload from pendo_transform that does not fit "
                "Pendo's rules; dropped (counted as dropped:transform_invalid)",
                plugin,
                kind,
            )
            return None
        for fix in fixes:
            tally.add("fixed", fix)
        tally.add("transformed", None, kind)
        body = checked
    return body
