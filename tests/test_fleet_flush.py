"""``flush()`` in fleet mode waits out 429s and retries within its budget, as in local mode: True means
delivered. A real process, a real redis-server and a Pendo stand-in that answers 429 past 40 requests/s."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer

EVENTS = 600
PENDO_LIMIT = 40

FLUSHING_APP = f"""
client = make_client()
send(client, {EVENTS}, user="flush")
client.flush()
began = time.monotonic()
flushed = pendo_plugin.flush(40)
report(flushed=flushed, seconds=time.monotonic() - began)
"""


def test_flush_in_fleet_mode_waits_out_429s_and_true_means_delivered(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=PENDO_LIMIT) as box:
        env = app_env(box.url, tmp_path / "spool", box.url, redis_url=redis_server.url, flush_timeout=40)
        run = run_app(app_script(FLUSHING_APP), env, timeout=120)
        assert run.returncode == 0, run.describe()
        report = run.reports()[-1]
        delivered = {e["properties"]["n"] for e in box.track_events()}
        assert report["flushed"], run.describe()
        accepted = [e for e in box.request_log() if e.path == "/data/track" and e.status == 200]
        assert sum(e.at <= report["at"] for e in accepted) == EVENTS, run.describe()  # when it said True
        assert delivered == set(range(EVENTS)), f"{len(delivered)} of {EVENTS} delivered; {run.describe()}"
        assert redis_server.client().xlen(STREAM) == 0

