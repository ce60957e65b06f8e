"""What an operator sees: a missing secret is named once and counted as ``skipped:no_secret:<call>``
(never as the kill switch), the plugin says in one INFO line when it goes live, and ``doctor`` says
what is missing and where each setting it shows came from (environment, ``configure()``, fleet flags).

Real app processes with the real Segment SDK against the sandbox; doctor in a subprocess, and once
in-process to see ``configure()``; a real ``redis-server`` for the fleet flags.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin.cli import doctor
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, pendo_env, run_app
from tests.fleet_redis import RedisServer

LOGGING = "import logging; logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
SEND_SIX = """
client = make_client()
send(client, 4)
client.identify("u1", {"plan": "pro"})
client.group("u1", "acme", {"name": "Acme"})
client.flush()
report()
"""


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in ("PENDO_TRACK_SECRET",
                                                                       "PENDO_INTEGRATION_KEY")}


def test_missing_secrets_are_named_once_and_counted_never_as_the_kill_switch(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    env = without_secrets(app_env(sandbox.url, spool_dir, sandbox.url))
    app = run_app(LOGGING + app_script(SEND_SIX), env)
    assert app.returncode == 0, app.describe()
    warnings = [line for line in app.stderr.splitlines() if line.startswith("WARNING pendo_plugin")]
    assert warnings == [
        "WARNING pendo_plugin is off: PENDO_TRACK_SECRET and PENDO_INTEGRATION_KEY are not set, so nothing "
        "is sent to Pendo (each message is counted as skipped:no_secret:<call>)"
    ], app.describe()
    stats = app.reports()[-1]["stats"]
    assert stats == {"skipped:no_secret:track": 4, "skipped:no_secret:identify": 1,
                     "skipped:no_secret:group": 1}, stats
    assert "is live" not in app.stderr
    assert len(sandbox.segment_messages()) == 6, "Segment's own upload is untouched"


def test_the_kill_switch_set_on_purpose_is_counted_as_such_without_a_warning(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    env = without_secrets(app_env(sandbox.url, spool_dir, sandbox.url, enabled="false"))
    app = run_app(LOGGING + app_script(SEND_SIX), env)
    assert app.returncode == 0, app.describe()
    assert "WARNING" not in app.stderr, app.describe()
    assert app.reports()[-1]["stats"] == {"rollout:off_kill_switch": 6}


def test_one_info_line_per_process_says_the_plugin_is_live(sandbox: Sandbox, spool_dir: Path) -> None:
    body = SEND_SIX + "second = make_client(); send(second, 1); second.flush()\n"
    env = app_env(sandbox.url, spool_dir, sandbox.url, rollout_percent="25", rollout_unit="account")
    app = run_app(LOGGING + app_script(body), env)
    assert app.returncode == 0, app.describe()
    live = [line for line in app.stderr.splitlines() if "is live" in line]
    assert len(live) == 1, app.describe()
    assert re.fullmatch(
        r"INFO pendo_plugin is live in this process \(pid \d+\): SDK segment-analytics-python [\d.]+, "
        r"mode api, no fleet mode, rollout 25% of accounts",
        live[0],
    ), live


def doctor_output(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout


def setting_line(output: str, name: str) -> list[str]:
    [line] = [line for line in output.splitlines() if line.split()[:1] == [name]]
    return line.split()


def test_doctor_names_the_missing_secrets_first(sandbox: Sandbox, spool_dir: Path) -> None:
    output = doctor_output(without_secrets(app_env(sandbox.url, spool_dir, sandbox.url)))
    first = output.split("Checks:\n")[1].splitlines()[0]
    assert first == ("  FAIL  configuration: no secret is set (PENDO_TRACK_SECRET and "
                     "PENDO_INTEGRATION_KEY), so nothing is sent to Pendo"), output
    assert "PENDO_ENABLED" not in output


def test_doctor_shows_where_each_setting_came_from(
    sandbox: Sandbox, spool_dir: Path, redis_server: RedisServer
) -> None:
    env = app_env(sandbox.url, spool_dir, sandbox.url, redis_url=redis_server.url, rollout_percent="50")
    env["PENDO_ROLLOUT_PERCENT"] = "50"
    redis_server.client().hset(FLAGS_KEY, mapping={"enabled": "false"})
    output = doctor_output(env)
    assert setting_line(output, "data_url") == ["data_url", sandbox.url, "environment"]
    assert setting_line(output, "rollout_percent") == ["rollout_percent", "50.0", "environment"]
    assert setting_line(output, "queue_size") == ["queue_size", "10000", "default"]
    assert setting_line(output, "enabled") == ["enabled", "False", "fleet", "flags"]
    assert "FAIL  configuration: PENDO_ENABLED is false (set by fleet flags)" in output


def test_doctor_in_process_shows_configure_overrides(plugin: Sandbox) -> None:
    pendo_plugin.configure(rollout_percent=7)
    out = io.StringIO()
    doctor.run(out=out)
    assert setting_line(out.getvalue(), "rollout_percent") == ["rollout_percent", "7.0", "configure()"]


def test_doctor_send_test_event_in_webhook_mode_sends_one_webhook_message() -> None:
    with Sandbox(api_key="webhook-api-key-1") as box:
        key = "webhook-api-key-1"
        env = pendo_env(box.url, "<unset>", "<unset>", PENDO_MODE="webhook", PENDO_API_KEY=key)
        done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor", "--send-test-event"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert "OK    PENDO_API_KEY accepted: sent track message pendo_plugin_doctor for user " \
            "pendo-plugin-doctor through the webhook" in done.stdout, done.stdout
        [message] = box.webhook_messages()
        assert (message["event"], message["userId"]) == ("pendo_plugin_doctor", "pendo-plugin-doctor")
        assert "webhook-api-key-1" not in done.stdout + done.stderr

        env["PENDO_API_KEY"] = "wrong-api-key-00"
        done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor", "--send-test-event"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1
        assert "FAIL  PENDO_API_KEY is not valid (HTTP" in done.stdout, done.stdout


def test_sandbox_refuses_a_field_type_pendo_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'money', which Pendo does not have"):
        Sandbox(schema={"visitor": {"balance": "money"}})
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"visitor": {"plan": "string", "balance": "money"}}))
    done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "sandbox", "--schema", str(schema)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"pendo-plugin: the schema file {schema}: visitor field 'balance' has the "
                                   "type 'money', which Pendo does not have (text, number, boolean or date)")
