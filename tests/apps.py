"""App subprocesses for the reliability tests: a real Segment client with the plugin autoloaded from
PENDO_* variables, run in a fresh interpreter so exit, fork and kill are real."""

from __future__ import annotations

import json
import os
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

APP_PREAMBLE = """
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


def finish_app(process: subprocess.Popen[str], started: float, timeout: float = 60.0) -> AppRun:
    stdout, stderr = process.communicate(timeout=timeout)
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
