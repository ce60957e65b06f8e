"""``flush()`` in fleet mode waits out 429s and retries within its budget, as in local mode: True means
delivered. A real process, a real redis-server and a Pendo stand-in that answers 429 past 40 requests/s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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



ROUNDS = 8
ANSWER_LATENCY = 0.1

ROUNDS_APP = f"""
client = make_client()
send(client, 5, user="warm-up")
pendo_plugin.flush(10)
took = []
for r in range({ROUNDS}):
    send(client, 5, user="rounds", start=r * 5)
    began = time.monotonic()
    took.append((pendo_plugin.flush(10), time.monotonic() - began))
report(took=took)
"""


def _flush_rounds(redis_server: RedisServer, tmp_path: Path, **settings: Any) -> list[float]:
    """Run :data:`ROUNDS_APP` in fleet mode against answers taking :data:`ANSWER_LATENCY` (``settings``: more
    of ``app_env``'s): each flush's seconds, sorted, once every flush said True and every event arrived."""
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, latency=ANSWER_LATENCY) as box:
        env = app_env(box.url, tmp_path / "spool", box.url, redis_url=redis_server.url, **settings)
        run = run_app(app_script(ROUNDS_APP), env, timeout=120)
        assert run.returncode == 0, run.describe()
        took = run.reports()[-1]["took"]
        assert all(flushed for flushed, _ in took), run.describe()
        delivered = {e["properties"]["n"] for e in box.track_events() if e["visitorId"] == "rounds"}
        assert len(delivered) == ROUNDS * 5, run.describe()
        return sorted(seconds for _, seconds in took)


def test_flush_in_fleet_mode_returns_when_the_shared_queues_sends_end(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The shared queue's sends ring a flush as the worker's own do: without that ring a flush found them
    done only at its next look, up to DRAIN_POLL_MAX later (0.82 s a flush, against 0.27 s with it, for
    answers taking 0.1 s). A bound, not a speed target: 0.35 s of slack per flush on a loaded box."""
    seconds = _flush_rounds(redis_server, tmp_path)
    assert seconds[len(seconds) // 2] < ANSWER_LATENCY + 0.35, f"flush took {seconds}"


def test_flush_in_fleet_mode_with_a_budget_returns_when_the_shared_queues_sends_settle(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With a budget every send of the shared queue waits at the rate gate; its end rings a flush only once
    its outcome is recorded (the queue's dispatcher rings it): rung as its answer came, before that, the
    flush found it still moving and looked again only up to DRAIN_POLL_MAX later (0.31 s a flush, against
    0.15 s, for answers taking 0.1 s). A bound, not a speed target: 0.15 s of slack per flush."""
    seconds = _flush_rounds(redis_server, tmp_path, rate_limit=1000)
    assert seconds[len(seconds) // 2] < ANSWER_LATENCY + 0.15, f"flush took {seconds}"
