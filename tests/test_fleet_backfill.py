"""``replay`` and ``spool drain`` take from ``PENDO_RATE_LIMIT``, the fleet's with Redis, after live
traffic: a real ``pendo-plugin replay`` beside a live app, a real redis-server, and a Pendo stand-in that
answers 429 past 100 requests/s."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, pendo_env, start_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer

LINES = 600
PENDO_LIMIT = 100
BUDGET = 80

LIVE_APP = """
client = make_client()
for n in range(150):
    client.track(user_id="live", event="Live", properties={"n": n})
    time.sleep(0.02)  # about 40 events a second, while the replay runs
client.flush()
report(flushed=pendo_plugin.flush(60))
"""


def test_replay_beside_a_live_app_keeps_to_the_fleet_budget(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    export = tmp_path / "export.jsonl"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        {"type": "track", "userId": "old", "event": "Backfill", "messageId": f"m{n}", "timestamp": stamp,
         "properties": {"n": n}}
        for n in range(LINES)
    ]
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=PENDO_LIMIT) as box:
        started = time.monotonic()
        live = start_app(app_script(LIVE_APP), app_env(box.url, tmp_path / "spool", box.url,
                                                       redis_url=redis_server.url, rate_limit=BUDGET))
        env = pendo_env(box.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_REDIS_URL=redis_server.url,
                        PENDO_RATE_LIMIT=str(BUDGET), XDG_STATE_HOME=str(tmp_path / "state"))
        replay = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "replay", str(export)], env=env,
                                capture_output=True, text=True, timeout=120)
        run = finish_app(live, started, timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert run.returncode == 0 and run.reports()[-1]["flushed"], run.describe()
        track = [e for e in box.request_log() if e.path == "/data/track"]
        refused = sum(1 for e in track if e.status == 429)
        assert refused <= len(track) * 0.02, f"{refused} of {len(track)} requests answered 429"
        events = box.track_events()
        assert sorted(e["properties"]["n"] for e in events if e["event"] == "Backfill") == list(range(LINES))
        assert len([e for e in events if e["event"] == "Live"]) == 150
