"""Rollout through the real SDK: 1,000 distinct visitors, kill switch, percentages, shadow, providers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins
from pendo_plugin.segment.hookspecs import hookimpl
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

VISITORS = [f"visitor-{n:04d}" for n in range(1000)]

APP = """
import json, sys
import segment.analytics as analytics
import pendo_plugin

pendo_plugin.install()
analytics.write_key = "test-write-key"
analytics.host = sys.argv[1]
for n in range(1000):
    analytics.track(f"visitor-{n:04d}", "Rolled Out")
analytics.flush()
print(json.dumps(pendo_plugin.stats()))
"""


def send_all(client: Any) -> None:
    for visitor in VISITORS:
        client.track(visitor, "Rolled Out")
    client.flush()


def visitors_in_pendo(sandbox: Sandbox) -> set[str]:
    return {event["visitorId"] for event in sandbox.track_events()}


def run_in_subprocess(sandbox: Sandbox, tmp_path: Path, **env: str) -> set[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environment = {
        **os.environ,
        "PENDO_TRACK_SECRET": TRACK_SECRET,
        "PENDO_INTEGRATION_KEY": INTEGRATION_KEY,
        "PENDO_DATA_URL": sandbox.url,
        "PENDO_API_URL": sandbox.url,
        "PENDO_SPOOL_DIR": str(tmp_path / "spool"),
        **env,
    }
    sandbox.reset()
    done = subprocess.run(
        [sys.executable, str(app), sandbox.url], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(sandbox.segment_messages()) == 1000
    return visitors_in_pendo(sandbox)


def test_kill_switch_sends_none(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(enabled=False)
    send_all(segment_client)

    assert plugin.track_events() == []
    assert len(plugin.segment_messages()) == 1000
    assert pendo_plugin.stats()["rollout:off_kill_switch"] == 1000


def test_percentages_are_stable_across_processes_and_only_add(sandbox: Sandbox, tmp_path: Path) -> None:
    thirty = run_in_subprocess(sandbox, tmp_path, PENDO_ROLLOUT_PERCENT="30")
    thirty_again = run_in_subprocess(sandbox, tmp_path, PENDO_ROLLOUT_PERCENT="30")
    sixty = run_in_subprocess(sandbox, tmp_path, PENDO_ROLLOUT_PERCENT="60")

    assert 250 <= len(thirty) <= 350
    assert thirty_again == thirty
    assert thirty < sixty
    assert 520 <= len(sixty) <= 680


def test_shadow_sends_none_but_counts_what_it_would_send(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(shadow=True)
    send_all(segment_client)

    assert plugin.track_events() == []
    assert len(plugin.segment_messages()) == 1000
    assert pendo_plugin.stats()["shadow:track"] == 1000


def test_account_rollout_keeps_whole_accounts_together(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(rollout_unit="account", rollout_percent=50)
    for account in range(40):
        for member in range(5):
            segment_client.track(f"u{account}-{member}", "Team Event", context={"groupId": f"acct-{account}"})
    segment_client.flush()

    members_by_account: dict[str, int] = {}
    for event in plugin.track_events():
        members_by_account[event["accountId"]] = members_by_account.get(event["accountId"], 0) + 1
    assert set(members_by_account.values()) == {5}
    assert 8 <= len(members_by_account) <= 32


def test_deny_wins_over_allow(plugin: Sandbox, segment_client: Any) -> None:
    pendo_plugin.configure(rollout_percent=0, allow_visitors="vip,both", deny_visitors="both")
    for visitor in ("vip", "both", "other"):
        segment_client.track(visitor, "Listed")
    segment_client.flush()

    assert visitors_in_pendo(plugin) == {"vip"}


def test_runtime_change_applies_to_the_next_message(plugin: Sandbox, segment_client: Any) -> None:
    segment_client.track("before", "Change")
    segment_client.flush()
    pendo_plugin.configure(enabled=False)
    segment_client.track("after", "Change")
    segment_client.flush()
    pendo_plugin.configure(enabled=True)
    segment_client.track("again", "Change")
    segment_client.flush()

    assert visitors_in_pendo(plugin) == {"before", "again"}


class Provider:
    """A flag provider answering from a table; ``raise`` raises."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    @hookimpl
    def pendo_rollout(self, message: dict[str, Any]) -> bool | None:
        answer = self.answers.get(message.get("userId"))
        if answer == "raise":
            raise RuntimeError("flag service down")
        return answer


@pytest.fixture
def provider(plugin: Sandbox) -> Any:
    instance = Provider({"yes": True, "no": False, "none": None, "boom": "raise"})
    plugins.register_plugin(instance, name="test-provider")
    try:
        yield instance
    finally:
        plugins.unregister_plugin(name="test-provider")


def test_provider_answers_true_false_none_and_raising(
    provider: Provider, plugin: Sandbox, segment_client: Any
) -> None:
    pendo_plugin.configure(rollout_percent=0)  # built-in rules say no unless the provider says yes
    for visitor in ("yes", "no", "none", "boom"):
        segment_client.track(visitor, "Flagged")
    segment_client.flush()

    assert visitors_in_pendo(plugin) == {"yes"}
    stats = pendo_plugin.stats()
    assert stats["plugin_error:pendo_rollout"] == 1
    assert stats["rollout:off_provider"] == 1
    assert stats["rollout:off_percent"] == 2  # "none" and "boom" fell back to the 0 % rule
    assert len(plugin.segment_messages()) == 4


def test_provider_cannot_override_the_kill_switch(
    provider: Provider, plugin: Sandbox, segment_client: Any
) -> None:
    pendo_plugin.configure(enabled=False)
    segment_client.track("yes", "Flagged")
    segment_client.flush()

    assert plugin.track_events() == []
    assert pendo_plugin.stats()["rollout:off_kill_switch"] == 1
