"""flush() and exit wait out the retries and Retry-After pauses that fit their budget, so a short-lived
job (a cron job, a container, a serverless function: no later process reads its spool) delivers
everything before it ends; only what cannot fit stays in the spool.

In-process tests use the real Segment client and the sandbox's fault injection; the short-lived jobs
are real interpreters with the plugin autoloaded from PENDO_* variables.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.delivery.transmit import BREAKER_THRESHOLD
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app

N = 50
EXIT_SLACK = 2.0  # interpreter teardown, Segment's own join, a loaded machine


def send(client: Any, count: int, user: str = "u1") -> None:
    for n in range(count):
        client.track(user_id=user, event="Budget", properties={"n": n})


def delivered(sandbox: Sandbox) -> Counter[int]:
    """How many times each event (by its property n) reached Pendo."""
    return Counter(event["properties"]["n"] for event in sandbox.track_events())


def track_statuses(sandbox: Sandbox) -> Counter[int]:
    return Counter(entry.status for entry in sandbox.request_log() if entry.path == "/data/track")


def spooled(spool_dir: Path) -> int:
    return Spool(spool_dir, 1 << 40).status().items


def test_flush_waits_out_503_with_retry_after_that_fits_its_budget(
    plugin: Sandbox, segment_client: Any
) -> None:
    """The issue's case: Pendo answers the first 4 requests 503 with Retry-After 1."""
    pendo_plugin.configure(max_retries=8, retry_budget=30, flush_timeout=30)
    plugin.fail_next(4, 503, headers={"Retry-After": "1"})
    started = time.monotonic()  # the pause may begin before flush() does
    send(segment_client, N)
    segment_client.flush()  # Segment's flush runs the plugin's segment_flush hook
    took = time.monotonic() - started
    assert delivered(plugin) == Counter(range(N)), f"flush returned after {took:.2f}s before delivery"
    assert track_statuses(plugin)[503] == 4
    assert took >= 1.0, "the Retry-After pause was waited for"
    stats = pendo_plugin.stats()
    assert stats["sent:track"] == N
    assert "parked" not in stats and "spooled" not in stats, stats
    assert pendo_plugin.flush(5) is True


def test_5xx_with_retry_after_do_not_open_the_breaker(plugin: Sandbox, segment_client: Any) -> None:
    """More 503s in a row than the breaker's threshold, each with a Retry-After: Pendo is answering,
    so nothing is parked and every event is delivered within the flush."""
    failures = BREAKER_THRESHOLD + 8
    pendo_plugin.configure(max_retries=8, retry_budget=30, max_concurrency=4)
    plugin.fail_next(failures, 503, headers={"Retry-After": "0"})
    send(segment_client, 60)
    assert pendo_plugin.flush(30) is True
    assert delivered(plugin) == Counter(range(60))
    assert track_statuses(plugin)[503] == failures
    stats = pendo_plugin.stats()
    assert "parked" not in stats, stats
    assert not [name for name in stats if name.startswith(("dropped", "retries_exhausted"))], stats


@pytest.mark.parametrize("ending", ["flush", "exit"])
def test_short_lived_job_delivers_everything_through_503s_before_it_exits(
    sandbox: Sandbox, spool_dir: Path, ending: str
) -> None:
    """503 x5 with Retry-After 1 and no later process: the job itself delivers 50 of 50, either in
    ``analytics.flush()`` or, without a flush, at exit within PENDO_SHUTDOWN_TIMEOUT (5 s)."""
    sandbox.fail_next(5, 503, headers={"Retry-After": "1"})
    script = app_script(
        f"""
        client = make_client()
        send(client, {N})
        started = time.monotonic()
        if {ending == "flush"}:
            client.flush()
        else:
            client.queue.join()  # Segment's own queue only: the plugin delivers at exit
        report(took=time.monotonic() - started)
        """
    )
    app = run_app(script, app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=5))
    assert app.returncode == 0, app.describe()
    last = app.reports()[-1]
    exit_seconds = app.ended_at - last["at"]
    assert delivered(sandbox) == Counter(range(N)), app.describe()
    assert track_statuses(sandbox)[503] == 5
    assert spooled(spool_dir) == 0, "nothing left for a later process"
    assert len(sandbox.segment_messages()) == N
    if ending == "flush":
        assert last["stats"]["sent:track"] == N, "delivered before flush() returned"
        assert exit_seconds < EXIT_SLACK, app.describe()
    else:
        assert exit_seconds < 5 + EXIT_SLACK, app.describe()
    print(f"{ending}: {N}/{N} delivered; flush {last['took']:.2f}s, exit {exit_seconds:.2f}s after it")


def test_what_cannot_fit_the_budget_stays_in_the_spool_without_waiting_for_it(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    """Retry-After 30 s against a 10 s flush and a 1 s exit: flush returns False as soon as nothing
    can be delivered in time, exit does not wait either, and every event is in the spool."""
    sandbox.fail_next(1000, 503, headers={"Retry-After": "30"})
    script = app_script(
        f"""
        client = make_client()
        send(client, {N})
        started = time.monotonic()
        flushed = pendo_plugin.flush(10)
        report(flushed=flushed, took=time.monotonic() - started)
        """
    )
    app = run_app(script, app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=1))
    assert app.returncode == 0, app.describe()
    last = app.reports()[-1]
    assert last["flushed"] is False
    assert last["took"] < 5, "flush did not wait for a pause that ends after its budget"
    assert app.ended_at - last["at"] < 1 + EXIT_SLACK, app.describe()
    assert sandbox.track_events() == []
    assert spooled(spool_dir) == N
    assert len(sandbox.segment_messages()) == N
