"""A 429 while sends wait at the rate gate for their slots: none of them goes before the pause ends. A real
app process, the stand-in as Pendo, and (in fleet mode) a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, start_app, wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

BUDGET = 20
EVENTS = 80
PAUSE = 2  # the 429's Retry-After, seconds
SENT_BEFORE = 20  # requests answered before the 429, so the gate holds sends for later slots

APP = f"""
client = make_client()
send(client, {EVENTS}, user="paused")
client.flush()
report(flushed=pendo_plugin.flush(60))
"""


@pytest.mark.parametrize("fleet", [False, True], ids=["alone", "fleet"])
def test_sends_waiting_for_their_slots_wait_out_a_pause_that_began_meanwhile(
    fleet: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """They kept the slots reserved before the 429 and went in the pause: 4 requests within the 2 s of
    Retry-After at 20/s, each one more 429 from Pendo. A slot reserved before a pause is dropped now, and
    a new one taken after it."""
    settings: dict[str, object] = {"rate_limit": BUDGET, "flush_timeout": 60}
    if fleet:
        settings["redis_url"] = request.getfixturevalue("redis_server").url
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as box:
        started = time.monotonic()
        app = start_app(app_script(APP), app_env(box.url, tmp_path / "spool", box.url, **settings))
        answered = lambda: sum(e.path == "/data/track" for e in box.request_log())  # noqa: E731
        assert wait_until(lambda: answered() >= SENT_BEFORE, timeout=30)
        box.fail_next(1, 429, headers={"Retry-After": str(PAUSE)})
        run = finish_app(app, started, timeout=90)
        assert run.returncode == 0 and run.reports()[-1]["flushed"], run.describe()
        track = [e for e in box.request_log() if e.path == "/data/track"]
        refused = [e.at for e in track if e.status == 429]
        assert len(refused) == 1, run.describe()
        in_pause = [e.at - refused[0] for e in track if refused[0] < e.at < refused[0] + PAUSE - 0.05]
        assert in_pause == [], f"{len(in_pause)} requests went in the pause, at {in_pause}"
        assert len({e["properties"]["n"] for e in box.track_events()}) == EVENTS
