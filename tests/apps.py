"""App subprocesses for the reliability tests: a real Segment client with the plugin autoloaded from
PENDO_* variables, run in a fresh interpreter so exit, fork and kill are real."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pendo_plugin import config
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

STACKS_ON_SIGUSR1 = "import faulthandler, signal; faulthandler.register(signal.SIGUSR1, all_threads=True)\n"

APP_PREAMBLE = STACKS_ON_SIGUSR1 + """
import json, os, sys, time
import pendo_plugin
from segment.analytics import Client


def make_client():
    return Client("test-write-key", host=os.environ["SEGMENT_HOST"], upload_interval=0.05)


def send(client, count, user="u1", event="Reliability", start=0):
    for n in range(start, start + count):
        client.track(user_id=user, event=event, properties={"n": n})


def report(**extra):
    print(json.dumps({"stats": pendo_plugin.stats(), "at": time.monotonic(), **extra}), flush=True)


def peak_rss_kb():
    # this program's own peak (VmHWM); getrusage's ru_maxrss keeps the peak of the process it was
    # exec'd from (a pytest process of several hundred MB)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
"""


@dataclass
class AppRun:
    """A finished app subprocess: exit code, output, wall time and the JSON lines it printed."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    ended_at: float  # time.monotonic() (system-wide on Linux) when the process was seen to exit

    def reports(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.2f}s\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def app_script(body: str) -> str:
    """A Python program: the shared preamble (a real Segment client, ``send``, ``report``) + ``body``."""
    return APP_PREAMBLE + textwrap.dedent(body)


def app_env(data_url: str, spool_dir: Path | str, segment_host: str, **settings: Any) -> dict[str, str]:
    """Environment for an app subprocess: the plugin activates itself (autoload) from PENDO_* vars.

    ``settings`` are configure() names (``shutdown_timeout=1``), turned into their PENDO_* variables.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PENDO_", "SEGMENT_ANALYTICS_PLUGINS"))
    }
    env.update(
        PENDO_AUTOLOAD="1",
        PENDO_TRACK_SECRET=TRACK_SECRET,
        PENDO_INTEGRATION_KEY=INTEGRATION_KEY,
        PENDO_DATA_URL=data_url,
        PENDO_API_URL=data_url,
        PENDO_SPOOL_DIR=str(spool_dir),
        SEGMENT_HOST=segment_host,
        PYTHONUNBUFFERED="1",
    )
    env.update({config.ENV_NAMES[name]: str(value) for name, value in settings.items()})
    return env


def start_app(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren and so on, read from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def communicate(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``process.communicate(timeout)``; when it times out, every process of the tree first writes the
    stacks of all its threads to its stderr (``faulthandler`` on SIGUSR1, see :data:`STACKS_ON_SIGUSR1`),
    then the tree is killed and ``TimeoutExpired`` carries the output, so a hang explains itself."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        tree = [process.pid, *descendants(process.pid)]
        for pid in tree:  # one process at a time, so their dumps do not interleave on the shared pipe
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):  # collect its dump for a while
                process.communicate(timeout=1)
        for pid in tree:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=10)  # everything read so far, and the rest
        sys.stderr.write(f"process tree {tree} timed out after {timeout}s; its stderr:\n{stderr}\n")
        raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from expired


def finish_app(process: subprocess.Popen[str], started: float, timeout: float = 60.0) -> AppRun:
    stdout, stderr = communicate(process, timeout)
    ended = time.monotonic()
    return AppRun(process.returncode, stdout, stderr, ended - started, ended)


def run_app(script: str, env: dict[str, str], timeout: float = 60.0) -> AppRun:
    """Run ``script`` in a fresh interpreter and wait for it to exit."""
    started = time.monotonic()
    return finish_app(start_app(script, env), started, timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds; False after ``timeout`` (a condition wait, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def pendo_env(box_url: str, secret: str, key: str, **settings: str) -> dict[str, str]:
    """This process's environment without any PENDO_*/plugin variables, plus the plugin pointed at a
    stand-in; a setting whose value is ``"<unset>"`` is left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PENDO_", "SEGMENT_ANALYTICS_PLUGINS"))}
    env.update(
        PENDO_TRACK_SECRET=secret,
        PENDO_INTEGRATION_KEY=key,
        PENDO_DATA_URL=box_url,
        PENDO_API_URL=box_url,
        PENDO_SPOOL_DIR="off",
    )
    env.update(settings)
    return {name: value for name, value in env.items() if value != "<unset>"}
