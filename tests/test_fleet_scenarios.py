"""Fleet mode with real processes, a real redis-server and the Pendo stand-in: a killed process's
events delivered by another, Redis restarted mid-run, and Redis unreachable from the start."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, run_app, wait_until
from tests.fleet_redis import RedisServer

WAIT_FOR_STDIN = """
print("ready", flush=True)
sys.stdin.readline()
"""
KILLED_APP = (
    """
client = make_client()
send(client, 300, user="killed")
client.flush()
"""
    + WAIT_FOR_STDIN
)
SIBLING_APP = "report(flushed=pendo_plugin.flush(30))" + WAIT_FOR_STDIN


def _delivered(box: Sandbox) -> set[tuple[str, int]]:
    return {(e["visitorId"], e["properties"]["n"]) for e in box.track_events()}


def _start(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_process_with_its_spool_gone_is_delivered_by_another(
    sandbox: Sandbox, redis_server: RedisServer, closed_url: str, tmp_path: Path
) -> None:
    dead_spool = tmp_path / "spool-killed"
    # process A: Pendo is down, so every event waits in Redis (some held by A itself), then kill -9
    killed = _start(
        app_script(KILLED_APP),
        app_env(closed_url, dead_spool, sandbox.url, redis_url=redis_server.url, redis_claim_after=1),
    )
    try:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
        client = redis_server.client()
        assert wait_until(lambda: client.xlen(STREAM) == 300, timeout=20)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
    finally:
        killed.kill()
        killed.communicate()
    shutil.rmtree(dead_spool, ignore_errors=True)  # the container's disk is gone

    # process B: Pendo is up; it takes over what A held once A was silent for PENDO_REDIS_CLAIM_AFTER
    sibling = _start(
        app_script(SIBLING_APP),
        app_env(
            sandbox.url,
            tmp_path / "spool-sibling",
            sandbox.url,
            redis_url=redis_server.url,
            redis_claim_after=1,
        ),
    )
    try:
        assert sandbox.wait_for(lambda box: len(_delivered(box)) == 300, timeout=30)
    finally:
        _, err = sibling.communicate("\n", timeout=30)
    assert sibling.returncode == 0, err
    assert _delivered(sandbox) == {("killed", n) for n in range(300)}
    assert client.xlen(STREAM) == 0


def test_redis_restarted_mid_run_with_appendonly_loses_nothing(
    sandbox: Sandbox, redis_server_aof: RedisServer, tmp_path: Path
) -> None:
    script = app_script(
        """
        client = make_client()
        for chunk in range(40):
            send(client, 25, user="restart", start=chunk * 25)
            time.sleep(0.05)  # a steady stream of traffic for about two seconds
        report(flushed=pendo_plugin.flush(30))
        """
    )
    env = app_env(
        sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server_aof.url, redis_claim_after=1
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.wait_for(lambda box: len(_delivered(box)) >= 200, timeout=20)
        redis_server_aof.restart()
    finally:
        run = finish_app(process, started, timeout=60)
    assert run.returncode == 0, run.describe()
    assert run.reports()[-1]["flushed"], run.describe()
    assert sandbox.wait_for(lambda box: len(_delivered(box)) == 1000, timeout=20), run.describe()
    assert _delivered(sandbox) == {("restart", n) for n in range(1000)}


def test_redis_unreachable_from_the_start_holds_and_harms_nothing(
    sandbox: Sandbox, blackhole_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Without the fleet's flags (the kill switch may be on) a process sends nothing: what it routes waits
    in its spool, and a process that reaches Redis later moves it to the stream and delivers it."""
    redis_url = "redis://" + blackhole_url.removeprefix("http://")  # accepts connections, never answers
    script = app_script(
        """
        client = make_client()
        slowest = 0.0
        for n in range(200):
            began = time.perf_counter()
            client.track(user_id="alone", event="Reliability", properties={"n": n})
            slowest = max(slowest, time.perf_counter() - began)
        client.flush()
        report(flushed=pendo_plugin.flush(30), slowest=slowest)
        """
    )
    spool = tmp_path / "spool"
    run = run_app(script, app_env(sandbox.url, spool, sandbox.url, redis_url=redis_url))
    assert run.returncode == 0, run.describe()
    report = run.reports()[-1]
    assert not report["flushed"], run.describe()  # held, and flush says so at once
    assert run.seconds < 20, run.describe()
    assert report["slowest"] < 0.25, run.describe()  # Redis's 1 s timeout never reaches track()
    assert _delivered(sandbox) == set()
    assert len(sandbox.segment_messages()) == 200  # Segment's own upload is untouched
    assert run.stderr.count("is not answering") == 1, run.describe()
    assert report["stats"]["redis:fallback"] >= 1

    later = run_app(
        app_script("report(flushed=pendo_plugin.flush(30))"),
        app_env(sandbox.url, spool, sandbox.url, redis_url=redis_server.url),
    )
    assert later.reports()[-1]["flushed"], later.describe()
    assert _delivered(sandbox) == {("alone", n) for n in range(200)}
