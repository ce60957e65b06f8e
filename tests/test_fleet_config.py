"""Fleet-mode settings and the real redis-server fixture the fleet tests run against."""

from __future__ import annotations

import logging

import pytest

from pendo_plugin import logs
from pendo_plugin.config import load
from pendo_plugin.config_values import sentinel_parts
from tests.fleet_redis import RedisServer

SECRETS = {"PENDO_TRACK_SECRET": "track-secret-123456", "PENDO_INTEGRATION_KEY": "integration-key-123456"}


def test_fleet_mode_is_off_by_default() -> None:
    settings = load(environ=SECRETS)
    assert settings.redis_url is None
    assert settings.rate_limit is None
    assert settings.redis_claim_after == 60
    assert settings.redis_max_len == 1_000_000


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example.com:6380",
        "unix:///run/redis/redis.sock",
        "redis+sentinel://127.0.0.1:26379/pm/0",
        "rediss+sentinel://app:pw@s1:26379,s2:26380,[::1]:26381/pendo-fleet/2",
    ],
)
def test_redis_urls_accepted(url: str) -> None:
    settings = load(environ={**SECRETS, "PENDO_REDIS_URL": url})
    assert settings.active
    assert settings.redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@cache:6379",
        "redis+sentinel://user:hunter2@s1:26379/",  # no service name
        "redis+sentinel://user:hunter2@s1:port/pm/0",
        "redis+sentinel://user:hunter2@s1:26379/pm/zero",
    ],
)
def test_unusable_redis_url_turns_fleet_mode_off_not_the_plugin(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    logs.forget()  # the line is logged once per process and problem
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        settings = load(environ={**SECRETS, "PENDO_REDIS_URL": url})
    assert settings.active and not settings.problems
    assert settings.redis_url is None
    assert settings.redis_url_problem is not None and "PENDO_REDIS_URL" in settings.redis_url_problem
    [record] = caplog.records
    assert "fleet mode is off" in record.getMessage() and "delivers alone" in record.getMessage()
    assert "hunter2" not in record.getMessage()


def test_sentinel_url_parts() -> None:
    assert sentinel_parts("redis+sentinel://u:p@s1:26379,s2:26380/pendo-fleet/3") == (
        [("s1", 26379), ("s2", 26380)],
        "pendo-fleet",
        3,
    )
    assert sentinel_parts("redis+sentinel://s1/pm") == ([("s1", 26379)], "pm", 0)


def test_sentinel_ipv6_address_without_a_port_takes_the_default() -> None:
    assert sentinel_parts("redis+sentinel://[::1]/pm/0") == ([("::1", 26379)], "pm", 0)
    two = sentinel_parts("redis+sentinel://[fd00::2],[::1]:26380/pm/0")[0]
    assert two == [("fd00::2", 26379), ("::1", 26380)]


def test_redis_replicas_setting() -> None:
    assert load(environ=SECRETS).redis_replicas == 0
    assert load(environ={**SECRETS, "PENDO_REDIS_REPLICAS": "2"}).redis_replicas == 2
    assert not load(environ={**SECRETS, "PENDO_REDIS_REPLICAS": "-1"}).active


def test_redis_password_never_in_repr_or_describe() -> None:
    settings = load(environ={**SECRETS, "PENDO_REDIS_URL": "redis://app:hunter2@cache:6379/2"})
    assert "hunter2" not in repr(settings)
    assert settings.describe()["redis_url"] == "redis://app:****@cache:6379/2"


def test_rate_limit_and_claim_after() -> None:
    fleet = {"PENDO_RATE_LIMIT": "80", "PENDO_REDIS_CLAIM_AFTER": "5", "PENDO_REDIS_MAX_LEN": "500"}
    settings = load(environ={**SECRETS, **fleet})
    assert (settings.rate_limit, settings.redis_claim_after, settings.redis_max_len) == (80, 5, 500)
    assert load(environ={**SECRETS, "PENDO_RATE_LIMIT": "off"}).rate_limit is None
    assert not load(environ={**SECRETS, "PENDO_RATE_LIMIT": "-3"}).active
    assert not load(environ={**SECRETS, "PENDO_REDIS_CLAIM_AFTER": "soon"}).active


def test_redis_fixture_serves_and_keeps_data_across_a_restart_with_appendonly(
    redis_server_aof: RedisServer,
) -> None:
    client = redis_server_aof.client()
    client.set("fixture-check", "kept")
    redis_server_aof.restart()
    assert redis_server_aof.client().get("fixture-check") == b"kept"


def test_redis_fixture_stops_its_server(redis_server: RedisServer) -> None:
    assert redis_server.ping()
    redis_server.stop()
    assert not redis_server.ping()
