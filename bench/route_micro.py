"""Routing CPU per track event: ``Router().route_all`` on slices of 512 messages, in this process.

The messages are the ones ``bench/workload.py`` sends (same user ids, event, properties and context),
built by a real ``segment.analytics`` client with ``send=False`` (so nothing is queued or sent), with
their timestamps from now. Settings: the defaults with a track secret. Prints microseconds per event:
the median over ``--repeats`` timings of ``--slices`` slices each, and the spread.

    python bench/route_micro.py [--repeats 15] [--slices 20]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

from workload import CONTEXT, EVENT, properties, user

SLICE = 512


def messages(count: int) -> list[dict[str, Any]]:
    """``count`` track messages exactly as the Segment client queues them, timed now."""
    from segment.analytics.client import Client

    client = Client("bench-write-key", send=False)
    built = []
    for i in range(count):
        accepted, message = client.track(user(i), EVENT, properties(i), dict(CONTEXT))
        if not accepted:
            raise SystemExit("the Segment client refused a message")
        built.append(message)
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--slices", type=int, default=20)
    args = parser.parse_args()

    from pendo_plugin import config, counters
    from pendo_plugin.destination.route import Router

    keys = {"track_secret": "bench-track-secret", "integration_key": "bench-integration-key"}
    settings = config.load({**keys, "spool_dir": "off"}, environ={})
    batch = messages(SLICE)
    router = Router()
    if len(router.route_all(batch, settings)) != SLICE:  # also warms the caches
        raise SystemExit("not every message became a payload")
    timings = []
    for _ in range(args.repeats):
        gc.collect()
        started = time.perf_counter_ns()
        for _ in range(args.slices):
            router.route_all(batch, settings)
        timings.append((time.perf_counter_ns() - started) / 1000 / (args.slices * SLICE))
    counters.reset()
    print(
        f"route_all: {statistics.median(timings):.2f} us per track event "
        f"(median of {args.repeats}; min {min(timings):.2f}, max {max(timings):.2f}; "
        f"{args.slices} slices of {SLICE})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
