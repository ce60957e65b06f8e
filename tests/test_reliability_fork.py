"""Forked workers: their own events reach Pendo when they exit normally without a flush, and they
never resend what the parent had queued before the fork.

The parent queues events for visitor P while Pendo is slow (so they are still queued or in flight
at the fork); the child sends events for visitor C and leaves without calling flush. P's events
must arrive exactly once, sent by the parent (its own counters say so); C's must arrive too.

The parent waits for Segment's own queue before it forks (``client.queue.join()``, Segment's queue only,
not the plugin's): Segment's SDK keeps one module-level ``requests`` session, so a child forked while
Segment's uploader is busy can share its connection pool, locks and sockets with the parent (see
docs/reliability.md). That is Segment's behaviour, not what these tests are about.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app

PARENT_EVENTS = 20
CHILD_EVENTS = 10

FORK_BODY = f"""
client = make_client()
send(client, {PARENT_EVENTS}, user="P")  # Pendo answers after 0.5 s: these are queued or in flight
client.queue.join()  # Segment's uploader idle at the fork (see the module's docstring)
pid = os.fork()
if pid == 0:
    child = make_client()  # a worker's own client (the parent's has no consumer thread here)
    send(child, {CHILD_EVENTS}, user="C")
    child.queue.join()  # Segment's queue only: the plugin is left to its exit hook
    sys.exit(0)  # a normal exit, no flush
_, status = os.waitpid(pid, 0)
client.flush()
report(child_status=status)
"""

MULTIPROCESSING_BODY = f"""
import multiprocessing


def work():
    child = make_client()
    send(child, {CHILD_EVENTS}, user="C")
    child.queue.join()
    # returns: multiprocessing ends the child with os._exit(), skipping atexit


if __name__ == "__main__":
    client = make_client()
    send(client, {PARENT_EVENTS}, user="P")
    client.queue.join()  # Segment's uploader idle at the fork (see the module's docstring)
    worker = multiprocessing.get_context("fork").Process(target=work)
    worker.start()
    worker.join()
    client.flush()
    report(child_status=worker.exitcode)
"""


def by_visitor(sandbox: Sandbox) -> dict[str, Counter[int]]:
    seen: dict[str, Counter[int]] = {"P": Counter(), "C": Counter()}
    for event in sandbox.track_events():
        seen[event["visitorId"]][event["properties"]["n"]] += 1
    return seen


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_worker_delivers_its_events_at_exit_and_never_resends_the_parents(
    sandbox: Sandbox, spool_dir: Path, how: str
) -> None:
    sandbox.set_latency(0.5)
    body = FORK_BODY if how == "os.fork" else MULTIPROCESSING_BODY
    app = run_app(app_script(body), app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=10))
    assert app.returncode == 0, app.describe()
    report = app.reports()[-1]
    assert report["child_status"] == 0, app.describe()

    seen = by_visitor(sandbox)
    assert seen["P"] == Counter(range(PARENT_EVENTS)), "the parent's events exactly once"
    assert seen["C"] == Counter(range(CHILD_EVENTS)), "the child's events, delivered at its exit"
    # the parent's counters start before the fork and are its own: it sent every P event itself
    assert report["stats"]["sent:track"] == PARENT_EVENTS, report["stats"]
    assert Spool(spool_dir, 1 << 40).status().items == 0


GUNICORN_APP = """
import os
from segment.analytics import Client

client = Client("test-write-key", host=os.environ["SEGMENT_HOST"], upload_interval=0.05)  # preloaded


def app(environ, start_response):
    client.track(user_id="G", event="Request", properties={"n": int(environ["QUERY_STRING"])})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None, reason="gunicorn"
)
def test_gunicorn_preload_worker_delivers_at_graceful_exit(
    sandbox: Sandbox, spool_dir: Path, tmp_path: Path
) -> None:
    import requests

    (tmp_path / "wsgi_app.py").write_text(GUNICORN_APP)
    env = app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=10)
    sandbox.set_latency(0.5)  # requests to Pendo are still in flight when the worker is told to stop
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [
        gunicorn,
        "--preload",
        "-w",
        "2",
        "-b",
        "127.0.0.1:0",
        "--chdir",
        str(tmp_path),
        "wsgi_app:app",
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        assert server.stderr is not None
        for line in server.stderr:
            if "Listening at:" in line:
                port = line.rsplit(":", 1)[1].split()[0]
            if "Booting worker" in line and port:
                break
        assert port, "gunicorn did not start"
        for n in range(10):
            assert requests.get(f"http://127.0.0.1:{port}/?{n}", timeout=10).status_code == 200
    finally:
        server.terminate()  # graceful: workers leave through sys.exit(), running atexit
        server.communicate(timeout=30)
    assert Counter(event["properties"]["n"] for event in sandbox.track_events()) == Counter(range(10))


EARLY_FORK_BODY = """
import logging
logging.basicConfig(level=logging.INFO, format="%(process)d %(message)s")
client = make_client()
send(client, 1, user="P")  # the worker thread is still importing asyncio and aiohttp at the fork
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
client.flush()
report(pid=os.getpid())
"""


def test_a_fork_while_the_worker_imports_writes_nothing_to_stderr(sandbox: Sandbox, spool_dir: Path) -> None:
    """fork() waits for the worker's imports; a module they import registers its own at-fork pair
    (concurrent.futures: acquire before, release after) during that wait. Its release must not run
    without its acquire ("Exception ignored ... RuntimeError: release unlocked lock" in the app's stderr)."""
    for _ in range(3):  # the race is narrow on a fast machine: three fresh processes
        app = run_app(app_script(EARLY_FORK_BODY), app_env(sandbox.url, spool_dir, sandbox.url))
        assert app.returncode == 0, app.describe()
        assert "Exception ignored" not in app.stderr, app.describe()
        live = [line for line in app.stderr.splitlines() if "is live in this process" in line]
        assert live == [line for line in live if line.startswith(f"{app.reports()[-1]['pid']} ")], live
        assert len(live) == 1, app.describe()
