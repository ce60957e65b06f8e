"""The first commands a new user runs: ``pendo-plugin demo``, ``pendo-plugin sandbox`` and ``--help``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PENDO_", "SEGMENT_ANALYTICS_PLUGINS"))}
    env.update(extra)
    return env


def run_demo(**extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "demo"],
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def test_demo_shows_what_pendo_and_segment_received() -> None:
    done, elapsed = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Pendo was activated by the installed .pth bootstrap" in out
    visitor = r"user-42\s+email='ada@example.com'\s+plan='pro'\s+logins=12\s+createdAt=1705311000000"
    assert re.search(visitor, out)
    assert re.search(r"acme\s+name='Acme Inc'\s+plan='enterprise'\s+seats=50", out)
    for event in ("Report Exported", "Plan Upgraded", "Dashboard Viewed"):
        assert re.search(rf"{event}\s+user-42\s+acme", out)
    assert "Password Changed" not in out  # integrations={"Pendo": False}
    assert '"previous_plan": "free"' in out  # the property name Pendo rejects, cleaned
    assert "Segment received: 7 messages" in out
    assert "Violations of Pendo's rules: none" in out
    assert re.search(r"sent:track 3\b", out) and "skipped:call:page 1" in out
    assert done.stderr == ""
    assert elapsed < 15


def test_demo_falls_back_to_install_without_autoload() -> None:
    done, _ = run_demo(PENDO_AUTOLOAD="0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "activated by pendo_plugin.install(): PENDO_AUTOLOAD is off" in done.stdout


def test_console_script_help_lists_every_command() -> None:
    script = shutil.which("pendo-plugin", path=os.path.dirname(sys.executable))
    assert script is not None
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for command in ("demo", "doctor", "replay", "spool", "sandbox"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "args", [[], ["nonsense"], ["sandbox", "--port", "http"], ["sandbox", "--schema", "missing.json"]]
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("pendo-plugin")


def test_sandbox_command_serves_until_terminated(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"visitor": {"plan": "string"}}))
    command = [
        sys.executable,
        "-m",
        "pendo_plugin.cli",
        "sandbox",
        "--port",
        "0",
        "--no-live",
        "--schema",
        str(schema),
    ]
    env = clean_env(PENDO_INTEGRATION_KEY="sandbox-key-1234")  # the sandbox reads its secrets from it
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        url = match.group(1)
        verify = f"{url}/api/v1/token/verify"
        good = requests.get(verify, headers={"x-pendo-integration-key": "sandbox-key-1234"}, timeout=10)
        assert good.json() == {"valid": True, "writeAccess": True}
        bad = requests.get(verify, headers={"x-pendo-integration-key": "wrong"}, timeout=10)
        assert bad.status_code == 403
        fields = requests.get(
            f"{url}/api/v1/metadata/schema/visitor",
            timeout=10,
            headers={"x-pendo-integration-key": "sandbox-key-1234"},
        )
        assert fields.json()["custom"] == {"plan": {"Type": "string"}}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Sandbox stopped" in out
