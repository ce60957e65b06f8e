"""Under gevent's ``monkey.patch_all()`` the plugin's worker runs on a real OS thread (not a greenlet on
the app's hub), and delivery, ``flush()`` and the exit drain work across that thread boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, run_app

GEVENT_APP = """
from gevent import monkey

monkey.patch_all()

import json, os, threading
from gevent import monkey

import pendo_plugin
from pendo_plugin import destination
from segment.analytics import Client

client = Client("test-write-key", host=os.environ["SEGMENT_HOST"], upload_interval=0.05)
for n in range(10):
    client.track(user_id="g", event="Green", properties={"n": n})
client.flush()  # waits on the worker's thread from the hub's
worker = destination.runtime()._thread
native_ident = monkey.get_original("_thread", "get_ident")
print(json.dumps({
    "worker_is_greenlet": isinstance(worker, threading.Thread),
    "worker_os_thread": worker.ident,
    "hub_os_thread": native_ident(),
    "sent_before_exit": pendo_plugin.stats().get("sent:track", 0),
}), flush=True)
for n in range(10, 20):
    client.track(user_id="g", event="Green", properties={"n": n})
# leaves without a flush: the exit drain delivers 10..19
"""


def test_worker_runs_on_a_native_thread_under_gevent(sandbox: Sandbox, spool_dir: Path) -> None:
    pytest.importorskip("gevent")
    sandbox.set_latency(0.2)
    app = run_app(GEVENT_APP, app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=5))
    assert app.returncode == 0, app.describe()
    [report] = app.reports()
    assert report["worker_is_greenlet"] is False, report
    assert report["worker_os_thread"] not in (None, report["hub_os_thread"]), report
    assert report["sent_before_exit"] == 10, report
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(20))
