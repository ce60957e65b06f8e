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
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.sdk_envs import SDKS, sdk_sources

GUARD = Path(__file__).with_name("sdk_suite_guard.py")

# rudder-sdk-python's release checks read files of its git repository that its source archive leaves out
NOT_SHIPPED = {"rudder": ["--ignore=rudderstack/analytics/test/test_release_validation.py"]}
# analytics-python 1.4's test_should_timeout expects a 0.1 ms timeout to expire: give its stand-in a latency
SEGMENT_LATENCY = 0.02


def suite_arguments(python: Path, sdk: str, workdir: Path) -> tuple[list[str], Path]:
    """The pytest arguments naming the SDK's own tests, and the directory to run them from."""
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
) -> subprocess.Popen[str]:
    out.mkdir()
    shutil.copy(GUARD, out / GUARD.name)
    environment = {
        **env,
        "PYTHONPATH": str(out),
        "SDK_SUITE_BACKEND": backend.url,
        "SDK_SUITE_REPORT": str(out / "patched.json"),
    }
    command = [str(python), "-m", "pytest", "-q", "-p", "sdk_suite_guard", "-p", "no:cacheprovider"]
    command += ["-p", "no:pendo_plugin", "--timeout", "60", f"--junit-xml={out / 'junit.xml'}", *args]
    return subprocess.Popen(
        command, env=environment, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_suite_passes_with_the_plugin_as_without(
    sdk_pythons: dict[str, Path],
    sdk: str,
    tmp_path: Path,
) -> None:
    python = sdk_pythons[sdk]
    args, cwd = suite_arguments(python, sdk, tmp_path)
    with (
        Sandbox() as backend_off,
        Sandbox() as backend_on,
        Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as pendo,
    ):
        for backend in (backend_off, backend_on):
            backend.set_segment_latency(SEGMENT_LATENCY)
        plain = {key: value for key, value in os.environ.items() if not key.startswith("PENDO_")}
        runs = {
            "off": start_suite(
                python, args, cwd, tmp_path / "off", backend_off, {**plain, "PENDO_AUTOLOAD": "0"}
            ),
            "on": start_suite(
                python,
                args,
                cwd,
                tmp_path / "on",
                backend_on,
                pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SHUTDOWN_TIMEOUT="2"),
            ),
        }
        output = {name: run.communicate(timeout=600)[0] for name, run in runs.items()}
        pendo_events = len(pendo.track_events())

    results = {name: outcomes(tmp_path / name / "junit.xml") for name in runs}
    patched = {name: json.loads((tmp_path / name / "patched.json").read_text()) for name in runs}
    assert results["on"] == results["off"], output["on"]
    failed = {test: outcome for test, outcome in results["on"].items() if outcome != "passed"}
    assert failed == {}, output["off"] + output["on"]
    assert len(results["on"]) >= 40
    assert patched["off"][SDKS[sdk].client_module] is False
    assert patched["on"][SDKS[sdk].client_module] is True
    assert pendo_events > 0  # the plugin was really writing to Pendo during the SDK's tests
