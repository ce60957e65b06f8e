"""Hostile entries written straight into the fleet's stream by someone with write access to Redis: they
are dropped and counted inside Redis, and what was tracked beside them is delivered (docs/fleet.md)."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer

HUGE_ENTRIES = 12
HUGE_BYTES = 40_000_000


def test_entries_of_tens_of_mb_are_dropped_in_redis_and_the_good_ones_delivered(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Twelve 40 MB entries were read whole: 433 MB of RSS, and a read past the 1 s timeout had the
    process take Redis for down at every read, the 20 good events stuck pending behind them."""
    redis = redis_server.client()
    redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for _ in range(HUGE_ENTRIES):
        redis.xadd(STREAM, {"p": b"x" * HUGE_BYTES})
    script = app_script(
        """
        client = make_client()
        send(client, 20, user="beside-huge")
        client.flush()
        flushed = pendo_plugin.flush(10)
        peak_kb = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
        report(flushed=flushed, peak_kb=peak_kb)
        """
    )
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url)
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    last = run.reports()[-1]
    assert last["flushed"] is True, run.describe()
    assert len(sandbox.track_events()) == 20, run.describe()
    assert last["stats"]["dropped:redis_corrupt"] == HUGE_ENTRIES, last
    assert "redis:errors" not in last["stats"] and "not answering" not in run.stderr, run.describe()
    assert last["peak_kb"] < 200_000, last  # not one 40 MB entry came out of Redis
    assert redis.xlen(STREAM) == 0
