"""An outside review of issue 22's second round: Segment's SDK passes ``int``, ``float`` and ``str``
subclasses through as they are, so an app's own object whose methods raise reaches the plugin. Such a
number is read by ``float``'s and ``int``'s own conversions (the message was dropped whole); any other
value whose conversion raises is left out alone (``fixed:value_unreadable``); a message that still cannot
be translated is dropped with an escaped log line. Real parts: the real Segment SDK, the sandbox."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.sandbox import Sandbox


class _Score(float):
    """A float subclass (as an app's unit type may be) whose own conversions raise."""

    def __float__(self) -> float:
        raise RuntimeError("no float")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _Count(int):
    def __int__(self) -> int:
        raise RuntimeError("no int")

    def __index__(self) -> int:
        raise RuntimeError("no index")


class _EventName(str):
    """An event name whose hash raises with a message that would forge a log line."""

    def __hash__(self) -> int:
        raise RuntimeError("hash\nERROR pendo_plugin: forged\x1b[2J")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")


class _Settings(dict[str, Any]):
    """A mapping whose items cannot be listed (another SDK, or ``replay``'s callers, may pass one)."""

    def items(self) -> Any:
        raise RuntimeError("no items")


@pytest.mark.parametrize(
    ("value", "expected", "fix"),
    [
        (_Score(1.5), 1.5, None),
        ([_Score(2.5), _Count(3)], [2.5, 3], None),
        (_Count(10**400), None, "value_huge_int"),
        (_Settings(a=1), None, "value_unreadable"),
        ([_Settings(a=1), 4], [None, 4], "value_unreadable"),
    ],
    ids=["float", "in a list", "huge int", "mapping", "mapping in a list"],
)
def test_json_safe_reads_numbers_by_their_own_type_and_leaves_out_only_what_raises(
    value: Any, expected: Any, fix: str | None
) -> None:
    safe, fixes = json_safe({"bad": value, "plan": "pro"})
    assert safe == {"bad": expected, "plan": "pro"}
    assert fix is None or fix in fixes


def test_an_app_object_that_raises_loses_one_trait_not_the_message(
    plugin: Sandbox, segment_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    segment_client.identify("user-1", {"score": _Score(1.5), "plan": "pro"})
    segment_client.track("user-1", "Scored", {"score": _Score(1.5), "count": _Count(7), "plan": "pro"})
    segment_client.group("user-1", "account-1", {"size": [_Score(2.5)], "tier": "gold"})
    segment_client.track("user-2", _EventName("Odd"), {"plan": "pro"})
    segment_client.identify("user-3", {"plan": "free"})
    segment_client.flush()

    assert plugin.wait_for(
        lambda box: {"user-1", "user-3"} <= set(box.visitors()) and box.counts()["track_events"] == 1
        and "account-1" in box.accounts(),
        timeout=15,
    )
    assert plugin.visitors()["user-1"] == {"score": 1.5, "plan": "pro"}
    assert plugin.track_events()[0]["properties"] == {"score": 1.5, "count": 7, "plan": "pro"}
    assert plugin.accounts()["account-1"]["tier"] == "gold"
    assert pendo_plugin.stats().get("dropped:internal_error") == 1  # only the event whose name cannot hash
    lines = [message for message in caplog.messages if "could not translate" in message]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines)
    assert len(plugin.segment_messages()) == 5  # Segment's own upload untouched
