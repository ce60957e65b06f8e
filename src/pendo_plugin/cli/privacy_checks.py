"""``doctor``'s lines on privacy: the consent categories and property rules in force (docs/privacy.md), and
whether messages of ``--traits FILE`` carry consent that is not enforced."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pendo_plugin.cli._common import Check, ok
from pendo_plugin.config import Settings
from pendo_plugin.pendo.consent import carries_consent

MAX_SHOWN = 8


def _listed(values: frozenset[str]) -> str:
    names = sorted(values)
    shown = ", ".join(names[:MAX_SHOWN])
    return shown + (f" and {len(names) - MAX_SHOWN} more" if len(names) > MAX_SHOWN else "")


def privacy_checks(settings: Settings, messages: Iterable[Any] | None = None) -> list[Check]:
    """One line on consent, one on the property rules (a WARN for hashing without a key), and a WARN when
    ``messages`` carry consent that no configured category enforces."""
    categories = settings.consent_categories
    checks = [ok(f"consent: enforced for categories {_listed(categories)}") if categories
              else ok("consent: not enforced (PENDO_CONSENT_CATEGORIES is unset): every message is sent")]
    if messages is not None and not categories:
        found = [message for message in messages if isinstance(message, dict)]
        carrying = sum(carries_consent(message) for message in found)
        if carrying:
            checks.append(Check("WARN", f"consent: {carrying} of {len(found)} message(s) carry consent "
                                "preferences, but PENDO_CONSENT_CATEGORIES is unset, so Pendo gets them all"))
    rules = settings.properties
    parts = [f"{name} {_listed(values)}" for name, values in
             (("deny", rules.deny), ("allow", rules.allow), ("hash", rules.hash)) if values]
    checks.append(ok(f"property rules: {'; '.join(parts)}") if parts else ok("property rules: none"))
    if rules.hash and rules.hash_key is None:
        checks.append(Check("WARN", "PENDO_HASH_PROPERTIES is set but PENDO_HASH_KEY is not: those fields "
                            "are left out of what Pendo gets (fail closed)"))
    return checks
