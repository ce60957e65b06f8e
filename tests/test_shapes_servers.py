"""Web servers in real process trees: gunicorn (sync ``--preload``, ``-k gevent``) and uWSGI (default,
``--master``, ``--master --lazy-apps``) serve an app that sends one event while it is imported and one
per request; Pendo answers slowly; the server is stopped gracefully.

Each run asserts: every request's event reached Pendo exactly once, so did each import-time event
(once per process that imported the app), both sync workers served (a hung worker fails the run), Pendo
had everything within ``PENDO_SHUTDOWN_TIMEOUT`` (plus a margin) of the stop signal, the spool is
empty, and the tree exited in time. Under uWSGI without ``--lazy-apps`` a worker's exit waits on
Segment's own ``join()``, which never returns there (its consumer thread lives in the process that
forked): with ``--master`` uWSGI kills it after ``--worker-reload-mercy``, without it nothing does.
What Segment's SDK delivered is checked for duplicates and reported; docs/reliability.md tabulates both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import requests

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, wait_until
from tests.shapes import (
    REQUESTS,
    WSGI_APP,
    Stop,
    Tally,
    free_port,
    serve_and_stop,
    server_binary,
    uwsgi_workers_idle,
)

SHUTDOWN_TIMEOUT = 5.0
LATENCY = 0.5  # Pendo answers each request after this: events are in flight when the stop comes
EXIT_MARGIN = 3.0
MERCY = 8  # uWSGI --master: seconds a worker may take to stop (Segment's join() never returns there)

BOUND = SHUTDOWN_TIMEOUT + EXIT_MARGIN

SERVERS = {
    # name: (command after the binary, signal, to the whole group, processes that import the app,
    #        bound on the tree's exit, None: a worker waits forever in Segment's join())
    "gunicorn-sync-preload": (["--preload", "-w", "2"], signal.SIGTERM, False, 1, BOUND),
    "gunicorn-gevent": (["-k", "gevent", "-w", "2"], signal.SIGTERM, False, 2, BOUND),
    # uWSGI without --lazy-apps forks while the app's own Segment consumer thread runs (the app sends at
    # import): --py-call-uwsgi-fork-hooks keeps the workers' interpreter sound (docs/reliability.md)
    "uwsgi-default": (["--py-call-uwsgi-fork-hooks"], signal.SIGINT, True, 1, None),
    "uwsgi-master": (
        ["--master", "--py-call-uwsgi-fork-hooks", f"--worker-reload-mercy={MERCY}"], signal.SIGINT, False, 1,
        BOUND + MERCY,
    ),
    "uwsgi-lazy-apps": (["--master", "--lazy-apps"], signal.SIGINT, False, 2, BOUND),
}


def command_for(shape: str, tmp_path: Path, port: int, stats_port: int = 0) -> list[str]:
    extra = SERVERS[shape][0]
    if shape.startswith("gunicorn"):
        binary = server_binary("gunicorn")
        return [binary, *extra, "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path), "wsgi_app:application"]
    binary = server_binary("uwsgi")
    return [
        binary,
        "--http-socket",
        f"127.0.0.1:{port}",
        "--chdir",
        str(tmp_path),
        "--wsgi-file",
        str(tmp_path / "wsgi_app.py"),
        "--processes",
        "2",
        "--disable-logging",
        *(["--stats", f"127.0.0.1:{stats_port}"] if "--master" in extra else []),  # --stats implies it
        *extra,
    ]


def run_shape(shape: str, sandbox: Sandbox, spool_dir: Path, tmp_path: Path, *, plugin: bool = True) -> Stop:
    """Serve and stop ``shape``; ``plugin=False`` runs it with the plugin off (Segment's SDK alone)."""
    if shape == "gunicorn-gevent":
        pytest.importorskip("gevent")
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    port = free_port()
    stats_port = free_port() if "--master" in SERVERS[shape][0] else 0
    env = app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=SHUTDOWN_TIMEOUT)
    done = tmp_path / "done"
    done.mkdir()
    env["DONE_DIR"] = str(done)
    if not plugin:
        env["PENDO_AUTOLOAD"] = "0"
    sandbox.set_latency(LATENCY)
    _, stop, to_group, imports, bound = SERVERS[shape]
    expected = REQUESTS + imports
    return serve_and_stop(
        command_for(shape, tmp_path, port, stats_port),
        env,
        port,
        stop,
        to_group=to_group,
        log=tmp_path / "server.log",
        delivered=lambda: len(sandbox.track_events()) >= expected,
        exit_wait=bound or BOUND,
        idle=lambda: finished(done) and (stats_port == 0 or uwsgi_workers_idle(stats_port)),
    )


def finished(done: Path) -> bool:
    """Every request has been closed by the server (uWSGI runs no exit hook in a busy worker)."""
    return len(list(done.iterdir())) >= REQUESTS


@pytest.mark.parametrize("shape", list(SERVERS))
def test_server_delivers_every_event_once_and_stops_in_time(
    shape: str, sandbox: Sandbox, spool_dir: Path, tmp_path: Path
) -> None:
    stopped = run_shape(shape, sandbox, spool_dir, tmp_path)
    tally = Tally.of(sandbox)
    log = (tmp_path / "server.log").read_text()[-3000:]
    seen = f"pendo={dict(tally.pendo)} segment={dict(tally.segment)} {stopped}\n{log}"

    # a sync worker serves one request at a time, so 4 concurrent ones reach both (a hung one fails
    # here); one gevent worker may accept all of them
    assert len(stopped.pids) == 2 or (shape == "gunicorn-gevent" and len(stopped.pids) == 1), seen
    assert tally.counts("pendo", "Request") == Counter(range(REQUESTS)), seen
    imports = tally.counts("pendo", "Imported")
    assert sum(imports.values()) == SERVERS[shape][3] and set(imports.values()) == {1}, seen
    assert stopped.delivered_after is not None and stopped.delivered_after < BOUND, seen
    assert Spool(spool_dir, 1 << 40).status().items == 0, seen
    assert max(tally.segment.values(), default=1) == 1, "Segment's own SDK sent no duplicate: " + seen
    bound = SERVERS[shape][4]
    if bound is not None:
        assert stopped.exited_after is not None and stopped.exited_after < bound, seen


def test_uwsgi_respawned_worker_does_not_resend_what_the_master_queued(
    sandbox: Sandbox, spool_dir: Path, tmp_path: Path
) -> None:
    """Worker 1 delivers the master's import-time event in its first life only: killed and respawned
    by the master, it starts from the master's memory again, and must drop that copy."""
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    port, stats_port = free_port(), free_port()
    env = app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=SHUTDOWN_TIMEOUT)
    (tmp_path / "done").mkdir()
    env["DONE_DIR"] = str(tmp_path / "done")
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command_for("uwsgi-master", tmp_path, port, stats_port),
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        assert sandbox.wait_for(lambda box: len(box.track_events()) == 1, timeout=30), log.read_text()
        # settled (its spool file deleted), so the kill below cannot make a replay resend it
        assert wait_until(lambda: Spool(spool_dir, 1 << 40).status().items == 0, 10)
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(workers) == 2, log.read_text()
        for pid in workers:
            os.kill(int(pid), signal.SIGKILL)
        assert wait_until(lambda: log.read_text().count("Respawned uWSGI worker") == 2, 30), log.read_text()
        for n in range(4):
            assert requests.get(f"http://127.0.0.1:{port}/?{n}", timeout=10).status_code == 200
        assert wait_until(lambda: uwsgi_workers_idle(stats_port), 10), log.read_text()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=BOUND + MERCY)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    tally = Tally.of(sandbox)
    assert sum(tally.counts("pendo", "Imported").values()) == 1, dict(tally.pendo)
    assert tally.counts("pendo", "Request") == Counter(range(4)), dict(tally.pendo)
