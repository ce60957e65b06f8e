"""Pendo down costs ``flush()`` little: once its host refused several connections in a row (the
sender's breaker), ``analytics.flush()`` and exit leave the rest in the spool at once instead of
spending their budget on retries nobody asked for; a later ``pendo-plugin spool drain`` delivers all.

Beside it, the 503 + Retry-After case (Pendo is up and asked for the wait), which is still waited out:
``test_reliability_flush.py::test_short_lived_job_delivers_everything_through_503s_before_it_exits``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.test_reliability_flush import EXIT_SLACK, delivered, spooled

N = 5  # few events: the old 32-failure breaker took 17 s to open with six
FLUSH_BOUND = 2.0  # the bound for analytics.flush() with Pendo refusing connections


def test_flush_with_pendo_refusing_connections_is_quick_and_loses_nothing(
    sandbox: Sandbox, closed_url: str, spool_dir: Path
) -> None:
    """The real SDK's ``analytics.flush()`` with Pendo refusing every connection returns within 2 s
    (it took 17.2 s before the breaker short-circuit), exit is quick too, every event waits in the
    spool, and ``spool drain`` against a Pendo that is back delivers each exactly once."""
    script = app_script(
        f"""
        client = make_client()
        send(client, {N})
        client.identify("u1", {{"plan": "pro"}})
        started = time.monotonic()
        client.flush()  # the SDK's flush, which runs the plugin's segment_flush hook
        report(took=time.monotonic() - started)
        """
    )
    env = app_env(closed_url, spool_dir, sandbox.url, shutdown_timeout=5, flush_timeout=30)
    app = run_app(script, env)
    assert app.returncode == 0, app.describe()
    last = app.reports()[-1]
    assert last["took"] <= FLUSH_BOUND, app.describe()
    assert app.ended_at - last["at"] < FLUSH_BOUND + EXIT_SLACK, app.describe()
    assert len(sandbox.segment_messages()) == N + 1, "Segment's own upload is whole"
    assert spooled(spool_dir) == N + 1, "every payload waits in the spool"

    drain_env = app_env(sandbox.url, spool_dir, sandbox.url)
    drained = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "spool", "drain"],
        env=drain_env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert delivered(sandbox) == Counter(range(N)), "each event delivered exactly once"
    assert sandbox.visitors()["u1"]["plan"] == "pro"
    assert spooled(spool_dir) == 0
    print(f"flush {last['took']:.2f}s with Pendo refusing connections; {N}/{N} delivered by spool drain")
