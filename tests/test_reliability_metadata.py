"""Metadata across processes: an identify left in the spool by a stopped process never overwrites a
newer one; the newest value of each field, by the message's own timestamp, ends up in Pendo.

Real interpreters with the plugin autoloaded from PENDO_* variables, a real Segment client, the
sandbox on 127.0.0.1 and real spool files.
"""

from __future__ import annotations

import json
from pathlib import Path

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app, start_app


def spooled(spool_dir: Path) -> int:
    return Spool(spool_dir, 1 << 40).status().items


def test_an_identify_left_in_the_spool_does_not_overwrite_a_newer_one(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    """Run A: identify(u1, plan=free), SIGTERM before its metadata batch leaves. Run B, later:
    identify(u1, plan=pro). B's worker replays A's row from the spool and merges it with its own:
    Pendo ends with ``pro``."""
    run_a = app_script(
        """
        import threading
        client = make_client()
        client.identify("u1", {"plan": "free"})
        deadline = time.monotonic() + 10
        while pendo_plugin.stats().get("written_ahead", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        report(phase="written ahead")
        threading.Event().wait(60)  # the metadata batch waits for its interval: stopped before it leaves
        """
    )
    app = start_app(run_a, app_env(sandbox.url, spool_dir, sandbox.url, batch_interval=30))
    try:
        line = app.stdout.readline() if app.stdout else ""
        assert json.loads(line)["stats"].get("written_ahead") == 1, line
    finally:
        app.terminate()  # SIGTERM, no handler: no atexit, no drain
        app.wait(10)
    assert "u1" not in sandbox.visitors()
    assert spooled(spool_dir) == 1

    run_b = app_script(
        """
        client = make_client()
        client.identify("u1", {"plan": "pro"})
        client.flush()
        report(phase="leaving")
        """
    )
    second = run_app(run_b, app_env(sandbox.url, spool_dir, sandbox.url))
    assert second.returncode == 0, second.describe()
    assert sandbox.visitors()["u1"] == {"plan": "pro"}, (sandbox.metadata_requests(), second.describe())
    assert spooled(spool_dir) == 0
    segment = [message["traits"] for message in sandbox.segment_messages() if message["type"] == "identify"]
    assert {"plan": "pro"} in segment
