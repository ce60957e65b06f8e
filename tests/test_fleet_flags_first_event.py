"""A fleet-wide kill switch applies from a new process's very first event: the worker reads the
fleet's flags before it routes anything (a process used to route its first events with its
environment's flags, so every restart of a fleet leaked events past the kill switch)."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer


def test_a_fleet_kill_switch_holds_a_new_process_first_events(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.client().hset(FLAGS_KEY, "enabled", "false")
    script = app_script(
        """
        client = make_client()
        send(client, 50, user="first")
        client.flush()
        report(flushed=pendo_plugin.flush(10))
        """
    )
    run = run_app(script, app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url))
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert sandbox.track_events() == [], run.describe()
    assert stats["rollout:off_kill_switch"] == 50, stats
    assert len(sandbox.segment_messages()) == 50  # Segment's own upload is untouched
