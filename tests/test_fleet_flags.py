"""Fleet-wide live flags: `pendo-plugin rollout show|set|clear` writes them to Redis, every process
applies them within the bound, and what is read back from Redis is checked."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin import cli, config, counters
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, validate
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, start_app, wait_until
from tests.fleet_redis import RedisServer

BOUND = 5.0  # the design's propagation bound
PROCESSES = 4


def test_only_known_checked_flags_are_taken_from_redis(tmp_path: Path) -> None:
    listing = tmp_path / "ids.txt"
    listing.write_text("u1\n")
    flags, problems = validate(
        {
            b"enabled": b"false",
            b"rollout_percent": b"12.5",
            b"deny_visitors": f"@{listing}".encode(),
            b"shadow": b"maybe",
            b"track_secret": b"not-a-flag",
            b"calls": b"\xff\xfe",
        }
    )
    assert flags == {"enabled": "false", "rollout_percent": "12.5"}
    assert len(problems) == 4
    assert any("from a file is not accepted" in p for p in problems)
    assert any("PENDO_SHADOW" in p for p in problems)


def test_cli_sets_shows_and_clears_the_fleet_flags(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PENDO_REDIS_URL", redis_server.url)
    assert cli.main(["rollout", "set", "--percent", "25", "--deny-events", "Secret Event,Other"]) == 0
    assert redis_server.client().hgetall(FLAGS_KEY) == {
        b"rollout_percent": b"25",
        b"deny_events": b"Secret Event,Other",
    }
    assert cli.main(["rollout", "show"]) == 0
    shown = capsys.readouterr().out
    assert "rollout_percent  25" in shown
    assert "enabled          (not set" in shown

    assert cli.main(["rollout", "set", "--percent", "140"]) == cli.EXIT_USAGE
    assert "PENDO_ROLLOUT_PERCENT" in capsys.readouterr().err
    assert redis_server.client().hget(FLAGS_KEY, "rollout_percent") == b"25"  # nothing written

    assert cli.main(["rollout", "clear"]) == 0
    assert redis_server.client().exists(FLAGS_KEY) == 0


def test_cli_needs_fleet_mode(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PENDO_REDIS_URL", raising=False)
    assert cli.main(["rollout", "show"]) == cli.EXIT_USAGE
    assert "PENDO_REDIS_URL" in capsys.readouterr().err


def test_a_running_process_applies_the_flags_over_its_settings(
    plugin: Sandbox, redis_server: RedisServer
) -> None:
    from segment.analytics import Client

    pendo_plugin.configure(redis_url=redis_server.url, rollout_percent=100)
    client = Client("test-write-key", host=plugin.url, upload_interval=0.05)
    client.track(user_id="u1", event="Before")
    client.flush()
    assert pendo_plugin.flush(10)
    redis_server.client().hset(FLAGS_KEY, mapping={"rollout_percent": "0", "shadow": "yes"})
    assert wait_until(lambda: config.current().rollout.percent == 0, timeout=BOUND)
    assert config.current().shadow
    assert counters.snapshot()["fleet_flags:applied"] >= 1
    redis_server.client().delete(FLAGS_KEY)
    assert wait_until(lambda: config.current().rollout.percent == 100, timeout=BOUND)
    client.join()


SENDER_APP = """
client = make_client()
n = 0
while not os.path.exists(os.environ["STOP_FILE"]) and n < 20000:
    send(client, 5, user=f"u{os.getpid()}", start=n)
    n += 5
    time.sleep(0.05)  # a steady flow of about a hundred events a second
client.flush()
report(sent=n)
"""


def _track_times(box: Sandbox) -> list[float]:
    return [entry.at for entry in box.request_log() if entry.path == "/data/track" and entry.status == 200]


def test_kill_switch_stops_every_process_within_the_bound(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    stop_file = tmp_path / "stop"
    processes = []
    started = time.monotonic()
    for n in range(PROCESSES):
        env = app_env(sandbox.url, tmp_path / f"spool{n}", sandbox.url, redis_url=redis_server.url)
        env["STOP_FILE"] = str(stop_file)
        processes.append(start_app(app_script(SENDER_APP), env))
    try:
        assert sandbox.wait_for(
            lambda box: len({e["visitorId"] for e in box.track_events()}) == PROCESSES, timeout=30
        )
        switch = subprocess.run(
            [sys.executable, "-m", "pendo_plugin.cli", "rollout", "set", "--enabled", "false"],
            env={**app_env(sandbox.url, tmp_path / "cli", sandbox.url), "PENDO_REDIS_URL": redis_server.url},
            capture_output=True,
            text=True,
            timeout=30,
        )
        switched_at = time.monotonic()
        assert switch.returncode == 0, switch.stderr
        # watch for two more seconds past the bound: no track request may reach Pendo after it
        late = sandbox.wait_for(
            lambda box: any(at > switched_at + BOUND for at in _track_times(box)),
            timeout=BOUND + 2.0,
        )
    finally:
        stop_file.touch()
        runs = [finish_app(process, started, timeout=60) for process in processes]
    assert not late, f"sent {sum(at > switched_at + BOUND for at in _track_times(sandbox))} after the bound"
    for run in runs:
        assert run.returncode == 0, run.describe()
        stats = run.reports()[-1]["stats"]
        assert stats["rollout:off_kill_switch"] > 0, run.describe()  # it kept sending, Pendo got none
    assert max(_track_times(sandbox)) <= switched_at + BOUND
