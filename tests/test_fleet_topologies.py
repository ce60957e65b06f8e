"""Fleet mode on the Redis production runs, with real processes and the Pendo stand-in: a fleet on a
3-node Redis Cluster given one node's URL, and a primary with a replica behind a Sentinel whose
primary is killed mid-run (with and without PENDO_REDIS_REPLICAS)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.sandbox import Sandbox
from tests.apps import AppRun, app_env, app_script, finish_app, start_app, wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer
from tests.fleet_topologies import Cluster, ReplicaSet

PENDO_LIMIT = 100  # what the stand-in enforces, like Pendo
BUDGET = 80
FOLLOW_WAIT = 15.0  # every process must be on the new primary within this after the Sentinel switched


@pytest.fixture
def limited_box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=PENDO_LIMIT) as box:
        yield box


def _delivered(box: Sandbox) -> set[tuple[str, int]]:
    return {(e["visitorId"], e["properties"]["n"]) for e in box.track_events()}


def _finished(processes: list, started: float) -> list[AppRun]:  # type: ignore[type-arg]
    runs = [finish_app(process, started, timeout=120) for process in processes]
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert run.reports()[-1]["flushed"], run.describe()
    return runs


def test_fleet_on_a_cluster_given_one_nodes_url_shares_budget_and_queue(
    limited_box: Sandbox, redis_cluster: Cluster, tmp_path: Path
) -> None:
    processes_count, events_each = 4, 150
    script = app_script(
        f"""
        client = make_client()
        send(client, {events_each}, user=f"u{{os.getpid()}}")
        client.flush()
        report(flushed=pendo_plugin.flush(60))
        """
    )
    started = time.monotonic()
    processes = [
        start_app(
            script,
            app_env(
                limited_box.url,
                tmp_path / f"spool{n}",
                limited_box.url,
                redis_url=redis_cluster.url,
                rate_limit=BUDGET,
                flush_timeout=60,
            ),
        )
        for n in range(processes_count)
    ]
    runs = _finished(processes, started)

    stats = [run.reports()[-1]["stats"] for run in runs]
    assert len(_delivered(limited_box)) == processes_count * events_each
    assert sum(s.get("redis:appended", 0) for s in stats) == processes_count * events_each
    assert all(s.get("redis:fallback", 0) == 0 and "written_ahead" not in s for s in stats), stats
    assert all(s.get("redis:errors", 0) == 0 for s in stats), stats
    track = [e for e in limited_box.request_log() if e.path == "/data/track"]
    refused = sum(1 for e in track if e.status == 429)
    print(f"cluster: {refused} of {len(track)} requests answered 429")
    assert refused / len(track) < 0.02, f"{refused} of {len(track)} requests answered 429"
    assert redis_cluster.client().xlen(STREAM) == 0


def test_wait_counts_the_replicas_of_the_shard_holding_the_fleets_keys(
    redis_cluster_with_replicas: Cluster,
) -> None:
    async def appended_and_waited(url: str, replicas: int) -> list[object]:
        link = RedisLink(url)
        client = await link.client()
        pipe = client.pipeline(transaction=False)
        pipe.xadd(STREAM, {"p": b"probe"})
        link.wait_for_replicas(pipe, replicas)
        answers = await pipe.execute()
        await link.close()
        return answers

    url = redis_cluster_with_replicas.url  # three shards, one replica each
    assert asyncio.run(appended_and_waited(url, 1))[-1] == 1
    # two asked of a shard with one replica: 1 after the timeout, not the sum of every shard's replicas
    assert asyncio.run(appended_and_waited(url, 2))[-1] == 1


def test_the_replicas_are_asked_on_the_shard_holding_the_fleets_keys_before_the_first_append(
    redis_cluster_with_replicas: Cluster,
) -> None:
    async def appends_go_to_the_stream(replicas: int) -> bool:
        link = RedisLink(redis_cluster_with_replicas.url)
        try:
            return await link.replicas_back(replicas)  # a WAIT with no payload, on that shard
        finally:
            await link.close()

    assert asyncio.run(appends_go_to_the_stream(1))
    assert not asyncio.run(appends_go_to_the_stream(2))  # one replica each: the payloads stay local


FAILOVER_APP = """
client = make_client()
for chunk in range(16):
    send(client, 25, user="before", start=chunk * 25)
    time.sleep(0.25)  # a steady stream for about four seconds, the primary killed in the middle
client.flush()
deadline = time.monotonic() + 60  # the flag the test sets on the new primary: this process reads it there
while not pendo_plugin.stats().get("fleet_flags:applied") and time.monotonic() < deadline:
    time.sleep(0.05)
open(os.path.join(os.environ["FOLLOWED"], str(os.getpid())), "w").close()
while not os.path.exists(os.environ["FAILED_OVER"]) and time.monotonic() < deadline:
    time.sleep(0.05)
send(client, 100, user=f"after{os.getpid()}")
client.flush()
report(flushed=pendo_plugin.flush(60), pid=os.getpid())
"""


def _entries_added(server: RedisServer) -> int:
    client = server.client()
    return int(client.xinfo_stream(STREAM)["entries-added"]) if client.exists(STREAM) else 0


def _run_failover(box: Sandbox, replicas: ReplicaSet, tmp_path: Path, **settings: object) -> list[AppRun]:
    marker, followed_dir = tmp_path / "failed-over", tmp_path / "followed"
    followed_dir.mkdir()
    processes_count = 2
    started = time.monotonic()
    processes = []
    for n in range(processes_count):
        env = app_env(
            box.url, tmp_path / f"spool{n}", box.url, redis_url=replicas.url, flush_timeout=60, **settings
        )
        env.update(FAILED_OVER=str(marker), FOLLOWED=str(followed_dir))
        processes.append(start_app(app_script(FAILOVER_APP), env))
    try:
        assert box.wait_for(lambda b: len(_delivered(b)) >= 200, timeout=30)
        replicas.primary.kill()
        killed = time.monotonic()
        assert wait_until(lambda: replicas.primary_port() == replicas.replica.port, timeout=30)
        switched = time.monotonic()
        replicas.replica.client().hset(FLAGS_KEY, "rollout_percent", "100")  # on the new primary only
        pids = {str(process.pid) for process in processes}
        assert wait_until(lambda: {p.name for p in followed_dir.iterdir()} >= pids, timeout=FOLLOW_WAIT)
        followed = time.monotonic()
        print(f"sentinel switched {switched - killed:.1f} s after the kill; "
              f"every process on the new primary {followed - switched:.1f} s later")  # fmt: skip
        added_before = _entries_added(replicas.replica)
        marker.touch()
    finally:
        runs = _finished(processes, started)
    after = {(f"after{run.reports()[-1]['pid']}", n) for run in runs for n in range(100)}
    assert after <= _delivered(box), "events tracked after the failover were lost"
    appended = _entries_added(replicas.replica) - added_before
    if not settings.get("redis_replicas"):  # with it, the new primary has no replica: they stay local
        assert appended >= len(after), [(r.reports()[-1]["stats"], r.stderr) for r in runs]  # the new primary
    return runs


def test_sentinel_failover_without_replica_writes_delivers_at_least_98_percent(
    sandbox: Sandbox, replica_set: ReplicaSet, tmp_path: Path
) -> None:
    _run_failover(sandbox, replica_set, tmp_path)
    before = {(user, n) for user, n in _delivered(sandbox) if user == "before"}
    print(f"failover without WAIT: {len(before)} of 400 delivered")
    assert len(before) >= 0.98 * 400, f"{len(before)} of 400 events tracked before the failover delivered"


def test_sentinel_failover_with_one_replica_write_loses_nothing(
    sandbox: Sandbox, replica_set: ReplicaSet, tmp_path: Path
) -> None:
    runs = _run_failover(sandbox, replica_set, tmp_path, redis_replicas=1)
    before = {(user, n) for user, n in _delivered(sandbox) if user == "before"}
    assert before == {("before", n) for n in range(400)}
    # the new primary has no replica left: what is appended there is kept in the local spool instead,
    # and sent from there only (each event once)
    assert any(run.reports()[-1]["stats"].get("redis:not_replicated", 0) for run in runs)
    sent = collections.Counter((e["visitorId"], e["properties"]["n"]) for e in sandbox.track_events())
    after = [key for key in sent if key[0].startswith("after")]
    assert len(after) == 200 and all(sent[key] == 1 for key in after), sent
