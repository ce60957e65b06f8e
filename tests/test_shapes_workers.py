"""Worker pools in real process trees: a Celery prefork worker on the ``filesystem://`` broker stopped
with SIGTERM (warm shutdown), and ``multiprocessing.Pool`` (fork and spawn) closed and joined. Each
has an import-time event and a slow Pendo.

billiard ends Celery's pool children with ``os._exit()`` (no atexit, no multiprocessing finalizer):
they drain in Celery's ``worker_process_shutdown`` signal. Pool children drain in a multiprocessing
finalizer. Each run asserts every event reached Pendo exactly once, before the tree exited, within
``PENDO_SHUTDOWN_TIMEOUT`` plus a margin (plus Celery's own warm shutdown), and that the spool is
empty. Segment's own SDK is checked for duplicates; docs/reliability.md tabulates what it delivered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, wait_until
from tests.shapes import BIN, Tally

SHUTDOWN_TIMEOUT = 10.0
EXIT_MARGIN = 3.0
CELERY_STOP = 12.0  # Celery's own warm shutdown on the filesystem broker, plugin off: 7-8 s here
TASKS = 200
POOL_TASKS = 40

CELERY_APP = """
import os
from pathlib import Path

import segment.analytics as analytics
from celery import Celery

analytics.write_key = "test-write-key"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.track("boot", "Imported", {"pid": os.getpid()})

DATA = Path(os.environ["CELERY_DATA"])
app = Celery("tasks", broker="filesystem://")
app.conf.update(
    broker_transport_options=dict(
        data_folder_in=str(DATA / "queue"),
        data_folder_out=str(DATA / "queue"),
        processed_folder=str(DATA / "done"),
    ),
    broker_connection_retry_on_startup=True,
)


@app.task(name="tasks.work")
def work(n):
    analytics.track("task", "Task", {"n": n})
    (DATA / "ran" / str(n)).touch()
"""

POOL_APP = """
import json, multiprocessing, os, sys, time

import segment.analytics as analytics

analytics.write_key = "test-write-key"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.track("boot", "Imported", {"pid": os.getpid()})  # spawn children import this module too


def work(n):
    analytics.track("task", "Task", {"n": n})
    return os.getpid()


if __name__ == "__main__":
    pool = multiprocessing.get_context(sys.argv[1]).Pool(2)
    pids = sorted(set(pool.map(work, range(int(sys.argv[2])), chunksize=1)))
    pool.close()
    pool.join()
    print(json.dumps({"pids": pids, "at": time.monotonic()}), flush=True)
"""


def assert_once(tally: Tally, tasks: int, importers: int, seen: str) -> None:
    assert tally.counts("pendo", "Task") == Counter(range(tasks)), seen
    imports = tally.counts("pendo", "Imported")
    assert sum(imports.values()) == importers and set(imports.values()) == {1}, seen
    assert max(tally.segment.values(), default=1) == 1, "Segment's own SDK sent no duplicate: " + seen


def test_celery_prefork_children_deliver_at_warm_shutdown(
    sandbox: Sandbox, spool_dir: Path, tmp_path: Path
) -> None:
    celery = pytest.importorskip("celery")
    data = tmp_path / "celery"
    for folder in ("queue", "done", "ran"):
        (data / folder).mkdir(parents=True)
    (tmp_path / "tasks.py").write_text(CELERY_APP)
    options = {name: str(data / sub) for name, sub in
               (("data_folder_in", "queue"), ("data_folder_out", "queue"), ("processed_folder", "done"))}
    producer = celery.Celery("producer", broker="filesystem://")
    producer.conf.broker_transport_options = options
    for n in range(TASKS):
        producer.send_task("tasks.work", args=(n,))

    sandbox.set_latency(1.0)  # events are queued and in flight when the stop comes
    env = app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=SHUTDOWN_TIMEOUT)
    env["CELERY_DATA"] = str(data)
    command = [str(BIN / "celery"), "-A", "tasks", "worker", "-P", "prefork", "-c", "2", "--loglevel", "INFO"]
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        assert wait_until(lambda: len(list((data / "ran").iterdir())) == TASKS, 60), log.read_text()[-3000:]
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        worker.wait(timeout=SHUTDOWN_TIMEOUT + CELERY_STOP + EXIT_MARGIN)
        exit_seconds = time.monotonic() - stopped
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    tally = Tally.of(sandbox)
    seen = f"pendo={dict(tally.pendo)} segment={dict(tally.segment)} exit={exit_seconds:.2f}s"
    assert worker.returncode == 0, seen + log.read_text()[-3000:]
    assert_once(tally, TASKS, 1, seen)  # the tasks module is imported once, by the main process
    assert Spool(spool_dir, 1 << 40).status().items == 0, seen
    assert exit_seconds < SHUTDOWN_TIMEOUT + CELERY_STOP + EXIT_MARGIN, seen


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_pool_children_deliver_at_close_and_join(
    sandbox: Sandbox, spool_dir: Path, tmp_path: Path, method: str
) -> None:
    (tmp_path / "pool_app.py").write_text(POOL_APP)
    sandbox.set_latency(0.5)
    env = app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=SHUTDOWN_TIMEOUT)
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, str(tmp_path / "pool_app.py"), method, str(POOL_TASKS)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    ended = time.monotonic()
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout.splitlines()[-1])

    tally = Tally.of(sandbox)
    seen = f"pendo={dict(tally.pendo)} segment={dict(tally.segment)} run={ended - started:.2f}s {report}"
    importers = 1 + (2 if method == "spawn" else 0)  # spawn: each of the 2 children imports it too
    assert_once(tally, POOL_TASKS, importers, seen)
    assert Spool(spool_dir, 1 << 40).status().items == 0, seen
    assert ended - report["at"] < SHUTDOWN_TIMEOUT + EXIT_MARGIN, seen  # the parent's own exit drain
