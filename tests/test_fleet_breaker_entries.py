"""Hostile entries written straight into the fleet's stream by someone with write access to Redis: they
are dropped and counted inside Redis, and what was tracked beside them is delivered (docs/fleet.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pendo_plugin.delivery.fleet.entries import DEAD_STREAM, GROUP, STREAM
from pendo_plugin.pendo import payload
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


def test_dead_list_and_retry_read_hostile_dead_entries_bounded(redis_server: RedisServer) -> None:
    """``spool dead list`` read 100 dead entries whole: ten of 40 MB took it to 860 MB (a hundred: 4 GB)."""
    redis = redis_server.client()
    for _ in range(HUGE_ENTRIES):
        redis.xadd(DEAD_STREAM, {"p": b"x" * HUGE_BYTES, "a": b"5"})
    good = payload.event("track", {"type": "track", "event": "Kept\x1b[31m", "visitorId": "v1"})
    redis.xadd(DEAD_STREAM, {"p": payload.encode(good), "a": b"5"})
    probe = (
        "import io, sys\n"
        "from pendo_plugin.cli.dead_letters import dead_letters\n"
        "out = io.StringIO()\n"
        "code = dead_letters(sys.argv[1], out=out)\n"
        "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1]\n"
        "print(out.getvalue() + f'exit {code} peak_kb {peak}')\n"
    )
    env = app_env("http://127.0.0.1:9", "/nonexistent", "http://127.0.0.1:9", redis_url=redis_server.url)
    listed = subprocess.run([sys.executable, "-c", probe, "list"], env=env, capture_output=True, text=True,
                            timeout=90, check=False)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"{HUGE_ENTRIES + 1} entries in {DEAD_STREAM}", listed.stdout
    assert sum("not a payload" in line for line in lines) == HUGE_ENTRIES, listed.stdout
    assert sum("track 'Kept" in line and line.endswith(" of v1") for line in lines) == 1, listed.stdout
    assert "\x1b" not in listed.stdout  # escaped
    assert int(lines[-1].split()[-1]) < 200_000, lines[-1]
    retried = subprocess.run([sys.executable, "-c", probe, "retry"], env=env, capture_output=True, text=True,
                             timeout=90, check=False)  # fmt: skip
    assert "1 entry moved back" in retried.stdout, retried.stdout + retried.stderr
    assert int(retried.stdout.splitlines()[-1].split()[-1]) < 200_000, retried.stdout
    assert redis.xlen(DEAD_STREAM) == HUGE_ENTRIES and redis.xlen(STREAM) == 1
