"""The benchmark's processes: a child that talks JSON lines, the stand-ins in a process of their own,
and the environment each one gets (default plugin settings, only the master switch varying)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin.py"
TRACK_SECRET = "bench-track-secret"
INTEGRATION_KEY = "bench-integration-key"
EXTRA_ENV: dict[str, str] = {}  # --set NAME=VALUE: plugin settings to try (default: none)


class BenchError(RuntimeError):
    """A benchmark process failed; the message carries the end of its stderr."""


class Child:
    """A subprocess that talks JSON lines on stdin/stdout; stderr is kept in a temp file."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        self.argv = argv
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            cwd=HERE,
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.process.wait(30)
                raise BenchError(f"{Path(self.argv[0]).name} {self.argv[1]} ended early:\n{self.tail()}")
            if line.startswith("{"):  # anything else is noise (a profiler's banner, say)
                return dict(json.loads(line))

    def write(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self.write(json.dumps(command))
        return self.read()

    def tail(self, lines: int = 15) -> str:
        self.stderr.seek(0)
        return "".join(self.stderr.readlines()[-lines:])

    def close(self, timeout: float = 60) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


@contextmanager
def standin(kind: str, latency: float, segment_latency: float) -> Iterator[tuple[Child, str]]:
    """The Segment and Pendo stand-ins in a process of their own; yields the child and its URL."""
    argv = [
        str(STANDIN),
        "--kind",
        kind,
        "--latency",
        str(latency),
        "--segment-latency",
        str(segment_latency),
    ]
    argv += ["--track-secret", TRACK_SECRET, "--integration-key", INTEGRATION_KEY]
    child = Child(argv, clean_env())
    try:
        yield child, str(child.read()["url"])
    finally:
        child.close(10)


def clean_env() -> dict[str, str]:
    """This environment without PENDO_* and plugin allow/deny lists, so results are reproducible, and
    without PYTHONDONTWRITEBYTECODE: an installed package has its bytecode compiled, so must the
    measured one (else every fresh process compiles the plugin from source on its first call)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PENDO_", "SEGMENT_ANALYTICS_PLUGINS", "PYTHONDONTWRITEBYTECODE"))
    }


def app_env(pendo_url: str, spool_dir: Path, enabled: bool) -> dict[str, str]:
    """Default plugin settings, pointed at the stand-ins; only the master switch varies."""
    env = clean_env()
    env.update(
        PENDO_TRACK_SECRET=TRACK_SECRET,
        PENDO_INTEGRATION_KEY=INTEGRATION_KEY,
        PENDO_DATA_URL=pendo_url,
        PENDO_API_URL=pendo_url,
        PENDO_SPOOL_DIR=str(spool_dir),
        PENDO_ENABLED="true" if enabled else "false",
    )
    env.update(EXTRA_ENV)
    return env


def run_to_end(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run a workload that prints one JSON line and exits."""
    child = Child(argv, env)
    try:
        return child.read()
    finally:
        child.close(timeout)
