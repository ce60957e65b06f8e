"""Process trees for the deployment-shape tests: a WSGI app served by gunicorn or uWSGI, with an
import-time event, stopped gracefully while Pendo is slow; and the tally of what reached Pendo and
Segment's stand-in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from pendo_plugin.sandbox import Sandbox
from tests.apps import wait_until

BIN = Path(sys.executable).parent
REQUESTS = 20
CONCURRENCY = 4

# The app as its README would have it: the SDK's module-level API, one event while it is imported.
WSGI_APP = """
import os
import time

import segment.analytics as analytics

analytics.write_key = "test-write-key"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.track("boot", "Imported", {"pid": os.getpid()})


class Body(list):  # the response: its close(), the server's last call for a request, marks it done
    def __init__(self, query):
        super().__init__([str(os.getpid()).encode()])
        self.query = query

    def close(self):
        if self.query:
            open(os.path.join(os.environ["DONE_DIR"], self.query), "w").close()


def application(environ, start_response):
    if environ["QUERY_STRING"]:  # not a health check
        analytics.track("web", "Request", {"n": int(environ["QUERY_STRING"]), "pid": os.getpid()})
    time.sleep(0.1)  # concurrent requests keep every worker busy: a hung worker fails the test
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(environ["QUERY_STRING"])
"""


def server_binary(name: str) -> str:
    """The path of a server installed next to this interpreter; skips the test if it is missing."""
    path = shutil.which(name, path=str(BIN))
    if path is None:
        pytest.skip(f"{name} is not installed (the `test` extra installs it)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gone(pid: int) -> bool:
    """The process has exited (it no longer exists, or is a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


@dataclass
class Tally:
    """What one run delivered: events per name and ``n``/``pid`` at Pendo and at Segment."""

    pendo: Counter[tuple[str, int]] = field(default_factory=Counter)
    segment: Counter[tuple[str, int]] = field(default_factory=Counter)

    @classmethod
    def of(cls, sandbox: Sandbox) -> Tally:
        tally = cls()
        for event in sandbox.track_events():
            tally.pendo[key(event["event"], event.get("properties", {}))] += 1
        for message in sandbox.segment_messages():
            if message.get("type") == "track":
                tally.segment[key(message["event"], message.get("properties", {}))] += 1
        return tally

    def counts(self, where: str, name: str) -> Counter[int]:
        source = self.pendo if where == "pendo" else self.segment
        return Counter({ident: count for (event, ident), count in source.items() if event == name})


def key(name: str, properties: dict[str, object]) -> tuple[str, int]:
    ident = properties.get("n", properties.get("pid", -1))
    return name, int(ident) if isinstance(ident, int) else -1


@dataclass
class Stop:
    """How a run ended: the pids that served, seconds from the stop signal until ``delivered`` held,
    and until every serving process had exited (None: some still ran ``exit_wait`` seconds later)."""

    pids: set[int]
    delivered_after: float | None
    exited_after: float | None


def serve_and_stop(
    command: list[str],
    env: dict[str, str],
    port: int,
    stop: signal.Signals,
    *,
    to_group: bool,
    log: Path,
    delivered: Callable[[], bool],
    exit_wait: float,
    idle: Callable[[], bool] = lambda: True,
) -> Stop:
    """Start ``command``, send REQUESTS requests (CONCURRENCY at a time), wait until ``idle`` (every
    worker done with its request), stop it with ``stop``, wait for ``delivered`` and for the processes
    to exit (bounded); whatever is left is killed."""
    with log.open("w") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _answers(url), timeout=30, interval=0.1), log.read_text()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            pids = set(pool.map(lambda n: int(requests.get(f"{url}/?{n}", timeout=10).text), range(REQUESTS)))
        assert wait_until(idle, timeout=10), "the workers did not finish their requests"
        stopped = time.monotonic()
        if to_group:
            os.killpg(server.pid, stop)
        else:
            server.send_signal(stop)
        done = wait_until(delivered, timeout=exit_wait, interval=0.05)
        delivered_after = time.monotonic() - stopped if done else None
        exited = wait_until(lambda: server.poll() is not None and all(gone(pid) for pid in pids), exit_wait)
        return Stop(pids, delivered_after, time.monotonic() - stopped if exited else None)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def uwsgi_workers_idle(stats_port: int) -> bool:
    """Whether every uWSGI worker reports ``idle`` on the stats server (uWSGI runs no exit hook in a
    worker that is still busy with a request when told to stop)."""
    try:
        with socket.create_connection(("127.0.0.1", stats_port), timeout=2) as connection:
            data = b""
            while len(data) < 1 << 20:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
        workers = json.loads(data)["workers"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(workers) and all(isinstance(w, dict) and w.get("status") == "idle" for w in workers)
