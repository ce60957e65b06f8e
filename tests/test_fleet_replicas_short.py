"""PENDO_REDIS_REPLICAS above the replicas that answer: nothing stalls or is lost, and the process
says once that each append is also sent from its local spool (so Pendo receives it twice)."""

from __future__ import annotations

import collections
from pathlib import Path

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer


def test_too_few_replicas_is_one_log_line_and_nothing_is_lost(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    script = app_script(
        """
        client = make_client()
        for chunk in range(4):
            send(client, 50, user="short", start=chunk * 50)
            time.sleep(0.6)  # several appends, each waiting WAIT's 0.5 s
        client.flush()
        report(flushed=pendo_plugin.flush(20))
        """
    )
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, redis_replicas=2)
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert stats["redis:not_replicated"] == 200, stats
    assert run.stderr.count("0 of PENDO_REDIS_REPLICAS=2 replicas confirmed an append") == 1, run.describe()
    delivered = collections.Counter(e["properties"]["n"] for e in sandbox.track_events())
    assert set(delivered) == set(range(200))  # each at least once: from the stream and from the spool
