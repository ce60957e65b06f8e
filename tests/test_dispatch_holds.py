"""What a process may not send stays where it is: spooled payloads replayed by ``pendo_plugin.flush()``
go through the same checks as live ones (shadow mode, the integration key), in real app processes
against the sandbox, with real spool files."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.sending import track_event, visitor_row

FLUSH_AND_REPORT = """
client = make_client()
send(client, 1, event="Live")
flushed = pendo_plugin.flush(10)
client.flush()
report(flushed=flushed)
"""


def track(event: str) -> payload.Payload:
    return track_event(event, "spooled")


def left_in(spool_dir: Path) -> int:
    return Spool(spool_dir, 1 << 40).status().items


def pendo_requests(box: Sandbox) -> list[str]:
    return [entry.path for entry in box.request_log() if not entry.path.startswith("/v1/batch")]


def test_a_flush_in_shadow_mode_sends_nothing_to_pendo_spooled_or_not(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as box:
        spool = Spool(spool_dir, 1 << 40)
        spool.write([track("Spooled 1"), track("Spooled 2"), visitor_row("u9", plan="pro")])
        env = app_env(box.url, spool_dir, box.url, shadow="true", shutdown_timeout=2)

        run = run_app(app_script(FLUSH_AND_REPORT), env)

        assert run.returncode == 0, run.describe()
        stats = run.reports()[-1]["stats"]
        assert stats.get("shadow:track") == 1, run.describe()  # the live event: translated, counted
        # held each time the spool is replayed (when the worker starts, and again by the flush)
        assert stats.get("held:shadow:track", 0) >= 2 and stats.get("held:shadow:visitor", 0) >= 1, stats
        assert box.track_events() == [] and box.visitors() == {}
        assert pendo_requests(box) == [], "shadow mode sends nothing to Pendo"
        assert [m["event"] for m in box.segment_messages()] == ["Live"], "Segment's own upload is untouched"
        assert left_in(spool_dir) == 3, "the spooled payloads wait for shadow mode to end"


def test_spooled_metadata_is_never_sent_without_an_integration_key(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as box:
        Spool(spool_dir, 1 << 40).write([track("Spooled"), visitor_row("u9", plan="pro")])
        env = app_env(box.url, spool_dir, box.url, shutdown_timeout=2)
        del env["PENDO_INTEGRATION_KEY"]  # a track secret only

        run = run_app(app_script(FLUSH_AND_REPORT), env)

        assert run.returncode == 0, run.describe()
        stats = run.reports()[-1]["stats"]
        assert stats.get("held:no_secret:visitor", 0) >= 1, stats
        assert sorted(event["event"] for event in box.track_events()) == ["Live", "Spooled"]
        assert not [path for path in pendo_requests(box) if path.startswith("/api/")], box.request_log()
        assert box.visitors() == {}
        assert left_in(spool_dir) == 1, "the row waits in the spool for a process that has the key"
