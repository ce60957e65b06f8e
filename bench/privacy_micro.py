"""Worker CPU of the privacy rules per track event, in this process: the rules alone (consent and property
rules on each message), then ``Router().route_all`` on slices of 512 messages with no rule and with a few of
each kind configured (docs/privacy.md).

The messages are ``bench/route_micro.py``'s (the workload's track calls, built by a real ``segment.analytics``
client with ``send=False``), with a consent object granting every configured category and four more
properties for the rules to act on (one nested). Prints microseconds per event for each configuration: the
best of ``--repeats`` timings (the least disturbed run on a shared machine) and their median. Removing
properties also saves the cleaning of them, so ``route_all`` with a rule can cost less than without. All of
it runs on the worker thread; the app's ``track()`` does not change (``bench/run.py --only hot``).

    python bench/privacy_micro.py [--repeats 15] [--slices 10]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from route_micro import SLICE, messages

CATEGORIES = "Analytics,Functional,Performance"
CONSENT = {"categoryPreferences": {"Analytics": True, "Functional": True, "Performance": True, "Ads": False}}
DENY = "ssn,address.street,source"
HASH = {"hash_properties": "email,phone,plan", "hash_key": "bench-hash-key"}
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "no rule": {},
    "consent (3 categories)": {"consent_categories": CATEGORIES},
    "deny (3, one nested)": {"deny_properties": DENY},
    "allow (3, one nested)": {"allow_properties": "format,rows,address.city"},
    "hash (3, with key)": HASH,
    "all of the above": {"consent_categories": CATEGORIES, "deny_properties": DENY,
                         "allow_properties": "format,rows,email,phone,plan,address", **HASH},
}


def with_privacy(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with consent and the fields the rules act on."""
    out = []
    for n, message in enumerate(batch):
        extra = {"ssn": f"000-00-{n:04d}", "email": f"user{n}@example.com", "phone": "+33 1 23 45 67 89",
                 "address": {"street": "1 Main St", "city": "Paris"}}
        context = {**message["context"], "consent": CONSENT}
        out.append({**message, "properties": {**message["properties"], **extra}, "context": context})
    return out


def timed(work: Callable[[], Any], repeats: int, per: int) -> list[float]:
    """Microseconds per item of ``work`` (``per`` items a call), one timing per repeat."""
    work()  # warms the caches
    timings = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter_ns()
        work()
        timings.append((time.perf_counter_ns() - started) / 1000 / per)
    return timings


def line(name: str, timings: list[float], baseline: float) -> str:
    best = min(timings)
    return (f"  {name:<24} {best:6.2f} us ({best - baseline:+6.2f}; median {statistics.median(timings):.2f}, "
            f"max {max(timings):.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--slices", type=int, default=10)
    args = parser.parse_args()

    from pendo_plugin import config, counters
    from pendo_plugin.destination.route import Router
    from pendo_plugin.pendo.consent import consented
    from pendo_plugin.pendo.property_rules import apply_rules

    keys = {"track_secret": "bench-track-secret", "integration_key": "bench-integration-key",
            "spool_dir": "off"}
    batch = with_privacy(messages(SLICE))
    settings = {name: config.load({**keys, **rules}, environ={}) for name, rules in CONFIGURATIONS.items()}

    print(f"the rules alone, per message (best of {args.repeats} x {args.slices} x {SLICE} messages):")
    for name, chosen in settings.items():
        rules, categories = chosen.properties, chosen.consent_categories

        def decide(rules: Any = rules, categories: Any = categories) -> None:
            for _ in range(args.slices):
                for message in batch:
                    if consented(message, categories) and rules.active:
                        apply_rules(message, rules)

        print(line(name, timed(decide, args.repeats, args.slices * SLICE), 0.0))

    print(f"Router.route_all, per track event (best of {args.repeats} x {args.slices} slices of {SLICE}):")
    baseline = None
    for name, chosen in settings.items():
        router = Router()
        if len(router.route_all(batch, chosen)) != SLICE:
            raise SystemExit("not every message became a payload")

        def route(router: Router = router, chosen: Any = chosen) -> None:
            for _ in range(args.slices):
                router.route_all(batch, chosen)

        timings = timed(route, args.repeats, args.slices * SLICE)
        baseline = min(timings) if baseline is None else baseline
        print(line(name, timings, baseline))
        counters.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
