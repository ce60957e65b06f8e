"""PENDO_REDIS_REPLICAS above the replicas that answer: each payload reaches Pendo once, from the local
spool (its entry is taken back out of the stream), nothing stalls or is lost, and the process says once
that replicas fall short and once that they confirm again. With enough replicas the stream is used alone."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, run_app, start_app
from tests.fleet_redis import RedisServer

SHORT_LINE = "0 of PENDO_REDIS_REPLICAS=1 replicas confirmed an append"
BACK_LINE = "1 replicas confirm appends again"
SYNC_WAIT = 15.0


def _delivered_once(sandbox: Sandbox, count: int) -> None:
    delivered = collections.Counter(e["properties"]["n"] for e in sandbox.track_events())
    assert set(delivered) == set(range(count)), sorted(set(range(count)) - set(delivered))  # none lost
    assert max(delivered.values()) == 1, [n for n, times in delivered.items() if times > 1]  # none twice


def _wait(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + SYNC_WAIT
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _replica_of(primary: RedisServer, directory: Path) -> RedisServer:
    replica = RedisServer(directory, extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()

    def synced() -> bool:
        return bool(replica.client().info("replication")["master_link_status"] == "up")

    _wait(synced, "the replica did not sync")
    return replica


def test_no_replica_delivers_each_payload_once_from_the_local_spool(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    script = app_script(
        """
        client = make_client()
        for chunk in range(6):
            send(client, 50, user="short", start=chunk * 50)
            time.sleep(0.3)  # several appends: the first waits WAIT's 0.5 s, the others stay local
        client.flush()
        report(flushed=pendo_plugin.flush(20))
        """
    )
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, redis_replicas=1)
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert stats["redis:not_replicated"] == 300, stats
    assert stats.get("redis:appended", 0) == 0, stats  # what was appended unconfirmed was taken back out
    assert run.stderr.count(SHORT_LINE) == 1, run.describe()
    assert redis_server.client().xlen("{pendo_plugin}:queue") == 0
    _delivered_once(sandbox, 300)
    assert len(sandbox.track_events()) == 300


def test_enough_replicas_go_through_the_stream_alone(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    replica = _replica_of(redis_server, tmp_path / "replica")
    try:
        script = app_script(
            """
            client = make_client()
            send(client, 300, user="replicated")
            client.flush()
            report(flushed=pendo_plugin.flush(20))
            """
        )
        redis_url = redis_server.url
        env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_url, redis_replicas=1)
        run = run_app(script, env)
    finally:
        replica.stop()
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert stats["redis:appended"] == 300, stats
    assert stats.get("redis:not_replicated", 0) == 0 and stats.get("written_ahead", 0) == 0, stats
    assert SHORT_LINE not in run.stderr, run.describe()
    _delivered_once(sandbox, 300)


def test_a_replica_that_comes_back_brings_appends_back_to_the_stream(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    half, go = tmp_path / "half", tmp_path / "go"
    script = app_script(
        f"""
        client = make_client()
        send(client, 100, user="back")
        client.flush()
        report(flushed=pendo_plugin.flush(20))
        open({str(half)!r}, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        for chunk in range(10):
            send(client, 20, user="back", start=100 + chunk * 20)
            time.sleep(0.5)  # past the 2 s between asks whether replicas are back
        client.flush()
        report(flushed=pendo_plugin.flush(20))
        """
    )
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, redis_replicas=1)
    started = time.monotonic()
    process = start_app(script, env)
    replica = None
    try:
        _wait(half.exists, "the app did not finish its first half")
        replica = _replica_of(redis_server, tmp_path / "replica")
        go.touch()
        run = finish_app(process, started)
    finally:
        if replica is not None:
            replica.stop()
    assert run.returncode == 0, run.describe()
    first, last = run.reports()[0]["stats"], run.reports()[-1]["stats"]
    assert first["redis:not_replicated"] == 100, first
    assert run.stderr.count(SHORT_LINE) == 1 and run.stderr.count(BACK_LINE) == 1, run.describe()
    assert last.get("redis:appended", 0) > 0, last  # once the replica confirms, appends go to the stream
    _delivered_once(sandbox, 300)
