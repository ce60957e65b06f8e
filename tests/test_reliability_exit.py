"""Real app processes: Pendo unreachable at exit, kill -9 in the middle of delivery, and a later
process with the same spool directory delivering what the earlier one could not.

Each app is a fresh interpreter with a real Segment client; the plugin activates itself from
PENDO_* variables (autoload). Exit times are measured on the system-wide monotonic clock.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app, start_app

N = 30
SHUTDOWN_TIMEOUT = 1.0
EXIT_SLACK = 2.0  # interpreter teardown, Segment's own join, a loaded machine


def delivered(sandbox: Sandbox) -> Counter[int]:
    """How many times each event (by its property n) reached Pendo."""
    return Counter(event["properties"]["n"] for event in sandbox.track_events())


def spooled(spool_dir: Path) -> int:
    return Spool(spool_dir, 1 << 40).status().items


@pytest.mark.parametrize(("pendo", "app_flushes"), [("closed", True), ("blackhole", False)])
def test_pendo_unreachable_app_exits_in_time_and_a_later_process_delivers_everything(
    sandbox: Sandbox, spool_dir: Path, closed_url: str, blackhole_url: str, pendo: str, app_flushes: bool
) -> None:
    dead = closed_url if pendo == "closed" else blackhole_url
    env = app_env(
        dead,
        spool_dir,
        sandbox.url,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        flush_timeout=1,
        request_timeout=60,  # a blackholed request would hang for a minute: the exit must not wait for it
        max_retries=5,
        retry_budget=60,
    )
    script = app_script(
        f"""
        client = make_client()
        send(client, {N})
        if {app_flushes}:
            client.flush()  # Segment's flush, and the plugin's (bounded by PENDO_FLUSH_TIMEOUT)
        else:
            client.queue.join()  # Segment's own queue only: the plugin's whole drain happens at exit
        report(phase="leaving")
        """
    )
    app = run_app(script, env)
    assert app.returncode == 0, app.describe()
    exit_seconds = app.ended_at - app.reports()[-1]["at"]
    assert exit_seconds < SHUTDOWN_TIMEOUT + EXIT_SLACK, app.describe()
    assert app.seconds < 20, app.describe()
    assert len(sandbox.segment_messages()) == N, "Segment got every message"
    assert sandbox.track_events() == []
    assert spooled(spool_dir) == N, app.describe()

    if app_flushes:
        later = app_script(
            """
            report(flushed=pendo_plugin.flush(15))
            """
        )
        expected = Counter(range(N))
    else:  # the next app delivers the spool as soon as its plugin starts, then exits without a flush
        later = app_script(
            f"""
            client = make_client()
            send(client, 1, start={N})
            report(phase="leaving")
            """
        )
        expected = Counter(range(N + 1))
    second = run_app(later, app_env(sandbox.url, spool_dir, sandbox.url, shutdown_timeout=10))
    assert second.returncode == 0, second.describe()
    assert delivered(sandbox) == expected, second.describe()
    assert spooled(spool_dir) == 0
    assert not [name for name in second.reports()[-1]["stats"] if name.startswith("dropped")]


def test_kill_9_during_delivery_then_the_next_process_delivers_everything_unacknowledged(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    total = 60
    sandbox.set_latency(0.3)  # with 2 requests at a time, delivering everything would take ~9 s
    script = app_script(
        f"""
        import threading
        client = make_client()
        send(client, {total})
        deadline = time.monotonic() + 10
        while pendo_plugin.stats().get("written_ahead", 0) < {total} and time.monotonic() < deadline:
            time.sleep(0.01)
        report(phase="written ahead")
        threading.Event().wait(60)  # busy delivering until killed
        """
    )
    app = start_app(script, app_env(sandbox.url, spool_dir, sandbox.url, max_concurrency=2))
    try:
        line = app.stdout.readline() if app.stdout else ""
        assert json.loads(line)["stats"].get("written_ahead") == total, line
        assert sandbox.wait_for(lambda box: len(box.track_events()) >= 5, timeout=15)
    finally:
        app.kill()  # SIGKILL: no atexit, no shutdown, locks dropped by the kernel
        app.wait(10)
    before = sum(delivered(sandbox).values())
    assert before < total, "killed in the middle of delivery"
    assert spooled(spool_dir) > 0

    sandbox.set_latency(0)
    second = run_app(
        app_script("report(flushed=pendo_plugin.flush(15))"), app_env(sandbox.url, spool_dir, sandbox.url)
    )
    assert second.returncode == 0, second.describe()
    assert second.reports()[-1]["flushed"] is True
    after = delivered(sandbox)
    missing = sorted(set(range(total)) - set(after))
    duplicates = sum(after.values()) - len(after)
    assert not missing, f"lost {missing}; {before} delivered before the kill, {duplicates} duplicates"
    assert set(after) == set(range(total))
    assert spooled(spool_dir) == 0
    print(f"kill -9 after {before} of {total} acknowledged: {duplicates} duplicate(s) after recovery")


def test_app_exit_is_bounded_by_shutdown_timeout_while_a_request_hangs(
    sandbox: Sandbox, spool_dir: Path, blackhole_url: str
) -> None:
    """The app's own exit (atexit) does not wait for a hanging Pendo beyond PENDO_SHUTDOWN_TIMEOUT,
    and Segment's messages still go out before it."""
    runs = []

    def one(timeout: float) -> None:
        env = app_env(blackhole_url, spool_dir / str(timeout), sandbox.url, shutdown_timeout=timeout)
        script = app_script(
            """
            client = make_client()
            send(client, 5)
            client.queue.join()  # Segment's own queue only (not the plugin's flush hook)
            report()
            """
        )
        runs.append((timeout, run_app(script, env)))

    threads = [threading.Thread(target=one, args=(timeout,)) for timeout in (0.5, 3.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for timeout, app in runs:
        exit_seconds = app.ended_at - app.reports()[-1]["at"]
        assert app.returncode == 0, app.describe()
        assert exit_seconds < timeout + EXIT_SLACK, (timeout, exit_seconds)
        assert spooled(spool_dir / str(timeout)) == 5
    slow = dict(runs)
    assert slow[3.0].ended_at - slow[3.0].reports()[-1]["at"] >= 3.0 - 0.1, "it did try for the whole bound"
    assert len(sandbox.segment_messages()) == 10
