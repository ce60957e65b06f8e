"""An outside review of issue 22's second round: a third-party ``segment_analytics`` plugin's exception
may quote the message (a trait with a newline and a terminal escape), or fail to be written at all
(``__str__`` raising); its log line is escaped like every other. Real parts: the real Segment SDK, the
plugin system, the sandbox."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pendo_plugin import hookimpl
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins

HOSTILE_NAME = "Ann\nERROR pendo_plugin: forged line\x1b[2J"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


class _Audit:
    @hookimpl
    def segment_message(self, message: dict[str, Any]) -> None:
        raise ValueError(f"no audit record for {message['traits']['name']}")

    @hookimpl
    def pendo_rollout(self, message: dict[str, Any]) -> bool | None:
        raise _Unprintable()


@pytest.fixture
def audit_plugin() -> Any:
    name = plugins.register_plugin(_Audit(), name="audit\n\x1b[31m")
    try:
        yield name
    finally:
        plugins.unregister_plugin(name=name)


def test_a_plugins_exception_quoting_the_message_is_logged_escaped(
    plugin: Sandbox,
    segment_client: Any,
    audit_plugin: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.ERROR)
    segment_client.identify("user-1", {"name": HOSTILE_NAME})
    segment_client.flush()
    assert plugin.wait_for(lambda box: "user-1" in box.visitors(), timeout=15)  # delivery goes on

    lines = [message for message in caplog.messages if "segment_analytics plugin" in message]
    assert any(" segment_message: " in line for line in lines)
    assert any(" pendo_rollout: " in line for line in lines)
    for line in lines:
        assert "\n" not in line and "\x1b" not in line
    assert any("_Unprintable" in line for line in lines)
    assert "Logging error" not in capsys.readouterr().err


class _Silent:
    @hookimpl
    def segment_message(self, message: dict[str, Any]) -> None:
        raise _Unprintable()


def test_a_plugin_exception_that_cannot_be_written_never_reaches_the_app(
    plugin: Sandbox, segment_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = plugins.register_plugin(_Silent(), name="silent")
    try:
        try:
            segment_client.track("user-1", "Signed Up", {"plan": "pro"})  # the app's thread
        except Exception as exc:  # any exception here is the failure
            pytest.fail(f"the app saw {type(exc).__name__}")
        segment_client.flush()
        assert plugin.wait_for(lambda box: box.counts()["track_events"] == 1, timeout=15)
    finally:
        plugins.unregister_plugin(name=name)
    assert any("raised in segment_message: _Unprintable" in message for message in caplog.messages)
