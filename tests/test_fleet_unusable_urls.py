"""A PENDO_REDIS_URL that redis-py cannot use, found only when the worker connects (an option redis-py
does not know, a database other than 0 on a Redis Cluster): one clear log line without the password,
every event delivered through the local routes, Segment untouched, and ``doctor`` fails on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin import config
from pendo_plugin.cli.fleet_doctor import doctor_checks
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer, free_port

PASSWORD = "s3cret-redis-pw"
APP = """
client = make_client()
for n in range(100):
    client.track(user_id="typo", event="Reliability", properties={"n": n})
client.flush()
report(flushed=pendo_plugin.flush(20))
"""


@pytest.fixture
def single_node_cluster(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis Cluster of one node holding every slot."""
    server = RedisServer(tmp_path / "cluster", extra=["--cluster-enabled", "yes"])
    while server.port > 55535:  # a cluster node's bus port is its port + 10000
        server.port = free_port()
    server.start()
    try:
        client = server.client()
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        yield server
    finally:
        server.stop()


def _run_fleet_app(sandbox: Sandbox, redis_url: str, tmp_path: Path) -> tuple[str, dict[str, int]]:
    run = run_app(app_script(APP), app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_url))
    assert run.returncode == 0, run.describe()
    assert run.reports()[-1]["flushed"], run.describe()
    assert {e["properties"]["n"] for e in sandbox.track_events()} == set(range(100)), run.describe()
    assert len(sandbox.segment_messages()) == 100  # Segment's own upload is untouched
    assert "Traceback" not in run.stderr, run.describe()
    return run.stderr, run.reports()[-1]["stats"]


def test_an_option_redis_py_does_not_know_is_one_line_and_delivery_goes_on(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0?ssl_cert_req=none"  # typo of ssl_cert_reqs
    stderr, stats = _run_fleet_app(sandbox, url, tmp_path)
    assert stderr.count("fleet mode is off") == 1, stderr
    assert "unknown option ?ssl_cert_req=" in stderr
    assert PASSWORD not in stderr
    assert stats["redis:fallback"] >= 1


def test_a_database_other_than_0_on_a_cluster_is_one_line_and_delivery_goes_on(
    sandbox: Sandbox, single_node_cluster: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{single_node_cluster.port}/3"
    stderr, _ = _run_fleet_app(sandbox, url, tmp_path)
    assert stderr.count("fleet mode is off") == 1, stderr
    assert "names database 3, and a Redis Cluster has only database 0" in stderr
    assert "is not answering" not in stderr


@pytest.mark.parametrize("shape", ["unknown option", "cluster database"])
def test_doctor_fails_on_a_url_redis_py_cannot_use(
    shape: str, redis_server: RedisServer, single_node_cluster: RedisServer
) -> None:
    if shape == "unknown option":
        url, reason = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0?bogus=1", "unknown option ?bogus="
    else:
        url, reason = f"redis://127.0.0.1:{single_node_cluster.port}/3", "has only database 0"
    [check] = doctor_checks(config.parse({"track_secret": "check", "redis_url": url}))
    assert check.status == "FAIL" and reason in check.text and "fleet mode is off" in check.text
    assert PASSWORD not in check.text
