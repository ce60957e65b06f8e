"""Hostile entries written straight into the fleet's stream by someone with write access to Redis: they
are dropped and counted inside Redis, and what was tracked beside them is delivered (docs/fleet.md)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pendo_plugin.delivery.fleet.entries import DEAD_STREAM, GROUP, STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, run_app, wait_until
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
    for _ in range(HUGE_ENTRIES - 1):
        redis.xadd(STREAM, {"p": b"x" * HUGE_BYTES})
    redis.xadd(STREAM, {b"n" * HUGE_BYTES: b"1"})  # the size in a field's name
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



def test_flush_is_false_while_the_fleet_flags_hold_what_this_process_read(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The percentage lowered to 0 before the first send: the 40 entries this process read were parked and
    flush() said True at once, none delivered; after the clear only the first 32 were read again (one
    read's worth) and flush() said True with 33 of 40 delivered. Now: False, then all 40, once each."""
    script = app_script(
        """
        client = make_client()
        send(client, 40, user="parked")
        open(os.environ["TRACKED"], "w").close()
        while "rollout_percent=0" not in open(os.environ["LOG"]).read():
            time.sleep(0.05)
        report(flushed=pendo_plugin.flush(5))
        open(os.environ["FLUSHED"], "w").close()
        while "applied: none" not in open(os.environ["LOG"]).read():
            time.sleep(0.05)
        report(flushed=pendo_plugin.flush(60))
        """
    )
    marks = {name: tmp_path / name for name in ("TRACKED", "FLUSHED", "LOG")}
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, rate_limit=5)
    env.update({name: str(path) for name, path in marks.items()})
    with marks["LOG"].open("w") as log:
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                   stderr=log, text=True)  # fmt: skip
        assert wait_until(marks["TRACKED"].exists, timeout=30)
        redis_server.client().hset(FLAGS_KEY, "rollout_percent", "0")
        assert wait_until(marks["FLUSHED"].exists, timeout=30)
        delivered_while_held = len(sandbox.track_events())
        redis_server.client().delete(FLAGS_KEY)
        run = finish_app(process, started, 120)
    first, last = (report["flushed"] for report in run.reports())
    assert delivered_while_held < 40, run.describe()  # some were held: the case under test
    assert first is False, run.describe()
    assert last is True, run.describe()
    delivered = Counter(event["properties"]["n"] for event in sandbox.track_events())
    assert sorted(delivered) == list(range(40)) and set(delivered.values()) == {1}, delivered


def test_a_poison_visitor_row_holds_back_no_good_row_in_fleet_mode(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """One row Pendo always answers 500 among 250 identify calls: each later batch of visitors waited for
    the batch before it, and the good half of a split waited out the bad half's retries, so 125 of the 249
    good rows arrived within a 10 s flush (the rest waited behind ~36 s of retries)."""
    sandbox.fail_rows(["v-poison"], 500)
    script = app_script(
        """
        client = make_client()
        for n in range(250):
            client.identify(user_id="v-poison" if n == 125 else "v%d" % n, traits={"n": n})
        client.flush()
        report(flushed=pendo_plugin.flush(10))
        """
    )
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url)
    run = run_app(script, env, timeout=90)
    assert run.returncode == 0, run.describe()
    assert run.reports()[-1]["flushed"] is False  # the poison row is not delivered
    assert sorted(sandbox.visitors()) == sorted(f"v{n}" for n in range(250) if n != 125), run.describe()
