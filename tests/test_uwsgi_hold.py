"""The hold a uWSGI master's runtime is under, in one process against the sandbox: while
``uwsgi.worker_id()`` is 0 nothing starts a thread (not ``track()``, ``flush()``, ``sync_mode`` nor
``shutdown()``) and everything is queued; uWSGI's post-fork hook releases it and the queue is
delivered. The ``uwsgi`` module exists only inside uWSGI, so a stand-in with its API is put in
``sys.modules`` here; the real servers run in ``test_shapes_servers.py``."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import destination
from pendo_plugin.sandbox import Sandbox


def uwsgi_master() -> types.SimpleNamespace:
    """uWSGI's Python API as the master without ``--master`` sees it before the fork."""
    return types.SimpleNamespace(
        worker_id=lambda: 0, mule_id=lambda: 0, i_am_the_spooler=lambda: False, masterpid=lambda: 0
    )


def test_held_runtime_queues_without_a_thread_until_uwsgi_forks(
    plugin: Sandbox, segment_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segment.analytics import Client

    uwsgi = uwsgi_master()
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    monkeypatch.setattr(destination, "_uwsgi_exit_registered", False)
    destination._runtime = None
    sync_client = Client("test-write-key", host=plugin.url, sync_mode=True)

    for n in range(3):
        segment_client.track("u1", "Held", {"n": n})
    sync_client.track("u1", "Held", {"n": 3})  # sync_mode too: nothing may run before the fork
    held = destination.runtime()
    assert held.held and held._thread is None
    assert pendo_plugin.flush(timeout=0.5) is False
    held.shutdown(0.5)  # the master's exit: the queue stays for worker 1
    assert held._thread is None and len(held.intake.live) + len(held.intake.overflow) == 4
    assert plugin.track_events() == []

    uwsgi.post_fork_hook()  # no fork happened (no --master): this process becomes worker 1
    assert pendo_plugin.flush(timeout=10) is True
    assert sorted(event["properties"]["n"] for event in plugin.track_events()) == [0, 1, 2, 3]
    assert callable(uwsgi.atexit)  # the worker's exit drain, before Python's atexit handlers
