"""Held states in fleet mode reach what already waits in memory, and a process holds until it has read the
fleet's flags: real processes, a real redis-server, a Pendo stand-in that answers 429 past its limit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, run_app, start_app, wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer

BOUND = 5.0  # the design's propagation bound
PROCESSES = 6
PER_SECOND = 40
PENDO_LIMIT = 100  # the stand-in answers 429 past this many requests a second
BUDGET = 80  # PENDO_RATE_LIMIT

STEADY_APP = """
client = make_client()
sent = []  # (monotonic time, n) of each event, for the test to know what was tracked before the switch
n = 0
while not os.path.exists(os.environ["STOP_FILE"]) and n < 20000:
    client.track(user_id=f"u{os.getpid()}", event="Steady", properties={"n": n})
    sent.append((time.monotonic(), n))
    n += 1
    time.sleep(1 / float(os.environ["PER_SECOND"]))
client.flush()
report(flushed=pendo_plugin.flush(float(os.environ["FLUSH_WAIT"])), sent=sent, pid=os.getpid())
"""


def _rollout(redis_url: str, tmp_path: Path, *args: str) -> None:
    closed = "http://127.0.0.1:9"
    env = {**app_env(closed, tmp_path / "cli", closed), "PENDO_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "rollout", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def _track_requests(box: Sandbox, after: float, before: float = float("inf")) -> int:
    return sum(1 for entry in box.request_log() if entry.path == "/data/track" and after < entry.at < before)


def test_kill_switch_stops_a_loaded_fleet_within_the_bound_and_loses_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=PENDO_LIMIT) as box:
        stop_file = tmp_path / "stop"
        started = time.monotonic()
        processes = []
        for n in range(PROCESSES):
            env = app_env(
                box.url, tmp_path / f"spool{n}", box.url, redis_url=redis_server.url, rate_limit=BUDGET
            )
            env.update(STOP_FILE=str(stop_file), PER_SECOND=str(PER_SECOND), FLUSH_WAIT="1")
            processes.append(start_app(app_script(STEADY_APP), env))
        try:
            assert box.wait_for(lambda b: len({e["visitorId"] for e in b.track_events()}) == PROCESSES, 30)
            time.sleep(3.0)  # let the fleet run past its budget: a backlog waits in every process
            _rollout(redis_server.url, tmp_path, "set", "--enabled", "false")
            switched_at = time.monotonic()
            assert wait_until(lambda: time.monotonic() > switched_at + BOUND + 4.0, timeout=BOUND + 5.0)
            late = _track_requests(box, switched_at + BOUND)
            _rollout(redis_server.url, tmp_path, "clear")
        finally:
            stop_file.touch()
            runs = [finish_app(process, started, timeout=60) for process in processes]
        for run in runs:
            assert run.returncode == 0, run.describe()
        assert late == 0, f"{late} track requests reached Pendo past the bound"
        # what was tracked before the switch was held, not lost: after the clear, a process delivers it
        before = {
            (f"u{report['pid']}", n)
            for run in runs
            for report in run.reports()[-1:]
            for at, n in report["sent"]
            if at < switched_at - 1.0
        }
        drain = run_app(
            app_script("report(flushed=pendo_plugin.flush(60))"),
            app_env(box.url, tmp_path / "drain", box.url, redis_url=redis_server.url, rate_limit=BUDGET),
            timeout=90,
        )
        assert drain.returncode == 0, drain.describe()
        delivered = {(e["visitorId"], e["properties"]["n"]) for e in box.track_events()}
        missing = before - delivered
        assert not missing, f"{len(missing)} of {len(before)} events tracked before the switch never arrived"


FIVE_MESSAGES_APP = """
client = make_client()
client.identify(user_id="fresh", traits={"plan": "pro"})
client.group(user_id="fresh", group_id="acme", traits={"tier": "gold"})
for n in range(3):
    client.track(user_id="fresh", event="Fresh", properties={"n": n})
client.flush()
report(flushed=pendo_plugin.flush(5))
"""


def test_a_process_started_while_the_switch_is_off_sends_nothing(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.client().hset(FLAGS_KEY, "enabled", "false")
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url)
    run = run_app(app_script(FIVE_MESSAGES_APP), env)
    assert run.returncode == 0, run.describe()
    report = run.reports()[-1]
    pendo_paths = [e.path for e in sandbox.request_log() if not e.path.startswith("/v1/")]  # /v1: Segment
    assert pendo_paths == []
    # each message was written ahead to the stream before the flags came, or decided off after them
    waiting = redis_server.client().xlen(STREAM)
    assert waiting + report["stats"].get("rollout:off_kill_switch", 0) == 5, run.describe()

    redis_server.client().delete(FLAGS_KEY)  # the clear: a process delivers what was held
    drain_env = {**env, "PENDO_SPOOL_DIR": str(tmp_path / "s2")}
    drain = run_app(app_script("report(flushed=pendo_plugin.flush(30))"), drain_env)
    assert drain.reports()[-1]["flushed"], drain.describe()
    arrived = len(sandbox.track_events()) + len(sandbox.visitors()) + len(sandbox.accounts())
    assert arrived == waiting
    assert redis_server.client().xlen(STREAM) == 0
