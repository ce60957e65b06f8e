"""Real Redis topologies for the fleet-mode tests: a 3-node Redis Cluster, and a primary with a
replica behind a Sentinel. Every process is a real ``redis-server`` on a free loopback port in a
temporary directory; every wait is bounded."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet_redis import REDIS_SERVER, RedisServer, free_port

REDIS_CLI = shutil.which("redis-cli")
READY_WAIT = 30.0
SERVICE = "pendo-fleet"


def _wait(check: Callable[[], bool], what: str, timeout: float = READY_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # a server still starting answers with errors
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:.0f} s")


def _require(*binaries: str | None) -> None:
    if REDIS_SERVER is None or None in binaries:
        pytest.skip("redis-server/redis-cli are not installed (.ci/run installs Debian's redis-server)")


@dataclass
class Cluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """One node's URL, as a user would give it (cluster mode is detected)."""
        return self.nodes[1].url

    def client(self):  # type: ignore[no-untyped-def]
        import redis.cluster

        return redis.cluster.RedisCluster.from_url(self.url, socket_timeout=5)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three ``redis-server --cluster-enabled yes`` masters joined with ``redis-cli --cluster create``."""
    yield from _cluster(tmp_path, replicas_each=0)


@pytest.fixture
def redis_cluster_with_replicas(tmp_path: Path) -> Iterator[Cluster]:
    """Three primaries with one replica each (six ``redis-server`` processes)."""
    yield from _cluster(tmp_path, replicas_each=1)


def _cluster(tmp_path: Path, replicas_each: int) -> Iterator[Cluster]:
    """Three primaries, each with ``replicas_each`` replicas (in sync before this yields)."""
    _require(REDIS_CLI)
    assert REDIS_CLI is not None
    with ExitStack() as stack:
        nodes = []
        for n in range(3 * (1 + replicas_each)):
            directory = tmp_path / f"cluster{n}"
            node = RedisServer(
                directory,
                extra=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(directory / "nodes.conf"),
                    "--cluster-node-timeout", "2000",
                    "--cluster-port", str(free_port()),  # not port + 10000, which may be taken or too high
                ],
            )  # fmt: skip
            nodes.append(node.start())
            stack.callback(node.stop)
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(replicas_each),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=READY_WAIT,
        )
        for node in nodes:
            _wait(lambda node=node: node.client().cluster("info").get("cluster_state") == "ok",
                  "the cluster did not become ready")  # fmt: skip
            if node.client().info("replication")["role"] == "slave":
                _wait(lambda node=node: node.client().info("replication")["master_link_status"] == "up",
                      "a cluster replica did not sync")  # fmt: skip
        yield Cluster(nodes)


@dataclass
class ReplicaSet:
    primary: RedisServer
    replica: RedisServer
    sentinel: RedisServer

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    def primary_port(self) -> int:
        """The primary's port as the Sentinel sees it now."""
        _, port = self.sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
        return int(port)


@pytest.fixture
def replica_set(tmp_path: Path) -> Iterator[ReplicaSet]:
    """A primary, one replica and one Sentinel (quorum 1, down after 1 s) watching them."""
    _require()
    with ExitStack() as stack:
        primary = RedisServer(tmp_path / "primary").start()
        stack.callback(primary.stop)
        follow = ["--replicaof", "127.0.0.1", str(primary.port)]
        replica = RedisServer(tmp_path / "replica", extra=follow).start()
        stack.callback(replica.stop)
        conf = tmp_path / "sentinel" / "sentinel.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        sentinel = RedisServer(conf.parent, config=conf, extra=["--sentinel"]).start()
        stack.callback(sentinel.stop)
        _wait(lambda: replica.client().info("replication")["master_link_status"] == "up",
              "the replica did not sync")  # fmt: skip
        _wait(lambda: len(sentinel.client().sentinel_slaves(SERVICE)) == 1,
              "the Sentinel did not find the replica")  # fmt: skip
        yield ReplicaSet(primary, replica, sentinel)
