"""Hostile entries under the old key names (before the hash tag) are checked in Redis before any
byte reaches a process: one over the entry size limit, or without a payload, is deleted there and
counted, and the process's memory does not grow with it."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.delivery.fleet.legacy import LEGACY_STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer

HUGE = 96 * 1024 * 1024  # the app alone peaks at about 56 MB


def test_huge_old_entries_never_reach_the_process(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    for _ in range(2):
        client.xadd(LEGACY_STREAM, {"p": b"x" * HUGE})
    client.xadd(LEGACY_STREAM, {"not-a-payload": b"1"})
    script = app_script(
        """
        client = make_client()
        send(client, 10, user="after")
        client.flush()
        peak_kb = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
        report(flushed=pendo_plugin.flush(20), peak_mb=int(peak_kb) / 1024)
        """
    )
    run = run_app(script, app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url))
    assert run.returncode == 0, run.describe()
    report = run.reports()[-1]
    assert report["flushed"], run.describe()
    assert report["stats"]["dropped:redis_corrupt"] == 3, report
    assert report["peak_mb"] < HUGE / 1024 / 1024, report  # not even one of them was read
    assert "is not answering" not in run.stderr, run.describe()
    assert client.xlen(LEGACY_STREAM) == 0
    assert {e["properties"]["n"] for e in sandbox.track_events()} == set(range(10))
