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


def test_a_replica_lost_then_back_moves_appends_to_the_spool_and_back_each_sent_once(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Phase 1 (replica up): the stream. Phase 2 (replica stopped): the append WAIT does not confirm is
    taken back out of the stream (XDEL) and sent from the spool. Phase 3 (replica back): the stream again."""
    script = app_script(
        """
        def phase(number, start):
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(os.environ["PHASES"], f"go{number}")):
                assert time.monotonic() < deadline, f"phase {number} never began"
                time.sleep(0.05)
            for chunk in range(5):
                send(client, 20, user="back", start=start + chunk * 20)
                time.sleep(0.5)  # several appends, past the 2 s between asks whether replicas are back
            client.flush()
            report(flushed=pendo_plugin.flush(20))
            open(os.path.join(os.environ["PHASES"], f"done{number}"), "w").close()

        client = make_client()
        for number in range(3):
            phase(number, number * 100)
        """
    )
    phases = tmp_path / "phases"
    phases.mkdir()
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url, redis_replicas=1)
    env["PHASES"] = str(phases)
    replica = _replica_of(redis_server, tmp_path / "replica")
    started = time.monotonic()
    process = start_app(script, env)
    try:
        (phases / "go0").touch()
        _wait((phases / "done0").exists, "phase 0 did not end")
        replica.stop()
        _wait(lambda: redis_server.client().info("replication")["connected_slaves"] == 0, "replica stays")
        (phases / "go1").touch()
        _wait((phases / "done1").exists, "phase 1 did not end")
        replica.start()
        _wait(lambda: replica.client().info("replication")["master_link_status"] == "up", "no resync")
        (phases / "go2").touch()
        run = finish_app(process, started)
    finally:
        replica.stop()
    assert run.returncode == 0, run.describe()
    with_replica, without, back = (report["stats"] for report in run.reports())
    assert with_replica["redis:appended"] == 100 and "redis:not_replicated" not in with_replica, with_replica
    assert without["redis:not_replicated"] == 100 and without["redis:appended"] == 100, without
    assert back["redis:appended"] > 100, back  # the replica confirms again: the stream again
    assert run.stderr.count(SHORT_LINE) == 1 and run.stderr.count(BACK_LINE) == 1, run.describe()
    assert redis_server.client().xlen("{pendo_plugin}:queue") == 0
    _delivered_once(sandbox, 300)
