"""Fleet-mode settings and the real redis-server fixture the fleet tests run against."""

from __future__ import annotations

import logging

import pytest

from pendo_plugin.config import load
from tests.fleet_redis import RedisServer

SECRETS = {"PENDO_TRACK_SECRET": "track-secret-123456", "PENDO_INTEGRATION_KEY": "integration-key-123456"}


def test_fleet_mode_is_off_by_default() -> None:
    settings = load(environ=SECRETS)
    assert settings.redis_url is None
    assert settings.rate_limit is None
    assert settings.redis_claim_after == 60
    assert settings.redis_max_len == 1_000_000


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example.com:6380", "unix:///run/redis/redis.sock"]
)
def test_redis_urls_accepted(url: str) -> None:
    settings = load(environ={**SECRETS, "PENDO_REDIS_URL": url})
    assert settings.active
    assert settings.redis_url == url


def test_bad_redis_url_turns_plugin_off_without_repeating_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        settings = load(environ={**SECRETS, "PENDO_REDIS_URL": "http://user:hunter2@cache:6379"})
    assert not settings.active
    [record] = caplog.records
    assert "PENDO_REDIS_URL" in record.getMessage()
    assert "hunter2" not in record.getMessage()


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
