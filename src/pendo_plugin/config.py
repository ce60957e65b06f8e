"""Settings from ``PENDO_*`` environment variables, overridable at run time by :func:`configure`.

Parsing is strict: a bad value is reported with one log line naming the variable and turns the
plugin off; it never raises into the app. The current settings are an immutable value replaced
atomically, so the worker reads a consistent snapshot per message without locks.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pendo_plugin import _fork
from pendo_plugin.logs import forget, log, log_once
from pendo_plugin.pendo.rollout import CALLS, ID_LIST_FIELDS, RolloutRules

# region -> (track/API host, webhook host)
REGIONS: dict[str, tuple[str, str]] = {
    "us": ("https://app.pendo.io", "https://data.pendo.io"),
    "eu": ("https://app.eu.pendo.io", "https://data.eu.pendo.io"),
    "us1": ("https://us1.app.pendo.io", "https://us1.data.pendo.io"),
    "jpn": ("https://app.jpn.pendo.io", "https://data.jpn.pendo.io"),
    "au": ("https://app.au.pendo.io", "https://data.au.pendo.io"),
}

SECRET_FIELDS = ("track_secret", "integration_key", "api_key")

# setting name -> environment variable; configure() takes the setting names.
ENV_NAMES: dict[str, str] = {
    "track_secret": "PENDO_TRACK_SECRET",
    "integration_key": "PENDO_INTEGRATION_KEY",
    "api_key": "PENDO_API_KEY",
    "mode": "PENDO_MODE",
    "region": "PENDO_REGION",
    "data_url": "PENDO_DATA_URL",
    "api_url": "PENDO_API_URL",
    "enabled": "PENDO_ENABLED",
    "rollout_percent": "PENDO_ROLLOUT_PERCENT",
    "rollout_unit": "PENDO_ROLLOUT_UNIT",
    "rollout_salt": "PENDO_ROLLOUT_SALT",
    "shadow": "PENDO_SHADOW",
    "calls": "PENDO_CALLS",
    "allow_visitors": "PENDO_ALLOW_VISITORS",
    "deny_visitors": "PENDO_DENY_VISITORS",
    "allow_accounts": "PENDO_ALLOW_ACCOUNTS",
    "deny_accounts": "PENDO_DENY_ACCOUNTS",
    "allow_events": "PENDO_ALLOW_EVENTS",
    "deny_events": "PENDO_DENY_EVENTS",
    "spool_dir": "PENDO_SPOOL_DIR",
    "spool_max_mb": "PENDO_SPOOL_MAX_MB",
    "queue_size": "PENDO_QUEUE_SIZE",
    "max_concurrency": "PENDO_MAX_CONCURRENCY",
    "metadata_batch_size": "PENDO_METADATA_BATCH_SIZE",
    "batch_interval": "PENDO_BATCH_INTERVAL",
    "request_timeout": "PENDO_TIMEOUT",
    "max_retries": "PENDO_MAX_RETRIES",
    "retry_budget": "PENDO_RETRY_BUDGET",
    "flush_timeout": "PENDO_FLUSH_TIMEOUT",
    "shutdown_timeout": "PENDO_SHUTDOWN_TIMEOUT",
    "max_event_age_days": "PENDO_MAX_EVENT_AGE_DAYS",
    "schema_check": "PENDO_SCHEMA_CHECK",
    "schema_ttl": "PENDO_SCHEMA_TTL",
    "redis_url": "PENDO_REDIS_URL",
    "rate_limit": "PENDO_RATE_LIMIT",
    "redis_claim_after": "PENDO_REDIS_CLAIM_AFTER",
    "redis_max_len": "PENDO_REDIS_MAX_LEN",
}

OBJECT_SETTINGS = frozenset({"on_error", "transport"})


class ConfigError(ValueError):
    """A setting has a value the plugin cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """One consistent snapshot of the plugin's configuration (secrets are kept out of ``repr``)."""

    track_secret: str | None = field(default=None, repr=False)
    integration_key: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    mode: str = "api"
    region: str = "us"
    data_url: str = REGIONS["us"][0]
    webhook_url: str = REGIONS["us"][1]
    api_url: str = REGIONS["us"][0]
    active: bool = False
    shadow: bool = False
    rollout: RolloutRules = field(default_factory=RolloutRules)
    spool_dir: Path | None = None
    spool_max_mb: float = 256.0
    queue_size: int = 10_000
    max_concurrency: int = 256
    metadata_batch_size: int = 250
    batch_interval: float = 1.0
    request_timeout: float = 10.0
    max_retries: int = 8
    retry_budget: float = 300.0
    flush_timeout: float = 30.0
    shutdown_timeout: float = 5.0
    max_event_age_days: float | None = 7.0
    schema_check: bool = True
    schema_ttl: float = 600.0
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    rate_limit: float | None = None
    redis_claim_after: float = 60.0
    redis_max_len: int = 1_000_000
    on_error: Callable[[Exception, list[Any]], None] | None = field(default=None, repr=False)
    transport: Any = field(default=None, repr=False)
    problems: tuple[str, ...] = ()

    @property
    def send_track(self) -> bool:
        """Whether track events can be written (a secret for them is configured)."""
        if self.mode == "webhook":
            return bool(self.api_key)
        return bool(self.track_secret)

    @property
    def send_metadata(self) -> bool:
        """Whether visitor/account metadata can be written."""
        if self.mode == "webhook":
            return bool(self.api_key)
        return bool(self.integration_key)

    def can_send(self, payload_kind: str) -> bool:
        """Whether a payload of this kind (``track``, ``webhook``, ``meta``) has its secret here."""
        if payload_kind == "track":
            return bool(self.track_secret)
        if payload_kind == "webhook":
            return bool(self.api_key)
        return bool(self.integration_key)

    def hold_reason(self, payload_kind: str) -> str | None:
        """Why a payload of this kind (``track``, ``webhook``, ``meta``) must not be sent from here now:
        ``off`` (kill switch, or bad settings), ``no_secret`` (no secret or key for it), ``shadow``; None
        when it may. The one check for live, replayed and drained payloads alike."""
        if not self.rollout.enabled or self.problems:
            return "off"
        if not self.can_send(payload_kind):
            return "no_secret"
        if self.shadow:
            return "shadow"
        return None

    def describe(self) -> dict[str, Any]:
        """Every setting as printable values, secrets masked."""
        shown: dict[str, Any] = {}
        for name in ENV_NAMES:
            if name in SECRET_FIELDS:
                shown[name] = mask(getattr(self, name))
            elif name == "redis_url":
                shown[name] = redacted_url(self.redis_url)
            elif name in (
                "enabled",
                "rollout_percent",
                "rollout_unit",
                "rollout_salt",
                "calls",
            ) or name.startswith(("allow_", "deny_")):
                continue
            else:
                shown[name] = getattr(self, name)
        shown["webhook_url"] = self.webhook_url
        shown["active"] = self.active
        rules = self.rollout
        shown.update(
            enabled=rules.enabled,
            rollout_percent=rules.percent,
            rollout_unit=rules.unit,
            calls=",".join(sorted(rules.calls)),
        )
        for name in ID_LIST_FIELDS:
            shown[name] = f"{len(getattr(rules, name))} entries"
        return shown


def mask(secret: str | None) -> str:
    """A secret shown as its length and last two characters, or ``(unset)``."""
    if not secret:
        return "(unset)"
    return f"****{secret[-2:]} ({len(secret)} chars)" if len(secret) >= 8 else "****"


def redacted_url(url: str | None) -> str | None:
    """``url`` with any password replaced by ``****`` (for logs and ``doctor``)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}****@{netloc}").geturl()


def _redis_url(raw: Any) -> str | None:
    """``redis://``, ``rediss://`` or ``unix://``; the value is not repeated in errors (a password)."""
    text = _text(raw)
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("PENDO_REDIS_URL is not a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError("PENDO_REDIS_URL has no host")
    return text


def _rate_limit(raw: Any) -> float | None:
    text = _text(raw).lower()
    if text in ("", "off", "none", "0"):
        return None
    return _number("rate_limit", text, 0.1, 100_000)


def _text(raw: Any) -> str:
    return str(raw).strip()


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = _text(raw).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a boolean (use true or false)")


def _number(name: str, raw: Any, low: float, high: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def _integer(name: str, raw: Any, low: int, high: int) -> int:
    value = _number(name, raw, low, high)
    if value != int(value):
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a whole number")
    return int(value)


def _choice(name: str, raw: Any, choices: Mapping[str, Any] | frozenset[str]) -> str:
    value = _text(raw).lower()
    if value not in choices:
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not one of {', '.join(sorted(choices))}")
    return value


def _id_list(name: str, raw: Any) -> frozenset[str]:
    """A comma-separated list, or ``@/path/file`` with one entry per line (``#`` starts a comment)."""
    if isinstance(raw, (set, frozenset, list, tuple)):
        return frozenset(str(item) for item in raw)
    text = _text(raw)
    if text.startswith("@"):
        try:
            lines = Path(text[1:]).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{ENV_NAMES[name]}: cannot read {text[1:]!r}: {exc.strerror}") from None
        items = (line.split("#", 1)[0].strip() for line in lines)
    else:
        items = (part.strip() for part in text.split(","))
    return frozenset(item for item in items if item)


def _calls(raw: Any) -> frozenset[str]:
    calls = _id_list("calls", raw)
    unknown = calls - CALLS
    if unknown:
        raise ConfigError(f"PENDO_CALLS has {', '.join(sorted(unknown))}; use any of identify,group,track")
    return calls


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(raw: Any) -> str:
    """A URL for an error message; one with ``@`` (maybe a password in it) is not shown."""
    return "(a URL with userinfo, not shown)" if "@" in str(raw) else repr(raw)


def _url(name: str, raw: Any) -> str:
    """A scheme and host (and port) only: no userinfo, path, query or fragment, which would change where
    requests go or put text from the variable into every request."""
    text = _text(raw).rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ConfigError(f"{ENV_NAMES[name]}={_shown(raw)} is not an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{ENV_NAMES[name]}={_shown(raw)} is not an http(s) URL")
    extra = [what for what, present in (
        ("a user or password", "@" in parts.netloc),
        ("a path", bool(parts.path)),
        ("a query", "?" in text),
        ("a fragment", "#" in text),
    ) if present]
    if extra:
        raise ConfigError(
            f"{ENV_NAMES[name]}: the URL has {' and '.join(extra)}; give only scheme, host and port "
            "(e.g. https://app.pendo.io)"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{ENV_NAMES[name]}={_shown(raw)}: http:// is allowed only for loopback hosts; use https://"
        )
    return text


def default_spool_dir() -> Path:
    """The per-user state directory: ``$XDG_STATE_HOME/pendo_plugin/spool`` (default ``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "pendo_plugin" / "spool"


def _spool_dir(raw: Any) -> Path | None:
    text = _text(raw)
    if text.lower() in ("", "off", "none", "0", "false"):
        return None
    return Path(text).expanduser()


def _rollout(raw: Mapping[str, Any], has_secret: bool) -> RolloutRules:
    percent = _number("rollout_percent", raw.get("rollout_percent", 100), 0, 100)
    if round(percent * 100) != round(percent * 100, 6):
        raise ConfigError(f"PENDO_ROLLOUT_PERCENT={raw['rollout_percent']!r} has steps finer than 0.01")
    lists = {name: _id_list(name, raw[name]) if name in raw else frozenset() for name in ID_LIST_FIELDS}
    return RolloutRules(
        enabled=_bool("enabled", raw["enabled"]) if "enabled" in raw else has_secret,
        percent=percent,
        unit=_choice("rollout_unit", raw.get("rollout_unit", "visitor"), frozenset({"visitor", "account"})),  # type: ignore[arg-type]
        salt=_text(raw.get("rollout_salt", "pendo-rollout-v1")) or "pendo-rollout-v1",
        calls=_calls(raw["calls"]) if "calls" in raw else CALLS,
        **lists,
    )


def parse(raw: Mapping[str, Any]) -> Settings:
    """Build settings from raw values keyed by setting name; raises :class:`ConfigError`."""
    secrets = {
        name: (_text(raw[name]) or None) if raw.get(name) is not None else None for name in SECRET_FIELDS
    }
    mode = _choice("mode", raw.get("mode", "api"), frozenset({"api", "webhook"}))
    region = _choice("region", raw.get("region", "us"), REGIONS)
    app_host, webhook_host = REGIONS[region]
    data_url = _url("data_url", raw["data_url"]) if raw.get("data_url") else None
    has_secret = (
        bool(secrets["api_key"])
        if mode == "webhook"
        else bool(secrets["track_secret"] or secrets["integration_key"])
    )
    rollout = _rollout(raw, has_secret)
    age = _number("max_event_age_days", raw.get("max_event_age_days", 7), 0, 36500)
    return Settings(
        track_secret=secrets["track_secret"],
        integration_key=secrets["integration_key"],
        api_key=secrets["api_key"],
        mode=mode,
        region=region,
        data_url=data_url or app_host,
        webhook_url=data_url or webhook_host,
        api_url=_url("api_url", raw["api_url"]) if raw.get("api_url") else app_host,
        active=rollout.enabled and has_secret,
        shadow=_bool("shadow", raw.get("shadow", False)),
        rollout=rollout,
        spool_dir=_spool_dir(raw["spool_dir"]) if "spool_dir" in raw else default_spool_dir(),
        spool_max_mb=_number("spool_max_mb", raw.get("spool_max_mb", 256), 1, 1_000_000),
        queue_size=_integer("queue_size", raw.get("queue_size", 10_000), 1, 10_000_000),
        max_concurrency=_integer("max_concurrency", raw.get("max_concurrency", 256), 1, 1000),
        metadata_batch_size=_integer("metadata_batch_size", raw.get("metadata_batch_size", 250), 1, 5000),
        batch_interval=_number("batch_interval", raw.get("batch_interval", 1.0), 0.01, 3600),
        request_timeout=_number("request_timeout", raw.get("request_timeout", 10), 0.1, 300),
        max_retries=_integer("max_retries", raw.get("max_retries", 8), 0, 100),
        retry_budget=_number("retry_budget", raw.get("retry_budget", 300), 0, 86400),
        flush_timeout=_number("flush_timeout", raw.get("flush_timeout", 30), 0, 3600),
        shutdown_timeout=_number("shutdown_timeout", raw.get("shutdown_timeout", 5), 0, 3600),
        max_event_age_days=age or None,
        schema_check=_bool("schema_check", raw.get("schema_check", True)),
        schema_ttl=_number("schema_ttl", raw.get("schema_ttl", 600), 1, 86400 * 7),
        redis_url=_redis_url(raw["redis_url"]) if raw.get("redis_url") else None,
        rate_limit=_rate_limit(raw["rate_limit"]) if raw.get("rate_limit") is not None else None,
        redis_claim_after=_number("redis_claim_after", raw.get("redis_claim_after", 60), 0.1, 86400),
        redis_max_len=_integer("redis_max_len", raw.get("redis_max_len", 1_000_000), 100, 1_000_000_000),
        on_error=raw.get("on_error"),
        transport=raw.get("transport"),
    )


def raw_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings present in ``environ``, keyed by setting name."""
    return {name: environ[var] for name, var in ENV_NAMES.items() if var in environ}


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment plus overrides; a bad value gives inactive settings and a log line."""
    raw = raw_from_env(os.environ if environ is None else environ)
    raw.update(overrides or {})
    try:
        settings = parse(raw)
    except ConfigError as exc:
        log.error("pendo_plugin is off: %s", exc)
        return Settings(active=False, problems=(str(exc),), on_error=raw.get("on_error"))
    _warn_missing_secrets(settings)
    return settings


def _warn_missing_secrets(settings: Settings) -> None:
    if not settings.active:
        return
    if not settings.send_track:
        log_once(
            "no-track-secret",
            logging.WARNING,
            "pendo_plugin: PENDO_TRACK_SECRET is not set; track events are off",
        )
    if not settings.send_metadata:
        log_once(
            "no-integration-key",
            logging.WARNING,
            "pendo_plugin: PENDO_INTEGRATION_KEY is not set; visitor and account metadata are off",
        )


_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A forked child gets a fresh lock: another thread of the parent may have held this one."""
    global _lock
    _lock = threading.Lock()


_fork.register(after_in_child=_new_lock_in_child)
_overrides: dict[str, Any] = {}
_fleet_flags: dict[str, str] = {}  # fleet mode: rollout flags from Redis, over env and configure()
_current: Settings | None = None


def current() -> Settings:
    """The settings in force now (loaded from the environment on first use)."""
    settings = _current
    if settings is None:
        with _lock:
            settings = _current if _current is not None else _reload()
    return settings


def _reload() -> Settings:
    global _current
    forget()
    _current = load({**_overrides, **_fleet_flags})
    return _current


def configure(**settings: Any) -> Settings:
    """Override settings at run time by name (e.g. ``rollout_percent=10``); takes effect for the next message.

    ``configure(reset=True)`` first drops every earlier override. Unknown names raise ``TypeError``
    (a programming error); bad values log one line and turn the plugin off.
    """
    reset = settings.pop("reset", False)
    unknown = set(settings) - set(ENV_NAMES) - OBJECT_SETTINGS
    if unknown:
        raise TypeError(f"configure() got unknown settings: {', '.join(sorted(unknown))}")
    with _lock:
        if reset:
            _overrides.clear()
            _fleet_flags.clear()
        _overrides.update(settings)
        return _reload()


def apply_fleet_flags(flags: Mapping[str, str]) -> bool:
    """Fleet mode: apply the rollout flags read from Redis (checked by the caller); True if they changed."""
    global _fleet_flags
    with _lock:
        if dict(flags) == _fleet_flags:
            return False
        _fleet_flags = dict(flags)
        _reload()
        return True
