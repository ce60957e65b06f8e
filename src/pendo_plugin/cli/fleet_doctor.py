"""``doctor``'s fleet-mode checks: the URL is usable, Redis answers, which shape it is (single node,
replica set through Sentinel, cluster), how durably the node holding the fleet's keys keeps them,
and whether it has replicas (docs/fleet.md, "Which Redis").

Persistence is graded from ``CONFIG GET`` (or ``INFO persistence`` where managed services refuse
CONFIG): AOF with fsync ``always`` (a crash loses nothing) and ``everysec`` (up to a second) pass;
AOF left to the OS's flush, RDB snapshots only, and nothing on disk are warned about.
"""

from __future__ import annotations

from typing import Any

from pendo_plugin.cli._common import Check, fail, ok
from pendo_plugin.cli.fleet_status import INSTALL, TIMEOUT, _errors, _text
from pendo_plugin.config import Settings, redacted_url
from pendo_plugin.delivery.fleet.link import KEY_PREFIX
from pendo_plugin.delivery.fleet.topology import CLUSTER, SENTINEL, UnusableUrl, connect_sync

WARN = "WARN"


def _node_info(client: Any, shape: str, section: str) -> dict[str, Any]:
    """``INFO section`` of the node holding the fleet's keys (in a cluster: their slot's primary)."""
    if shape == CLUSTER:
        info = client.info(section, target_nodes=client.get_node_from_key(KEY_PREFIX))
    else:
        info = client.info(section)
    return info if isinstance(info, dict) else {}


def _config(client: Any, shape: str, name: str) -> str | None:
    """A configuration value of that node, or None where CONFIG is refused (managed services)."""
    try:
        if shape == CLUSTER:
            answer = client.config_get(name, target_nodes=client.get_node_from_key(KEY_PREFIX))
        else:
            answer = client.config_get(name)
    except _errors():
        return None
    return _text(answer.get(name, "")) if isinstance(answer, dict) else None


def persistence(client: Any, shape: str) -> Check:
    """The grade of what the node holding the fleet's keys keeps on disk."""
    info = _node_info(client, shape, "persistence")
    aof = _config(client, shape, "appendonly")
    aof_on = aof == "yes" if aof is not None else bool(info.get("aof_enabled"))
    if aof_on:
        fsync = _config(client, shape, "appendfsync")
        if fsync == "always":
            return ok("persistence: AOF, fsync always (a crash of the Redis host loses nothing)")
        if fsync == "everysec":
            return ok("persistence: AOF, fsync every second (a crash of the Redis host loses up to 1 s)")
        if fsync is None:
            return ok("persistence: AOF (its fsync policy is not readable here)")
        return Check(WARN, "persistence: AOF with fsync left to the OS (appendfsync no): a crash of the "
                           "Redis host loses up to about 30 s; use appendfsync everysec")  # fmt: skip
    save = _config(client, shape, "save")
    if (save or "").strip() or (save is None and info.get("rdb_last_save_time", 0) > 0):
        return Check(WARN, "persistence: RDB snapshots only: a restart loses what came since the last "
                           "snapshot; turn on appendonly yes")  # fmt: skip
    return Check(WARN, "persistence: none (appendonly no and no RDB snapshots): a Redis restart loses "
                       "what waits in it")  # fmt: skip


def shape_line(client: Any, shape: str, shown: str | None, version: str) -> Check:
    """Redis answers, and in which shape."""
    if shape == SENTINEL:
        host, port = client.connection_pool.get_master_address()
        return ok(f"Redis at {shown} answers (version {version}): replica set through Sentinel, primary "
                  f"at {_text(host, 80)}:{int(port)}")  # fmt: skip
    if shape == CLUSTER:
        node = client.get_node_from_key(KEY_PREFIX)
        primaries = len(client.get_primaries())
        return ok(f"Redis at {shown} answers (version {version}): cluster of {primaries} primaries, the "
                  f"fleet's keys on {_text(node.host, 80)}:{int(node.port)}")  # fmt: skip
    return ok(f"Redis at {shown} answers (version {version}): single node")


def replicas(client: Any, shape: str, wanted: int) -> Check:
    """Whether the node holding the fleet's keys has replicas (and enough for PENDO_REDIS_REPLICAS)."""
    count = int(_node_info(client, shape, "replication").get("connected_slaves", 0) or 0)
    if count < wanted:
        return Check(WARN, f"replicas: {count} connected, PENDO_REDIS_REPLICAS={wanted}: appends are kept "
                           "in each process's local spool instead of the stream")  # fmt: skip
    if not count:
        return Check(WARN, "replicas: none: losing this node loses what waits in it")
    return ok(f"replicas: {count} connected")


def doctor_checks(settings: Settings) -> list[Check]:
    """The URL is usable, Redis answers; its shape, persistence and replicas (WARN lines)."""
    if settings.redis_url_problem:
        return [fail(f"{settings.redis_url_problem}: fleet mode is off, each process delivers alone")]
    url = settings.redis_url
    if not url:
        return []
    shown = redacted_url(url)
    try:
        client, shape = connect_sync(url, TIMEOUT)
    except ImportError:
        return [fail(f"PENDO_REDIS_URL is set but the redis extra is missing: {INSTALL}")]
    except UnusableUrl as exc:
        return [fail(f"PENDO_REDIS_URL {shown}: {exc}: fleet mode is off, each process delivers alone")]
    except _errors() as exc:
        return [fail(f"Redis at {shown} does not answer: {type(exc).__name__}")]
    try:
        version = _text(_node_info(client, shape, "server").get("redis_version", "?"), 20)
        return [
            shape_line(client, shape, shown, version),
            persistence(client, shape),
            replicas(client, shape, settings.redis_replicas),
        ]
    except _errors() as exc:
        return [fail(f"Redis at {shown} does not answer: {type(exc).__name__}")]
    finally:
        client.close()
