"""Each supported SDK's own test suite passes with the plugin active exactly as without it.

The suites run in the SDK's venv (session fixture ``sdk_pythons``), offline: ``sdk_suite_guard`` refuses any
connection but loopback and sends the SDK's hosted endpoint to a sandbox standing in for it. Two runs at
once: one with ``PENDO_AUTOLOAD=0``, one with the plugin writing to a second sandbox as Pendo. Each
test's outcome must be the same in both, every test must pass, and the plugin must really have been
active in the second run (the SDK's ``Client`` patched there, Pendo reached) and not in the first.

Where the tests are: segment-analytics-python's and analytics-python's in their wheels
(``segment/analytics/test``, ``analytics/test``: for the latter the modules its own ``analytics.test.all()``
loads), rudder-sdk-python's in its source archive on PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.sdk_envs import SDKS, sdk_sources

GUARD = Path(__file__).with_name("sdk_suite_guard.py")

# rudder-sdk-python's release checks read files of its git repository that its source archive leaves out
NOT_SHIPPED = {"rudder": ["--ignore=rudderstack/analytics/test/test_release_validation.py"]}
# The SDKs' suites hold timing-based tests (uploads every 10 ms, sleeps) that a loaded 2-core machine can fail
# now and then, with the plugin or without it: each run, off and on alike, retries a failed test this often.
# Every test must still pass in both runs in the end.
RERUNS = 2
# analytics-python 1.4's test_should_timeout expects a 0.1 ms timeout to expire: give its stand-in a latency
SEGMENT_LATENCY = 0.02
SUITE_TIMEOUT = 600  # seconds until a suite has its results
# After its results, a run has this long to exit. segment-analytics-python's own exit handler (Client.join,
# waiting for a consumer thread) once hung there after all 140 tests passed, in the run without the plugin.
EXIT_GRACE = 60


def suite_arguments(python: Path, sdk: str, workdir: Path) -> tuple[list[str], Path]:
    """The pytest arguments naming the SDK's own tests, and the directory to run them from."""
    workdir.mkdir(parents=True)
    if SDKS[sdk].tests_in == "sdist":
        root = sdk_sources(workdir / "sdist", SDKS[sdk])
        return [str(root / "rudderstack" / "analytics" / "test"), *NOT_SHIPPED.get(sdk, [])], root
    package = SDKS[sdk].client_module.rsplit(".", 1)[0] + ".test"
    where = subprocess.run(
        [str(python), "-c", f"import {package} as t, os; print(os.path.dirname(t.__file__))"],
        env={**os.environ, "PENDO_AUTOLOAD": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    directory = Path(where.stdout.strip())
    if sdk == "legacy":  # its modules are not test_*.py; analytics.test.all() loads every module but __init__
        return [str(path) for path in sorted(directory.glob("*.py")) if path.name != "__init__.py"], workdir
    return [str(directory)], workdir


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from pytest's JUnit XML report."""
    results = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        results[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return results


def start_suite(
    python: Path, args: list[str], cwd: Path, out: Path, backend: Sandbox, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start the SDK's suite; its output goes to ``out/output.txt``, its results to ``out/junit.xml``."""
    out.mkdir(parents=True)
    shutil.copy(GUARD, out / GUARD.name)
    environment = {
        **env,
        "PYTHONPATH": str(out),
        "SDK_SUITE_BACKEND": backend.url,
        "SDK_SUITE_REPORT": str(out / "patched.json"),
        "SDK_SUITE_STACKS": str(out / "stacks.txt"),
    }
    command = [str(python), "-m", "pytest", "-q", "-p", "sdk_suite_guard", "-p", "no:cacheprovider"]
    command += ["-p", "no:pendo_plugin", "--timeout", "60", f"--reruns={RERUNS}"]
    command += [f"--junit-xml={out / 'junit.xml'}", *args]
    with open(out / "output.txt", "wb") as output:
        return subprocess.Popen(command, env=environment, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)


@dataclass
class SuiteRuns:
    """One SDK's suite, run twice at once: plugin off and plugin on (writing to ``pendo``)."""

    out: Path
    processes: dict[str, subprocess.Popen[bytes]]
    pendo: Sandbox

    def wait(self) -> None:
        """Until each run has its results and has exited. A run that has its results but does not exit
        within ``EXIT_GRACE`` has every thread's stack dumped to ``stacks.txt`` and is killed: that passes
        only if no thread was in the plugin (the SDK's own exit handler hanging is not what is tested
        here); a run without results in ``SUITE_TIMEOUT`` fails."""
        for name, process in self.processes.items():
            out = self.out / name
            deadline = time.monotonic() + SUITE_TIMEOUT
            while process.poll() is None and not (out / "patched.json").exists():
                assert time.monotonic() < deadline, f"the {name} run has no results in {SUITE_TIMEOUT} s"
                time.sleep(0.5)  # a poll with a deadline: the suite runs in another process
            try:
                process.wait(timeout=EXIT_GRACE)
            except subprocess.TimeoutExpired:
                stacks = dump_stacks(process, out / "stacks.txt")
                process.kill()
                process.wait(timeout=30)
                assert "pendo_plugin" not in stacks, f"the {name} run hung at exit in the plugin:\n{stacks}"

    def output(self) -> str:
        return "".join((self.out / name / "output.txt").read_text() for name in self.processes)


def dump_stacks(process: subprocess.Popen[bytes], stacks: Path, timeout: float = 10.0) -> str:
    """Every thread's stack of ``process`` (``faulthandler`` on SIGUSR1, set up by ``sdk_suite_guard``):
    the dump, once it stopped growing."""
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        text = stacks.read_text() if stacks.exists() else ""
        if text and text == seen:
            return text
        seen = text
        time.sleep(0.1)  # a poll with a deadline: the other process writes the dump
    raise AssertionError(f"no stack dump from a run that hung at exit (pid {process.pid})")


@pytest.fixture(scope="module")
def suite_runs(
    sdk_pythons: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SuiteRuns]]:
    """Every SDK's suite, all started at once: they spend most of their time in their own retry pauses."""
    base = tmp_path_factory.mktemp("sdk-suites")
    plain = {key: value for key, value in os.environ.items() if not key.startswith("PENDO_")}
    with ExitStack() as stack:
        runs = {}
        for sdk, python in sdk_pythons.items():
            args, cwd = suite_arguments(python, sdk, base / sdk)
            backends = [stack.enter_context(Sandbox()) for _ in range(2)]
            for backend in backends:
                backend.set_segment_latency(SEGMENT_LATENCY)
            pendo = stack.enter_context(Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY))
            on = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SHUTDOWN_TIMEOUT="2")
            processes = {
                "off": start_suite(
                    python, args, cwd, base / sdk / "off", backends[0], {**plain, "PENDO_AUTOLOAD": "0"}
                ),
                "on": start_suite(python, args, cwd, base / sdk / "on", backends[1], on),
            }
            runs[sdk] = SuiteRuns(base / sdk, processes, pendo)
        try:
            yield runs
        finally:
            for run in runs.values():
                for process in run.processes.values():
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=30)


@pytest.mark.timeout(900)  # the first one waits for all six suite runs, which share two cores
@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_suite_passes_with_the_plugin_as_without(suite_runs: dict[str, SuiteRuns], sdk: str) -> None:
    run = suite_runs[sdk]
    run.wait()

    results = {name: outcomes(run.out / name / "junit.xml") for name in run.processes}
    patched = {name: json.loads((run.out / name / "patched.json").read_text()) for name in run.processes}
    assert results["on"] == results["off"], run.output()
    failed = {test: outcome for test, outcome in results["on"].items() if outcome != "passed"}
    assert failed == {}, run.output()
    assert len(results["on"]) >= 40
    assert patched["off"][SDKS[sdk].client_module] is False
    assert patched["on"][SDKS[sdk].client_module] is True
    assert run.pendo.track_events()  # the plugin was really writing to Pendo during the SDK's tests
