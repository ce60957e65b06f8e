"""``pendo-plugin doctor`` in real subprocesses against a real sandbox: configuration, keys, hosts,
field schemas and traits, each reported as one OK/FAIL line; secrets never printed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env

SECRET = "doctor-track-secret-1"
KEY = "doctor-integration-key-1"
SCHEMA = {"visitor": {"plan": "string", "email": "string"}, "account": {"name": "string"}}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET, integration_key=KEY, schema=SCHEMA) as sandbox:
        yield sandbox


def env_for(box: Sandbox, **extra: str) -> dict[str, str]:
    return pendo_env(box.url, SECRET, KEY, **extra)


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith(("  OK", "  FAIL", "  SKIP"))]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_good_setup_passes_and_never_prints_a_secret(box: Sandbox) -> None:
    done = doctor(env_for(box), "--send-test-event")
    assert done.returncode == 0, done.stdout
    assert "All checks passed." in done.stdout
    lines = check_lines(done.stdout)
    assert all(line.startswith("OK") for line in lines), lines
    assert "OK    PENDO_INTEGRATION_KEY is valid, with write access" in lines
    assert any(line.startswith("OK    visitor field schema: 2 custom field(s)") for line in lines)
    for secret in (SECRET, KEY):
        assert secret not in done.stdout + done.stderr
    assert "****-1 (21 chars)" in done.stdout  # masked: length and last two characters
    [event] = box.track_events()
    assert (event["event"], event["visitorId"]) == ("pendo_plugin_doctor", "pendo-plugin-doctor")


def test_without_test_event_nothing_is_written(box: Sandbox) -> None:
    done = doctor(env_for(box))
    assert done.returncode == 0
    assert box.track_events() == [] and box.visitors() == {}
    assert "OK    PENDO_TRACK_SECRET is set and well-formed (not sent; --send-test-event" in done.stdout


def test_wrong_integration_key_fails_naming_it(box: Sandbox) -> None:
    done = doctor(env_for(box, PENDO_INTEGRATION_KEY="not-the-right-key"))
    assert done.returncode == 1
    assert "FAIL  PENDO_INTEGRATION_KEY is not valid (HTTP 403 from /api/v1/token/verify)" in done.stdout
    assert "1 check(s) failed." in done.stdout
    assert "not-the-right-key" not in done.stdout


def test_wrong_track_secret_fails_with_test_event(box: Sandbox) -> None:
    done = doctor(env_for(box, PENDO_TRACK_SECRET="not-the-right-secret"), "--send-test-event")
    assert done.returncode == 1
    assert "FAIL  PENDO_TRACK_SECRET is not valid (HTTP 403 from /data/track)" in done.stdout


def test_missing_secrets_fail(box: Sandbox) -> None:
    done = doctor(env_for(box, PENDO_TRACK_SECRET="<unset>", PENDO_INTEGRATION_KEY="<unset>"))
    assert done.returncode == 1
    lines = check_lines(done.stdout)
    assert any(line.startswith("FAIL  PENDO_TRACK_SECRET is not set: track events are off") for line in lines)
    assert "FAIL  PENDO_INTEGRATION_KEY is not set: visitor and account metadata are off" in lines


def test_traits_without_a_pendo_field_are_listed(box: Sandbox, tmp_path: Path) -> None:
    traits = tmp_path / "traits.jsonl"
    traits.write_text(
        "\n".join(
            json.dumps(doc)
            for doc in [
                {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "company size": 40}},
                {"type": "group", "groupId": "acme", "traits": {"name": "Acme", "seats": 5}},
                {"type": "track", "event": "ignored", "properties": {"nope": 1}},
                {"email": "ada@example.com", "role": "admin"},
            ]
        )
    )
    done = doctor(env_for(box), "--traits", str(traits))
    assert done.returncode == 1
    fails = [line for line in check_lines(done.stdout) if line.startswith("FAIL")]
    assert fails == [
        "FAIL  visitor trait 'company_size' (written 'company size') has no field in Pendo: "
        "add it under Settings > Data Mappings",
        "FAIL  visitor trait 'role' has no field in Pendo: add it under Settings > Data Mappings",
        "FAIL  account trait 'seats' has no field in Pendo: add it under Settings > Data Mappings",
    ]


def test_traits_file_as_one_json_object(box: Sandbox, tmp_path: Path) -> None:
    traits = tmp_path / "traits.json"
    traits.write_text(json.dumps({"plan": "pro", "email": "ada@example.com"}, indent=2))
    done = doctor(env_for(box), "--traits", str(traits))
    assert done.returncode == 0, done.stdout
    assert "OK    visitor traits: all 2 have a field in Pendo" in done.stdout


def test_unreachable_host_fails_without_a_traceback(box: Sandbox) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = doctor(env_for(box, PENDO_API_URL=url))
    assert done.returncode == 1
    assert f"FAIL  PENDO_API_URL {url} is not reachable: " in done.stdout
    assert "SKIP  integration key, field schemas and traits not checked: host unreachable" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr



def test_one_unreachable_host_for_both_urls_is_one_fail_line(box: Sandbox) -> None:
    """Data and API URL on the same (down) host, as with the region defaults: one FAIL line, not two."""
    url = f"http://127.0.0.1:{closed_port()}"
    done = doctor(env_for(box, PENDO_DATA_URL=url, PENDO_API_URL=url))
    unreachable = [line for line in check_lines(done.stdout) if "is not reachable" in line]
    assert len(unreachable) == 1, done.stdout


@pytest.mark.parametrize(
    "extra",
    [
        {"PENDO_TRACK_SECRET": "short"},
        {"PENDO_MODE": "webhook", "PENDO_API_KEY": "abc"},
    ],
)
def test_a_malformed_secret_is_said_to_be_used_not_off(box: Sandbox, extra: dict[str, str]) -> None:
    """Set but malformed, a secret is still used (the app sends, Pendo refuses): doctor must not say "off"."""
    done = doctor(env_for(box, **extra))
    lines = [line for line in check_lines(done.stdout) if "too short" in line]
    assert len(lines) == 1, done.stdout
    assert "the plugin still sends with it" in lines[0]
    assert "are off" not in lines[0] and "sends nothing" not in lines[0]

def test_configuration_problem_names_the_variable(box: Sandbox) -> None:
    done = doctor(env_for(box, PENDO_ROLLOUT_PERCENT="140"))
    assert done.returncode == 1
    assert "FAIL  configuration: PENDO_ROLLOUT_PERCENT='140' is out of range (0 to 100)" in done.stdout
    assert "Configuration is not usable" in done.stdout
    assert SECRET not in done.stdout and KEY not in done.stdout
    assert box.counts()["requests"] == 0



def test_every_unusable_variable_is_named_at_once(box: Sandbox) -> None:
    """Four bad values: one FAIL line each (not the first one per run, fixed and run again four times)."""
    bad = {
        "PENDO_REGION": "mars",
        "PENDO_ROLLOUT_PERCENT": "140",
        "PENDO_QUEUE_SIZE": "lots",
        "PENDO_TIMEOUT": "-1",
    }
    done = doctor(env_for(box, **bad))
    assert done.returncode == 1
    failed = [line for line in check_lines(done.stdout) if line.startswith("FAIL")]
    assert len(failed) == 4, done.stdout
    for variable, value in bad.items():
        assert [line for line in failed if f"{variable}='{value}'" in line], (variable, done.stdout)
    assert SECRET not in done.stdout + done.stderr and KEY not in done.stdout + done.stderr
    assert done.stderr == "", "the report says it all: no log line repeats it after the report"

def test_schema_that_cannot_be_read_fails(tmp_path: Path) -> None:
    with Sandbox(track_secret=SECRET, integration_key=KEY) as box:  # no schema: the endpoint answers 404
        done = doctor(env_for(box))
    assert done.returncode == 1
    assert "FAIL  visitor field schema could not be read (HTTP 404)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--traits", "missing.json"], "pendo-plugin: cannot read the traits file missing.json: No such"),
        (["--bogus"], "pendo-plugin: unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line(box: Sandbox, tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "doctor", *args],
        env=env_for(box),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1
