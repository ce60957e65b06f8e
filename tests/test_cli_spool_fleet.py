"""``pendo-plugin spool drain`` in fleet mode delivers what waits in the Redis stream, and says so.

The issue's case: an app in fleet mode ran while Pendo refused connections, so its events wait in the
stream (``spool status`` lists them) while the local spool is empty. A real app process, a real
``redis-server``, the command in a subprocess, the sandbox as the Pendo that is back.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer
from tests.test_reliability_flush import delivered, spooled

N = 5


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "spool", *args], env=env,
                          capture_output=True, text=True, timeout=90, check=False)


def test_spool_drain_in_fleet_mode_delivers_the_stream(
    sandbox: Sandbox, closed_url: str, spool_dir: Path, redis_server: RedisServer
) -> None:
    script = app_script(f"client = make_client()\nsend(client, {N})\nclient.flush()\nreport()\n")
    app = run_app(script, app_env(closed_url, spool_dir, sandbox.url, redis_url=redis_server.url))
    assert app.returncode == 0, app.describe()
    redis = redis_server.client()
    assert redis.xlen(STREAM) == N, app.describe()
    assert spooled(spool_dir) == 0, "in fleet mode the backlog is in the stream, not the local spool"

    env = app_env(sandbox.url, spool_dir, sandbox.url, redis_url=redis_server.url)
    assert f"entries   {N}" in command(env, "status").stdout
    drained = command(env, "drain")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    shown = f"Draining the Redis stream {STREAM} at {redis_server.url} (fleet mode): {N} entr"
    assert shown in drained.stdout
    assert "left      0 entr(y/ies) in the stream" in drained.stdout
    assert f"sent      track {N}" in drained.stdout, drained.stdout
    assert delivered(sandbox) == Counter(range(N))
    assert redis.xlen(STREAM) == 0
