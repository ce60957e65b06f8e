"""The shared rate budget per Pendo endpoint (PENDO_RATE_LIMIT) and the fleet-wide pause after a 429."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.delivery.fleet.rate import RateGate, budget, endpoint_of, reserve
from pendo_plugin.sandbox import RecordedRequest, Sandbox
from tests.apps import app_env, app_script, finish_app, start_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer

FLEET_LIMIT = 100  # what the stand-in enforces, like Pendo
FLEET_BUDGET = 80  # what the processes share
PROCESSES = 4
EVENTS_EACH = 120


def test_reservations_let_a_small_burst_through_then_space_requests() -> None:
    interval, tolerance = budget(80)
    now, tat, times = 100.0, 0.0, []
    for _ in range(20):
        at, tat = reserve(now, tat, 0.0, interval, tolerance)
        times.append(at)
    assert times[:8] == pytest.approx([now] * 8)  # a tenth of a second's budget at once
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[7:])]
    assert all(gap == pytest.approx(interval) for gap in gaps)


def test_a_pause_holds_requests_with_or_without_a_budget() -> None:
    assert reserve(10.0, 0.0, 12.5, 0.0, 0.0)[0] == 12.5
    assert reserve(10.0, 0.0, 12.5, *budget(80))[0] == 12.5


def test_endpoints_are_named_without_secrets() -> None:
    assert endpoint_of("https://app.pendo.io/data/track") == "track"
    assert endpoint_of("https://data.pendo.io/data/segmentio/secret-api-key") == "webhook"
    assert endpoint_of("https://app.pendo.io/api/v1/metadata/visitor/custom/value?create=true") == (
        "metadata:visitor"
    )
    assert endpoint_of("https://app.pendo.io/api/v1/metadata/schema/account") == "schema"


def test_sandbox_answers_429_past_its_rate_limit() -> None:
    import requests

    with Sandbox(track_secret=TRACK_SECRET, rate_limit=5) as box:
        statuses = [
            requests.post(
                f"{box.url}/data/track", json={}, timeout=5, headers={"x-pendo-integration-key": "k"}
            )
            for _ in range(8)
        ]
        assert [r.status_code == 429 for r in statuses] == [False] * 5 + [True] * 3
        assert statuses[-1].headers["Retry-After"] == "1"


def _gates_share(url: str) -> tuple[list[float], float]:
    async def run() -> tuple[list[float], float]:
        first, second = RedisLink(url), RedisLink(url)
        gates = [(RateGate(), first), (RateGate(), second)]
        delays = [await gate.delay("track", 10, link) for _ in range(5) for gate, link in gates]
        await gates[0][0].pause("webhook", 2.0, first)
        paused = await gates[1][0].delay("webhook", None, second)
        await first.close()
        await second.close()
        return delays, paused

    return asyncio.run(run())


def test_two_processes_share_one_budget_and_one_pause_through_redis(redis_server: RedisServer) -> None:
    delays, paused = _gates_share(redis_server.url)
    # 10 requests from two gates at 10/s (burst 1): never two within 0.1 s, whichever gate asked (a gate
    # reserves a window of slots at once, so a slot the other gate holds may stay unused: budget left idle)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(delays))]
    assert min(gaps) > 0.1 - 0.03
    assert 1.8 < paused <= 2.0  # the 429 one gate saw holds the other one too


def test_one_round_trip_reserves_slots_for_several_waiting_sends(redis_server: RedisServer) -> None:
    counters.reset()

    async def run() -> list[float]:
        link, gate = RedisLink(redis_server.url), RateGate()
        first = await gate.delay("track", 10, link)  # alone: one slot
        rest = await asyncio.gather(*(gate.delay("track", 10, link) for _ in range(11)))
        await link.close()
        return [first, *rest]

    delays = asyncio.run(run())
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(delays))]
    assert min(gaps) > 0.1 - 0.03  # still one send per 0.1 s
    assert counters.snapshot()["redis:round_trips"] <= 3  # 12 sends, not 12 script calls


def test_without_a_budget_sends_at_once_share_one_look_for_the_fleet_pause(redis_server: RedisServer) -> None:
    counters.reset()

    async def run() -> list[float]:
        link, gate = RedisLink(redis_server.url), RateGate()
        await gate.pause("track", 1.0, link)  # another process's 429: the pause key set in Redis
        other = RateGate()  # a process that has not looked yet
        delays = await asyncio.gather(*(other.delay("track", None, link) for _ in range(50)))
        await link.close()
        return delays

    delays = asyncio.run(run())
    assert all(0.8 < delay <= 1.0 for delay in delays)  # every send honours the fleet's pause
    assert counters.snapshot()["redis:round_trips"] == 2  # the pause set, then one look for 50 sends


def test_redis_unreachable_falls_back_to_the_local_budget(
    closed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = "redis://" + closed_url.removeprefix("http://")
    counters.reset()

    async def run() -> list[float]:
        link, gate = RedisLink(url), RateGate()
        send_times = []
        for _ in range(3):
            delay = await gate.delay("track", 10, link)
            send_times.append(time.monotonic() + delay)
        await link.close()
        return send_times

    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        send_times = asyncio.run(run())
    gaps = [later - earlier for earlier, later in itertools.pairwise(send_times)]
    assert gaps == pytest.approx([0.1, 0.1], abs=0.02)  # 10/s, kept by this process alone
    assert len([r for r in caplog.records if "not answering" in r.getMessage()]) == 1
    assert counters.snapshot()["redis:errors"] == 1  # retried only after a pause, not per request


def test_without_redis_the_rate_limit_holds_one_process(plugin: Sandbox) -> None:
    from segment.analytics import Client

    pendo_plugin.configure(rate_limit=20)
    client = Client("test-write-key", host=plugin.url, upload_interval=0.05)
    for n in range(30):
        client.track(user_id="u1", event="Rated", properties={"n": n})
    client.flush()
    assert pendo_plugin.flush(30)
    times = [entry.at for entry in plugin.request_log() if entry.path == "/data/track"]
    assert len(times) == 30
    assert times[-1] - times[0] >= 28 / 20 * 0.95  # 2 at once, then 20 a second
    client.join()


@pytest.fixture
def limited_box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=FLEET_LIMIT) as box:
        yield box


def _busiest_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_fleet_of_processes_holds_the_shared_budget(
    limited_box: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    script = app_script(
        f"""
        client = make_client()
        send(client, {EVENTS_EACH}, user=f"u{{os.getpid()}}")
        client.flush()
        report(flushed=pendo_plugin.flush(60))
        """
    )
    processes = []
    started = time.monotonic()
    for n in range(PROCESSES):
        env = app_env(
            limited_box.url,
            tmp_path / f"spool{n}",
            limited_box.url,
            redis_url=redis_server.url,
            rate_limit=FLEET_BUDGET,
            flush_timeout=60,
        )
        processes.append(start_app(script, env))
    runs = [finish_app(process, started, timeout=90) for process in processes]
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert run.reports()[-1]["flushed"], run.describe()

    expected = PROCESSES * EVENTS_EACH
    events = limited_box.track_events()
    delivered = {(e["visitorId"], e["properties"]["n"]) for e in events}
    assert len(delivered) == expected
    track: list[RecordedRequest] = [e for e in limited_box.request_log() if e.path == "/data/track"]
    refused = sum(1 for e in track if e.status == 429)
    assert refused / len(track) < 0.02, f"{refused} of {len(track)} requests answered 429"
    times = sorted(e.at for e in track if e.status == 200)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert FLEET_BUDGET * 0.8 <= rate <= FLEET_BUDGET * 1.1, f"fleet sent {rate:.1f}/s"
    assert _busiest_second(times) <= FLEET_BUDGET * 1.1 + 8


def _three_sends_and_a_pause(url: str) -> list[float]:
    """Three track sends at 10/s and a webhook pause of 0.5 s through one gate on ``url``: their delays."""

    async def run() -> list[float]:
        link, gate = RedisLink(url), RateGate()
        delays = [await gate.delay("track", 10, link) for _ in range(3)]
        await gate.pause("webhook", 0.5, link)
        await link.close()
        return delays

    return asyncio.run(run())


def test_rate_and_pause_keys_of_another_type_are_reset_not_taken_for_an_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys written by hand with the wrong type (a list, a hash) would make every reservation an error
    reply: the fleet would fall back to per-process budgets for good. The scripts reset them instead."""
    raw = redis_server.client()
    raw.rpush("{pendo_plugin}:rate:track", "x")
    raw.hset("{pendo_plugin}:pause:track", "x", "1")
    raw.rpush("{pendo_plugin}:pause:webhook", "x")
    counters.reset()

    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        _three_sends_and_a_pause(redis_server.url)
    assert "redis:errors" not in counters.snapshot()
    assert not [r for r in caplog.records if "Redis at" in r.getMessage()]
    assert raw.type("{pendo_plugin}:rate:track") == b"string"
    assert raw.type("{pendo_plugin}:pause:webhook") == b"string"


def test_an_error_reply_is_logged_as_an_error_not_as_redis_not_answering(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    raw = redis_server.client()
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", "1")  # the server is over its limit now: every write is answered OOM
    counters.reset()

    async def run() -> float:
        link, gate = RedisLink(redis_server.url), RateGate()
        delay = await gate.delay("track", 10, link)
        await link.close()
        return delay

    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        assert asyncio.run(run()) >= 0  # the local budget took over
    lines = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
    assert len(lines) == 1 and "answered an error (OutOfMemoryError: command not allowed" in lines[0], lines
    assert "not answering" not in lines[0]


@pytest.mark.parametrize("stored", ["inf", "nan", "1e300", "0x7fffffffffffffff", "9" * 400])
def test_rate_and_pause_times_no_process_could_have_written_are_taken_as_none(
    redis_server: RedisServer, stored: str
) -> None:
    """A stored time that is no finite number, or ahead further than it can honestly be (by hand, or a
    server whose clock ran ahead), failed every reservation (``SET ... PX inf``: an error reply, the fleet
    on per-process budgets for good) or held every send a minute at a time, forever (its key's expiry
    pushed ahead with it). Both are taken as none: the budget goes on, shared."""
    raw = redis_server.client()
    for kind in ("rate", "pause"):
        raw.set(f"{{pendo_plugin}}:{kind}:track", stored)
    raw.set("{pendo_plugin}:pause:webhook", stored)
    counters.reset()

    delays = _three_sends_and_a_pause(redis_server.url)
    assert "redis:errors" not in counters.snapshot()
    assert max(delays) < 1.0, delays  # the burst allowed at 10/s, not a minute
    honest_until = (time.time() + 60) * 1e6
    assert float(raw.get("{pendo_plugin}:rate:track")) < honest_until
    assert float(raw.get("{pendo_plugin}:pause:webhook")) < honest_until


def test_an_error_reply_that_comes_back_between_answers_is_logged_once_and_counted_each_time(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory, Redis refuses writes but answers reads (the flags' poll): each answer ended the
    outage and the next reservation began another, two log lines every RETRY_AFTER (29 lines in 30 s of
    one app). The same kind of error reply is logged once per ERROR_LOG_AGAIN, and counted every time."""
    raw = redis_server.client()
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", "1")
    counters.reset()
    turns = 5

    async def run() -> None:
        link, gate = RedisLink(redis_server.url), RateGate()
        for _ in range(turns):
            await gate.delay("track", 10, link)  # the reservation's write is refused: the local budget
            await (await link.client()).get("{pendo_plugin}:flags")  # a read is answered
            link.answered()
            link.retry_now()
        await link.close()

    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
    assert sum("answered an error (OutOfMemoryError" in line for line in lines) == 1, lines
    assert sum("answers again" in line for line in lines) == 1, lines
    assert counters.snapshot()["redis:errors"] == turns
