"""Fleet mode through a healthy Sentinel under a burst: each new connection to the primary asks the
Sentinel, so the Sentinel's connections must not run out before the primary's do (a spurious
"not answering" sent the process to its local spool with every node healthy)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.delivery.fleet.topology import SENTINEL, UnusableUrl, connect
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer

SERVICE = "pm"
BURST = 5000


@pytest.fixture
def sentinel_url(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    """One Sentinel watching ``redis_server`` as service ``pm``; its ``redis+sentinel://`` URL."""
    conf = tmp_path / "sentinel" / "sentinel.conf"
    conf.parent.mkdir()
    conf.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {redis_server.port} 1\n")
    sentinel = RedisServer(conf.parent, config=conf, extra=["--sentinel"]).start()
    try:
        yield f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
    finally:
        sentinel.stop()


def test_many_new_connections_at_once_all_find_the_primary(sentinel_url: str) -> None:
    async def burst() -> list[BaseException | None]:
        client, shape, sentinels = await connect(sentinel_url, 1.0)
        assert shape == SENTINEL
        try:
            return await asyncio.gather(*(client.ping() for _ in range(300)), return_exceptions=True)
        finally:
            await client.aclose()
            for other in sentinels:
                await other.aclose()

    answers = asyncio.run(burst())
    assert [a for a in answers if a is not True] == []


def test_a_burst_through_a_healthy_sentinel_stays_on_redis(
    sandbox: Sandbox, sentinel_url: str, tmp_path: Path
) -> None:
    script = app_script(
        f"""
        client = make_client()
        send(client, {BURST}, user="burst")
        client.flush()
        report(flushed=pendo_plugin.flush(30))
        """
    )
    run = run_app(script, app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=sentinel_url))
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert "is not answering" not in run.stderr, run.describe()
    assert stats.get("redis:errors", 0) == 0 and stats["redis:appended"] == BURST, stats
    assert {e["properties"]["n"] for e in sandbox.track_events()} == set(range(BURST))


def test_a_sentinel_url_options_reach_the_primary_connections(
    sentinel_url: str, redis_server: RedisServer
) -> None:
    async def ping() -> None:
        client, _, sentinels = await connect(sentinel_url + "?protocol=3", 1.0)
        try:
            assert await client.ping()
            clients = redis_server.client().client_list()
            assert [c["resp"] for c in clients if c["name"] == "pendo_plugin"] == ["3"]
        finally:
            await client.aclose()
            for other in sentinels:
                await other.aclose()

    asyncio.run(ping())


@pytest.mark.parametrize("query", ["bogus=1", "ssl_ca_certs=/ca.pem", "health_check_interval=often"])
def test_a_sentinel_url_option_redis_py_refuses_is_an_unusable_url(sentinel_url: str, query: str) -> None:
    with pytest.raises(UnusableUrl, match="redis-py cannot use it"):  # ssl_ca_certs without rediss+
        asyncio.run(connect(f"{sentinel_url}?{query}", 1.0))
