"""Fleet observability: the counters for Prometheus and OpenTelemetry, the shared stream in
`pendo-plugin spool status`, and `doctor`'s Redis checks, against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pendo_plugin import counters
from pendo_plugin.cli.fleet_doctor import doctor_checks
from pendo_plugin.config import load
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.integrations.metrics import families, register_otel, register_prometheus
from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer


def test_counter_names_become_families_and_details() -> None:
    assert families({"sent:track": 3, "seen": 5, "dropped:http_400:track": 1, "fleet-x:y": 2}) == {
        "sent": {"track": 3},
        "seen": {"": 5},
        "dropped": {"http_400:track": 1},
        "fleet_x": {"y": 2},
    }


def test_prometheus_collector_exposes_the_counters() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    counters.reset()
    counters.record("sent", kind="track", amount=3)
    counters.record("dropped", "redis_full", amount=2)
    registry = CollectorRegistry()
    register_prometheus(registry)
    text = generate_latest(registry).decode()
    assert 'pendo_plugin_sent_total{detail="track"} 3.0' in text
    assert 'pendo_plugin_dropped_total{detail="redis_full"} 2.0' in text
    counters.reset()


def test_opentelemetry_observable_counter_reports_the_counters() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    counters.reset()
    counters.record("sent", kind="track", amount=4)
    reader = InMemoryMetricReader()
    register_otel(MeterProvider(metric_readers=[reader]))
    data = reader.get_metrics_data()
    points = [
        (dict(point.attributes), point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "pendo_plugin.counters"
        for point in metric.data.data_points
    ]
    assert ({"family": "sent", "detail": "track"}, 4) in points
    counters.reset()


def _settings(url: str):  # type: ignore[no-untyped-def]
    return load(environ={"PENDO_TRACK_SECRET": TRACK_SECRET, "PENDO_REDIS_URL": url})


def test_doctor_warns_when_redis_keeps_nothing_on_disk(redis_server: RedisServer) -> None:
    checks = doctor_checks(_settings(redis_server.url))
    assert [c.status for c in checks] == ["OK", "WARN", "WARN"]
    assert checks[0].text.endswith("single node")
    assert "persistence: none (appendonly no and no RDB snapshots)" in checks[1].text
    assert checks[2].text.startswith("replicas: none")


def test_doctor_is_content_with_an_append_only_redis(redis_server_aof: RedisServer) -> None:
    checks = doctor_checks(_settings(redis_server_aof.url))
    assert [c.status for c in checks[:2]] == ["OK", "OK"]
    assert checks[1].text.startswith("persistence: AOF, fsync always")


def test_doctor_fails_when_redis_does_not_answer_and_hides_the_password(closed_url: str) -> None:
    url = "redis://app:hunter2@" + closed_url.removeprefix("http://")
    [check] = doctor_checks(_settings(url))
    assert check.status == "FAIL"
    assert "does not answer" in check.text
    assert "hunter2" not in check.text


def test_doctor_command_reports_redis(sandbox: Sandbox, redis_server: RedisServer) -> None:
    env = pendo_env(sandbox.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_REDIS_URL=redis_server.url)
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"OK    Redis at {redis_server.url} answers" in done.stdout
    assert "WARN  persistence: none" in done.stdout


def test_spool_status_shows_the_stream(sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis_server.client()
    body = {
        "type": "track",
        "event": "E",
        "visitorId": "u1",
        "timestamp": int(time.time() * 1000),
        "context": {},
    }
    for _ in range(5):
        client.xadd(STREAM, {"p": json.dumps({"k": "track", "b": body})})
    client.xgroup_create(STREAM, GROUP, id="0")
    client.xreadgroup(GROUP, "web-1:4242:abc", {STREAM: ">"}, count=2)
    env = pendo_env(
        sandbox.url,
        TRACK_SECRET,
        INTEGRATION_KEY,
        PENDO_REDIS_URL=redis_server.url,
        PENDO_SPOOL_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "spool", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert ["entries", "5"] in lines
    assert ["pending", "2", "(read,", "not", "yet", "acknowledged)"] in lines
    assert ["consumers", "1"] in lines
    assert any(line[:3] == ["web-1:4242:abc", "pending", "2"] for line in lines)
