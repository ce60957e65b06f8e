"""docs/privacy.md stays true to the code, and ``doctor`` shows the consent categories and property rules in
force (a real ``doctor`` subprocess against a real sandbox)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pendo_plugin import config, counters
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import hookspecs
from tests.apps import pendo_env

PRIVACY = (Path(__file__).resolve().parent.parent / "docs" / "privacy.md").read_text()
SECRET = "privacy-track-secret-1"
KEY = "privacy-integration-key-1"


@pytest.mark.parametrize("variable", sorted(set(re.findall(r"`(PENDO_[A-Z_]+)", PRIVACY))))
def test_every_variable_it_names_is_a_setting(variable: str) -> None:
    assert variable in config.ENV_NAMES.values()


@pytest.mark.parametrize("setting", sorted(set(re.findall(r"configure\((\w+)=", PRIVACY))))
def test_every_configure_name_it_gives_is_a_setting(setting: str) -> None:
    assert setting in config.ENV_NAMES


COUNTER = r"`((?:skipped|consent|redacted|dropped|transformed):[a-z_:<>]+)`"


@pytest.mark.parametrize("counter", sorted(set(re.findall(COUNTER, PRIVACY))))
def test_every_counter_it_names_is_in_the_vocabulary(counter: str) -> None:
    outcome, reason, kind = counters.parse(counter.replace("<call>", "track").replace("<kind>", "track"))
    assert counters.name_of(outcome, reason, kind) is not None, counter


def test_the_settings_it_lists_for_doctor_are_shown_by_doctor() -> None:
    listed = set(re.findall(r"`(\w+)`", PRIVACY[PRIVACY.index("## In `doctor`"):]))
    shown = set(config.load({}, environ={}).describe())
    named = {"consent_categories", "deny_properties", "allow_properties", "hash_properties", "hash_key"}
    assert named <= listed
    assert listed & set(config.ENV_NAMES) <= shown


def test_the_hook_it_names_is_specified() -> None:
    assert "pendo_transform(kind, payload, message)" in PRIVACY
    assert hasattr(hookspecs, "pendo_transform")


def doctor(box: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor", *args],
                          env=pendo_env(box.url, SECRET, KEY, **env), capture_output=True, text=True,
                          timeout=60)


def test_doctor_shows_the_rules_in_force_and_masks_the_hash_key(tmp_path: Path) -> None:
    schema = {"visitor": {"plan": "string"}, "account": {"name": "string"}}
    with Sandbox(track_secret=SECRET, integration_key=KEY, schema=schema) as box:
        done = doctor(box, PENDO_CONSENT_CATEGORIES="Analytics,Ads",
                      PENDO_DENY_PROPERTIES="ssn,address.street", PENDO_HASH_PROPERTIES="email",
                      PENDO_HASH_KEY="hash-key-0001")
        messages = tmp_path / "messages.jsonl"
        messages.write_text("\n".join(json.dumps(message) for message in [
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"},
             "context": {"consent": {"categoryPreferences": {"Analytics": False}}}},
            {"type": "identify", "userId": "u2", "traits": {"plan": "free"}},
        ]))
        unmapped = doctor(box, "--traits", str(messages), PENDO_HASH_PROPERTIES="email")

    assert done.returncode == 0, done.stdout
    assert "OK    consent: enforced for categories Ads, Analytics" in done.stdout
    assert "OK    property rules: deny address.street, ssn; hash email" in done.stdout
    assert re.search(r"consent_categories\s+Ads,Analytics", done.stdout)
    assert "hash-key-0001" not in done.stdout + done.stderr
    assert "consent: not enforced (PENDO_CONSENT_CATEGORIES is unset)" in unmapped.stdout
    assert "WARN  consent: 1 of 2 message(s) carry consent preferences" in unmapped.stdout
    assert "WARN  PENDO_HASH_PROPERTIES is set but PENDO_HASH_KEY is not" in unmapped.stdout
