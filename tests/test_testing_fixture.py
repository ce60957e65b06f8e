"""The ``pendo_capture`` pytest fixture shipped for users: used directly, and by a user's test suite
through the installed ``pytest11`` entry point (pytester, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pendo_plugin.sandbox import Sandbox
from pendo_plugin.testing import PendoCapture

pytest_plugins = ["pytester"]


@pytest.fixture
def segment(pendo_capture: PendoCapture) -> Iterator[Any]:
    """A real Segment client; its own uploads go to a local stand-in of Segment's /v1/batch."""
    from segment.analytics import Client

    with Sandbox() as segment_stub:
        client = Client("test-write-key", host=segment_stub.url, upload_interval=0.05)
        yield client
        client.flush()
        client.join()


def test_captures_track_events_and_metadata(pendo_capture: PendoCapture, segment: Any) -> None:
    segment.identify("u1", {"plan": "pro", "email": "ada@example.com"})
    segment.group("u1", "acme", {"name": "Acme Inc"})
    segment.track("u1", "Signed Up", {"plan": "pro", "source": "ad"})
    segment.track("u1", "Logged In")
    segment.page("u1", "Home")
    segment.track("u1", "Private", integrations={"Pendo": False})
    body = pendo_capture.assert_tracked("Signed Up", plan="pro")
    assert body["accountId"] == "acme"
    assert [event["event"] for event in pendo_capture.track_events()] == ["Signed Up", "Logged In"]
    assert len(pendo_capture.track_events("Logged In")) == 1
    assert pendo_capture.visitors() == {"u1": {"plan": "pro", "email": "ada@example.com"}}
    assert pendo_capture.accounts() == {"acme": {"name": "Acme Inc"}}
    stats = pendo_capture.stats()
    assert stats["sent:track"] == 2 and stats["skipped:call:page"] == 1


def test_assert_tracked_explains_what_was_captured(pendo_capture: PendoCapture, segment: Any) -> None:
    segment.track("u1", "Signed Up", {"plan": "free"})
    with pytest.raises(AssertionError) as failure:
        pendo_capture.assert_tracked("Signed Up", plan="pro")
    assert str(failure.value) == (
        "no Pendo track event 'Signed Up' with properties {'plan': 'pro'}; captured 1 event(s):\n"
        "  'Signed Up' {'plan': 'free'}"
    )


def test_each_test_starts_empty(pendo_capture: PendoCapture) -> None:
    assert pendo_capture.track_events() == []
    assert pendo_capture.visitors() == {}


def test_configure_applies_settings_over_the_capture(pendo_capture: PendoCapture, segment: Any) -> None:
    pendo_capture.configure(deny_events="Noise")
    segment.track("u1", "Noise")
    segment.track("u1", "Signal")
    assert [event["event"] for event in pendo_capture.track_events()] == ["Signal"]


USER_TESTS = """
import sys

import pytest
from segment.analytics import Client
from pendo_plugin.sandbox import Sandbox


def test_the_plugin_stays_out_of_tests_that_do_not_ask():  # runs first: nothing loaded, nothing configured
    from pendo_plugin import config
    assert config._overrides == {}
    assert "pendo_plugin.destination.intake" not in sys.modules


@pytest.fixture(scope="module")
def segment_host():
    with Sandbox() as stub:  # answers Segment's /v1/batch locally
        yield stub.url


def signup(client, user_id, plan):  # the code under test
    client.identify(user_id, {"plan": plan})
    client.track(user_id, "Signed Up", {"plan": plan})


def test_signup_reaches_pendo(pendo_capture, segment_host):
    client = Client("test-write-key", host=segment_host, sync_mode=True)
    signup(client, "u1", plan="pro")
    pendo_capture.assert_tracked("Signed Up", plan="pro")
    assert pendo_capture.visitors()["u1"]["plan"] == "pro"


def test_wrong_expectation(pendo_capture, segment_host):
    client = Client("test-write-key", host=segment_host, sync_mode=True)
    signup(client, "u2", plan="free")
    pendo_capture.assert_tracked("Signed Up", plan="enterprise")
"""


def test_a_user_suite_gets_the_fixture_from_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no Pendo track event 'Signed Up' with properties {'plan': 'enterprise'};"
            " captured 1 event(s):",
            "*'Signed Up' {'plan': 'free'}",
        ]
    )


def test_the_fixture_is_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["pendo_capture*", "*Capture, in memory, every Pendo payload*"])


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, pytest; before = set(sys.modules); import pendo_plugin.testing; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('pendo_plugin.testing')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
