"""The fleet's keys in one Cluster slot, what waits under the old key names taken over once, an
unusable PENDO_REDIS_URL, and doctor's view of each Redis shape (real redis-server processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from redis.crc import key_slot

from pendo_plugin.cli.fleet_doctor import doctor_checks
from pendo_plugin.config import load
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY
from pendo_plugin.delivery.fleet.legacy import LEGACY_FLAGS, LEGACY_STREAM
from pendo_plugin.delivery.fleet.link import KEY_PREFIX
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, run_app, start_app
from tests.conftest import TRACK_SECRET
from tests.fleet_redis import RedisServer
from tests.fleet_topologies import Cluster, ReplicaSet


def _settings(url: str, **extra: str):  # type: ignore[no-untyped-def]
    return load(environ={"PENDO_TRACK_SECRET": TRACK_SECRET, "PENDO_REDIS_URL": url, **extra})


def test_every_fleet_key_hashes_to_one_cluster_slot() -> None:
    keys = [STREAM, FLAGS_KEY, *(f"{KEY_PREFIX}{part}:track" for part in ("rate", "pause"))]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert key_slot(STREAM.encode()) != key_slot(LEGACY_STREAM.encode())  # why the old names had to go


def _old_payload(n: int) -> bytes:
    body = {"type": "track", "event": "Old", "visitorId": "old", "timestamp": int(time.time() * 1000),
            "context": {}, "properties": {"n": n}}  # fmt: skip
    return json.dumps({"k": "track", "b": body}).encode()


def test_entries_and_flags_under_the_old_key_names_are_taken_over_once(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    for n in range(300):
        client.xadd(LEGACY_STREAM, {"p": _old_payload(n)})
    client.xgroup_create(LEGACY_STREAM, "pendo_plugin", id="0")
    client.hset(LEGACY_FLAGS, mapping={"rollout_percent": "100"})
    script = app_script("report(flushed=pendo_plugin.flush(30))")
    started = time.monotonic()
    processes = [  # two processes of the new version start together: each entry moves once
        start_app(
            script, app_env(sandbox.url, tmp_path / f"spool{n}", sandbox.url, redis_url=redis_server.url)
        )
        for n in range(2)
    ]
    runs = [finish_app(process, started, timeout=60) for process in processes]
    for run in runs:
        assert run.returncode == 0, run.describe()
    moved = sum(run.reports()[-1]["stats"].get("redis:moved_from_old_keys", 0) for run in runs)
    assert moved == 300
    assert sandbox.wait_for(lambda box: len(box.track_events()) >= 300, timeout=20)
    assert {e["properties"]["n"] for e in sandbox.track_events()} == set(range(300))
    assert client.xlen(LEGACY_STREAM) == 0 and client.xlen(STREAM) == 0
    assert client.hgetall(FLAGS_KEY) == {b"rollout_percent": b"100"}
    assert not client.exists(LEGACY_FLAGS)

    again = run_app(
        script, app_env(sandbox.url, tmp_path / "spool-later", sandbox.url, redis_url=redis_server.url)
    )
    assert "redis:moved_from_old_keys" not in again.reports()[-1]["stats"], again.describe()


def test_an_unusable_url_is_one_log_line_and_delivery_goes_on_without_fleet_mode(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = "redis+sentinel://app:hunter2@127.0.0.1:26379/"  # the service name is missing
    script = app_script(
        """
        client = make_client()
        send(client, 50, user="typo")
        client.flush()
        report(flushed=pendo_plugin.flush(30))
        """
    )
    run = run_app(script, app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=url))
    assert run.returncode == 0, run.describe()
    assert run.reports()[-1]["flushed"]
    assert {e["properties"]["n"] for e in sandbox.track_events()} == set(range(50))
    assert run.stderr.count("fleet mode is off") == 1, run.describe()
    assert "hunter2" not in run.stderr
    assert not any(name.startswith("redis:") for name in run.reports()[-1]["stats"])
    [check] = doctor_checks(_settings(url))
    assert check.status == "FAIL" and "fleet mode is off" in check.text and "hunter2" not in check.text


def test_doctor_grades_persistence_of_the_node_holding_the_keys(tmp_path: Path) -> None:
    everysec = RedisServer(tmp_path / "everysec", extra=["--appendonly", "yes", "--appendfsync", "everysec"])
    rdb = RedisServer(tmp_path / "rdb", extra=["--save", "3600 1"])
    for server, expected in ((everysec, ("OK", "persistence: AOF, fsync every second")),
                             (rdb, ("WARN", "persistence: RDB snapshots only"))):  # fmt: skip
        server.start()
        try:
            check = doctor_checks(_settings(server.url))[1]
        finally:
            server.stop()
        assert (check.status, check.text[: len(expected[1])]) == expected


def test_doctor_names_a_cluster_and_the_node_of_the_fleets_keys(redis_cluster: Cluster) -> None:
    shape, persistence, replicas = doctor_checks(_settings(redis_cluster.url))
    assert shape.status == "OK" and "cluster of 3 primaries" in shape.text
    node = redis_cluster.client().get_node_from_key(KEY_PREFIX)
    assert shape.text.endswith(f"the fleet's keys on 127.0.0.1:{node.port}")
    assert persistence.text.startswith("persistence: none")
    assert replicas.text.startswith("replicas: none")


def test_doctor_names_a_replica_set_and_its_primary(replica_set: ReplicaSet) -> None:
    checks = doctor_checks(_settings(replica_set.url, PENDO_REDIS_REPLICAS="2"))
    assert checks[0].text.endswith(
        f"replica set through Sentinel, primary at 127.0.0.1:{replica_set.primary.port}"
    )
    assert checks[2].status == "WARN" and checks[2].text.startswith(
        "replicas: 1 connected, PENDO_REDIS_REPLICAS=2"
    )
    assert doctor_checks(_settings(replica_set.url))[2].text == "replicas: 1 connected"
