"""The worker's event loop (``PENDO_EVENT_LOOP``): uvloop's by default, asyncio's on request, and
every call delivered the same on both, through the real Segment client to the stand-in."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import config, destination
from pendo_plugin.destination.loop import WorkerLoop
from pendo_plugin.sandbox import Sandbox
from tests.conftest import stop_runtime


def test_uvloop_is_the_default_and_installed_with_the_plugin() -> None:
    assert config.load(environ={}).event_loop == "uvloop"
    if sys.platform != "win32" and sys.implementation.name == "cpython":
        import uvloop  # a dependency there: its absence is a packaging bug, not a skip

        assert uvloop.Loop is not None


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_worker_runs_on_the_chosen_loop_and_delivers(plugin: Sandbox, segment_client: Any, kind: str) -> None:
    stop_runtime()  # the loop is chosen when the worker starts
    pendo_plugin.configure(event_loop=kind)
    segment_client.identify("loop-user", {"plan": kind})
    segment_client.group("loop-user", "loop-acct", {"tier": kind})
    for number in range(20):
        segment_client.track("loop-user", "Loop Checked", {"n": number})
    segment_client.flush()

    loop = destination._runtime._loop
    if kind == "asyncio":
        assert isinstance(loop, WorkerLoop)
    else:
        import uvloop

        assert isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert sorted(event["properties"]["n"] for event in plugin.track_events()) == list(range(20))
    assert plugin.visitors()["loop-user"] == {"plan": kind}
    assert plugin.accounts()["loop-acct"] == {"tier": kind}
    assert pendo_plugin.stats().get("sent:track") == 20
