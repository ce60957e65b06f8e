"""The plugin's counters for the monitoring systems fleets use: a ``prometheus_client`` collector
and an OpenTelemetry observable counter (extras ``prometheus`` and ``otel``).

Both read :func:`pendo_plugin.counters.snapshot` when scraped or collected, so they cost nothing
between scrapes. A counter ``family:detail`` (its outcome, then the rest: ``sent:track``,
``dropped:http_400:track``) becomes the Prometheus counter ``pendo_plugin_<family>_total{detail="..."}``
and the OpenTelemetry observation ``pendo_plugin.counters`` with attributes ``family`` and ``detail``.
The counters are per process: scrape each process, or sum them in the monitoring system.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from pendo_plugin import counters

__all__ = ["PrometheusCollector", "families", "register_otel", "register_prometheus"]

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def families(snapshot: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{"sent": {"track": 3}, "seen": {"": 5}}`` from ``{"sent:track": 3, "seen": 5}``."""
    grouped: dict[str, dict[str, int]] = {}
    for name, value in snapshot.items():
        family, _, detail = name.partition(":")
        grouped.setdefault(_NOT_NAME.sub("_", family), {})[detail] = value
    return grouped


class PrometheusCollector:
    """A ``prometheus_client`` custom collector for this process's counters."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        for family, details in families(counters.snapshot()).items():
            metric = CounterMetricFamily(
                f"pendo_plugin_{family}",
                f"pendo_plugin counter {family} (see docs/operations.md)",
                labels=["detail"],
            )
            for detail, value in details.items():
                metric.add_metric([detail], value)
            yield metric

    def describe(self) -> list[Any]:
        return []  # the families appear as the counters do; nothing to check at registration


def register_prometheus(registry: Any = None) -> PrometheusCollector:
    """Register the collector with ``registry`` (default: ``prometheus_client``'s global one)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = PrometheusCollector()
    registry.register(collector)
    return collector


def _observations(options: Any) -> Iterable[Any]:
    from opentelemetry.metrics import Observation

    for family, details in families(counters.snapshot()).items():
        for detail, value in details.items():
            yield Observation(value, {"family": family, "detail": detail})


def register_otel(meter_provider: Any = None) -> Any:
    """Create the observable counter ``pendo_plugin.counters`` on ``meter_provider`` (default: the
    global one set by the app's OpenTelemetry setup); returns the instrument."""
    from opentelemetry import metrics

    from pendo_plugin import __version__

    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("pendo_plugin", __version__)
    return meter.create_observable_counter(
        "pendo_plugin.counters", callbacks=[_observations], unit="1", description="pendo_plugin counters"
    )
