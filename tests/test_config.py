"""Settings from the environment: defaults, regions, validation, runtime changes, secrets out of sight."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pendo_plugin import config
from pendo_plugin.config import load

SECRETS = {"PENDO_TRACK_SECRET": "track-secret-value-1", "PENDO_INTEGRATION_KEY": "integration-key-value-2"}


def test_defaults_with_secrets() -> None:
    settings = load(environ=SECRETS)

    assert settings.active
    assert settings.mode == "api"
    assert (settings.data_url, settings.api_url) == ("https://app.pendo.io", "https://app.pendo.io")
    assert settings.rollout.percent == 100
    assert settings.send_track and settings.send_metadata


def test_no_secret_means_inactive_without_complaint(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        settings = load(environ={})
    assert not settings.active
    assert caplog.records == []


@pytest.mark.parametrize(
    ("region", "data", "api"),
    [
        ("eu", "https://app.eu.pendo.io", "https://app.eu.pendo.io"),
        ("us1", "https://us1.app.pendo.io", "https://us1.app.pendo.io"),
        ("jpn", "https://app.jpn.pendo.io", "https://app.jpn.pendo.io"),
        ("au", "https://app.au.pendo.io", "https://app.au.pendo.io"),
    ],
)
def test_regions(region: str, data: str, api: str) -> None:
    settings = load(environ={**SECRETS, "PENDO_REGION": region.upper()})
    assert (settings.data_url, settings.api_url) == (data, api)


def test_webhook_mode_uses_the_data_host_and_api_key() -> None:
    settings = load(environ={"PENDO_MODE": "webhook", "PENDO_API_KEY": "public-key", "PENDO_REGION": "eu"})
    assert settings.active and settings.send_track and settings.send_metadata
    assert settings.webhook_url == "https://data.eu.pendo.io"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PENDO_REGION", "mars", "PENDO_REGION"),
        ("PENDO_ROLLOUT_PERCENT", "140", "PENDO_ROLLOUT_PERCENT"),
        ("PENDO_ROLLOUT_PERCENT", "12.345", "PENDO_ROLLOUT_PERCENT"),
        ("PENDO_DATA_URL", "http://pendo.example.com", "PENDO_DATA_URL"),
        ("PENDO_API_URL", "ftp://127.0.0.1", "PENDO_API_URL"),
        ("PENDO_MODE", "carrier-pigeon", "PENDO_MODE"),
        ("PENDO_EVENT_LOOP", "trio", "PENDO_EVENT_LOOP"),
        ("PENDO_SHADOW", "maybe", "PENDO_SHADOW"),
        ("PENDO_CALLS", "track,page", "PENDO_CALLS"),
        ("PENDO_QUEUE_SIZE", "lots", "PENDO_QUEUE_SIZE"),
        ("PENDO_ALLOW_VISITORS", "@/nonexistent/list.txt", "PENDO_ALLOW_VISITORS"),
    ],
)
def test_bad_value_turns_plugin_off_with_one_line_naming_the_variable(
    caplog: pytest.LogCaptureFixture, variable: str, value: str, named: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        settings = load(environ={**SECRETS, variable: value})

    assert not settings.active
    [record] = caplog.records
    assert named in record.getMessage()
    for secret in SECRETS.values():
        assert secret not in record.getMessage()


def test_http_allowed_for_loopback_only() -> None:
    assert (
        load(environ={**SECRETS, "PENDO_DATA_URL": "http://127.0.0.1:8080/"}).data_url
        == "http://127.0.0.1:8080"
    )
    assert load(environ={**SECRETS, "PENDO_API_URL": "http://localhost:9"}).api_url == "http://localhost:9"
    assert load(environ={**SECRETS, "PENDO_API_URL": "http://[::1]:9"}).active
    assert not load(environ={**SECRETS, "PENDO_API_URL": "http://10.0.0.1:9"}).active


def test_lists_from_a_file(tmp_path: Path) -> None:
    listing = tmp_path / "deny.txt"
    listing.write_text("u1\n# a comment\n u2 # trailing\n\n")
    settings = load(environ={**SECRETS, "PENDO_DENY_VISITORS": f"@{listing}", "PENDO_ALLOW_EVENTS": "a, b"})

    assert settings.rollout.deny_visitors == frozenset({"u1", "u2"})
    assert settings.rollout.allow_events == frozenset({"a", "b"})


def test_secrets_never_in_repr_or_describe() -> None:
    settings = load(environ=SECRETS)
    shown = repr(settings) + repr(settings.describe())
    for secret in SECRETS.values():
        assert secret not in shown
    assert settings.describe()["track_secret"].startswith("****")


def test_kill_switch_overrides_secrets() -> None:
    assert not load(environ={**SECRETS, "PENDO_ENABLED": "false"}).active


def test_configure_changes_take_effect_and_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    try:
        assert config.configure(reset=True).rollout.percent == 100
        assert config.configure(rollout_percent=12.5).rollout.percent == 12.5
        assert config.current().rollout.percent == 12.5
        assert config.configure(shadow=True).shadow is True
        assert config.current().rollout.percent == 12.5  # overrides accumulate
        assert config.configure(reset=True).rollout.percent == 100
    finally:
        monkeypatch.delenv("PENDO_TRACK_SECRET")
        monkeypatch.delenv("PENDO_INTEGRATION_KEY")
        config.configure(reset=True)


def test_configure_rejects_unknown_names() -> None:
    with pytest.raises(TypeError, match="rollout_pct"):
        config.configure(rollout_pct=5)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080#frag",
        "http://127.0.0.1:8080/#frag",
        "https://user:s3cr3t-pw@app.pendo.io",
        "https://app.pendo.io?x=1",
        "https://app.pendo.io/data",
        "https://app.pendo.io//x",
        "https://app.pendo.io:99999",
    ],
)
def test_urls_are_scheme_host_and_port_only(caplog: pytest.LogCaptureFixture, url: str) -> None:
    """Security (issue: URL parts): a fragment, userinfo, query or path would change where requests go."""
    for variable in ("PENDO_DATA_URL", "PENDO_API_URL"):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
            settings = load(environ={**SECRETS, variable: url})
        assert not settings.active
        [record] = caplog.records
        assert variable in record.getMessage()
        assert "s3cr3t-pw" not in record.getMessage()
    assert load(environ={**SECRETS, "PENDO_DATA_URL": "https://app.pendo.io/"}).data_url == "https://app.pendo.io"
