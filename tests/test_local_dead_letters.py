"""The local dead letter: a spooled payload that fails on its own account DEAD_AFTER times, counted across
the processes that replay it (in its spool line), is moved to the spool's quarantine; an outage never
counts. Real app subprocesses, real spool files, the sandbox answering 500 to every track event."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pendo_plugin.delivery.dead_letters import DEAD_AFTER, dead_files
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app

FIRST = app_script("""
    client = make_client()
    send(client, 1, event="Poison")
    client.flush()
    pendo_plugin.flush(10)
    report()
""")
LATER = app_script("""
    pendo_plugin.flush(10)  # replays the spool
    report()
""")


def _spooled_failures(spool_dir: Path) -> list[int]:
    files = Spool(spool_dir, 1 << 40).files()
    lines = [json.loads(line) for path in files for line in path.read_bytes().splitlines()]
    return [line.get("f", 0) for line in lines]


def _track_requests(box: Sandbox) -> int:
    return sum(1 for entry in box.request_log() if entry.path == "/data/track")


def test_a_payload_that_always_fails_is_a_dead_letter_after_its_budget_across_processes(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    sandbox.fail_next(10_000, 500)  # every track request is answered 500
    env = app_env(sandbox.url, spool_dir, sandbox.url, max_retries=1)
    run = run_app(FIRST, env)
    assert run.returncode == 0, run.describe()
    seen = _spooled_failures(spool_dir)  # its retry budget spent (and the flush's replay): kept in its line
    assert len(seen) == 1 and 1 <= seen[0] < DEAD_AFTER, run.describe()
    for _ in range(DEAD_AFTER):  # each later process replays it once and counts one more failure
        run = run_app(LATER, env)
        assert run.returncode == 0, run.describe()
        now = _spooled_failures(spool_dir)
        if not now:
            break
        assert now == [seen[0] + 1], run.describe()
        seen = now
    stats = run.reports()[-1]["stats"]
    assert seen == [DEAD_AFTER - 1] and _spooled_failures(spool_dir) == []  # dead at 5: no longer retried
    dead = dead_files(spool_dir)
    assert len(dead) == 1 and json.loads(dead[0].read_bytes())["b"]["event"] == "Poison"
    assert stats["spool_quarantined:dead_letter"] == 1, stats
    assert run.stderr.count("failed 5 times") == 1, run.describe()  # logged once
    requests = _track_requests(sandbox)
    assert requests == DEAD_AFTER + 1  # one attempt per failure, plus the first one's retry
    run = run_app(LATER, env)  # a later process sends nothing more
    assert _track_requests(sandbox) == requests, run.describe()


def test_an_outage_never_makes_a_dead_letter(sandbox: Sandbox, spool_dir: Path, closed_url: str) -> None:
    env = app_env(closed_url, spool_dir, sandbox.url, max_retries=1)
    assert run_app(FIRST, env).returncode == 0
    for _ in range(DEAD_AFTER + 1):
        run = run_app(LATER, env)
        assert run.returncode == 0, run.describe()
    assert _spooled_failures(spool_dir) == [0]  # Pendo never answered: not the payload's failure
    assert dead_files(spool_dir) == []
    delivered = run_app(LATER, app_env(sandbox.url, spool_dir, sandbox.url))  # Pendo back: delivered
    assert delivered.returncode == 0 and [e["event"] for e in sandbox.track_events()] == ["Poison"]


def _until_dead(env: dict[str, str], spool_dir: Path) -> None:
    run_app(FIRST, env)
    for _ in range(DEAD_AFTER):
        if dead_files(spool_dir):
            break
        run_app(LATER, env)
    assert len(dead_files(spool_dir)) == 1


def test_spool_dead_lists_retries_and_purges_the_local_dead_letters(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    sandbox.fail_next(10_000, 500)
    env = app_env(sandbox.url, spool_dir, sandbox.url, max_retries=0)
    _until_dead(env, spool_dir)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "spool", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    status = cli("status")
    assert "dead letters 1 payload" in status.stdout, status.stdout + status.stderr
    listed = cli("dead", "list")
    assert listed.returncode == 0 and "failed 5x" in listed.stdout and "Poison" in listed.stdout, listed
    retried = cli("dead", "retry")
    assert retried.returncode == 0 and dead_files(spool_dir) == [], retried
    assert _spooled_failures(spool_dir) == [0]  # back in the spool, its failures reset
    sandbox.reset()  # Pendo accepts it now
    assert run_app(LATER, env).returncode == 0
    assert [e["event"] for e in sandbox.track_events()] == ["Poison"]

    sandbox.fail_next(10_000, 500)
    _until_dead(env, spool_dir)
    purged = cli("dead", "purge", "--yes")
    assert purged.returncode == 0 and dead_files(spool_dir) == [], purged
    assert "dead letters 0 payload" in cli("status").stdout
