"""Settings from ``PENDO_*`` environment variables, overridable at run time by :func:`configure`.

Parsing is strict (one parser per kind of value, :mod:`pendo_plugin.config_values`): a bad value
is reported with one log line naming the variable and turns the plugin off; it never raises into
the app. The current settings are an immutable value replaced
atomically, so the worker reads a consistent snapshot per message without locks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pendo_plugin import _fork
from pendo_plugin.config_values import CALLS as CALLS
from pendo_plugin.config_values import (
    ENV_NAMES,
    EVENT_LOOPS,
    OBJECT_SETTINGS,
    REGIONS,
    SECRET_FIELDS,
    ConfigError,
    as_bool,
    as_choice,
    as_consent_categories,
    as_integer,
    as_number,
    as_rate_limit,
    as_redis_url,
    as_spool_dir,
    as_text,
    as_url,
    property_rules,
    rollout_rules,
)
from pendo_plugin.config_values import default_spool_dir as default_spool_dir
from pendo_plugin.config_values import is_loopback as is_loopback
from pendo_plugin.logs import forget, log, log_once
from pendo_plugin.pendo.property_rules import PropertyRules
from pendo_plugin.pendo.rollout import ID_LIST_FIELDS, RolloutRules
from pendo_plugin.shown import url as _shown_url


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
    event_loop: str = "uvloop"
    consent_categories: frozenset[str] = frozenset()
    properties: PropertyRules = field(default_factory=PropertyRules)  # deny/allow/hash rules and the key
    on_error: Callable[[Exception, list[Any]], None] | None = field(default=None, repr=False)
    transport: Any = field(default=None, repr=False)
    ca_bundle: str | None = None  # a PEM file of CAs trusted besides the system's
    problems: tuple[str, ...] = ()
    redis_replicas: int = 0
    redis_url_problem: str | None = None  # PENDO_REDIS_URL unusable: fleet mode off, delivery goes on

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
        when it may. The one check for live, replayed and drained payloads alike; worked out once per
        settings object (they are frozen), as it is asked for every payload twice (routed, then sent)."""
        reasons = self._hold_reasons
        return reasons[payload_kind] if payload_kind in reasons else self._hold(payload_kind)

    @functools.cached_property
    def _hold_reasons(self) -> dict[str, str | None]:
        return {kind: self._hold(kind) for kind in ("track", "webhook", "meta")}

    def _hold(self, payload_kind: str) -> str | None:
        if not self.rollout.enabled or self.problems:
            return "off"
        if not self.can_send(payload_kind):
            return "no_secret"
        if self.shadow:
            return "shadow"
        return None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret configured (the track secret, integration key, API key, Redis password): what no
        log line or report may show (:func:`pendo_plugin.shown.excerpt` masks them)."""
        found = [getattr(self, name) for name in SECRET_FIELDS]
        if self.redis_url:
            with contextlib.suppress(ValueError):
                found.append(urlsplit(self.redis_url).password)
        return tuple(secret for secret in found if secret)

    def describe(self) -> dict[str, Any]:
        """Every setting as printable values, secrets masked."""
        shown: dict[str, Any] = {}
        for name in ENV_NAMES:
            if name in SECRET_FIELDS:
                shown[name] = mask(getattr(self, name))
            elif name in ("deny_properties", "allow_properties", "hash_properties", "consent_categories"):
                values = self.consent_categories if name == "consent_categories" else getattr(
                    self.properties, name.split("_", 1)[0])
                shown[name] = ",".join(sorted(values)) or None
            elif name == "hash_key":
                key = self.properties.hash_key  # bytes, not always UTF-8 (configure(hash_key=b"..."))
                shown[name] = mask(key.decode("utf-8", "replace") if key else None)
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


redacted_url = _shown_url
"""The one way a URL is shown (:func:`pendo_plugin.shown.url`), under the name callers here know."""


def parse(raw: Mapping[str, Any]) -> Settings:
    """Build settings from raw values keyed by setting name; raises :class:`ConfigError`."""
    secrets = {
        name: (as_text(raw[name]) or None) if raw.get(name) is not None else None for name in SECRET_FIELDS
    }
    mode = as_choice("mode", raw.get("mode", "api"), frozenset({"api", "webhook"}))
    region = as_choice("region", raw.get("region", "us"), REGIONS)
    app_host, webhook_host = REGIONS[region]
    data_url = as_url("data_url", raw["data_url"]) if raw.get("data_url") else None
    has_secret = (
        bool(secrets["api_key"])
        if mode == "webhook"
        else bool(secrets["track_secret"] or secrets["integration_key"])
    )
    rollout = rollout_rules(raw)
    age = as_number("max_event_age_days", raw.get("max_event_age_days", 7), 0, 36500)
    redis_url, redis_url_problem = _fleet_url(raw.get("redis_url"))
    return Settings(
        track_secret=secrets["track_secret"],
        integration_key=secrets["integration_key"],
        api_key=secrets["api_key"],
        mode=mode,
        region=region,
        data_url=data_url or app_host,
        webhook_url=data_url or webhook_host,
        api_url=as_url("api_url", raw["api_url"]) if raw.get("api_url") else app_host,
        active=rollout.enabled and has_secret,
        shadow=as_bool("shadow", raw.get("shadow", False)),
        rollout=rollout,
        spool_dir=as_spool_dir(raw["spool_dir"]) if "spool_dir" in raw else default_spool_dir(),
        spool_max_mb=as_number("spool_max_mb", raw.get("spool_max_mb", 256), 1, 1_000_000),
        queue_size=as_integer("queue_size", raw.get("queue_size", 10_000), 1, 10_000_000),
        max_concurrency=as_integer("max_concurrency", raw.get("max_concurrency", 256), 1, 1000),
        metadata_batch_size=as_integer("metadata_batch_size", raw.get("metadata_batch_size", 250), 1, 5000),
        batch_interval=as_number("batch_interval", raw.get("batch_interval", 1.0), 0.01, 3600),
        request_timeout=as_number("request_timeout", raw.get("request_timeout", 10), 0.1, 300),
        max_retries=as_integer("max_retries", raw.get("max_retries", 8), 0, 100),
        retry_budget=as_number("retry_budget", raw.get("retry_budget", 300), 0, 86400),
        flush_timeout=as_number("flush_timeout", raw.get("flush_timeout", 30), 0, 3600),
        shutdown_timeout=as_number("shutdown_timeout", raw.get("shutdown_timeout", 5), 0, 3600),
        max_event_age_days=age or None,
        schema_check=as_bool("schema_check", raw.get("schema_check", True)),
        schema_ttl=as_number("schema_ttl", raw.get("schema_ttl", 600), 1, 86400 * 7),
        redis_url=redis_url,
        rate_limit=as_rate_limit(raw["rate_limit"]) if raw.get("rate_limit") is not None else None,
        redis_claim_after=as_number("redis_claim_after", raw.get("redis_claim_after", 60), 0.1, 86400),
        redis_max_len=as_integer("redis_max_len", raw.get("redis_max_len", 1_000_000), 100, 1_000_000_000),
        event_loop=as_choice("event_loop", raw.get("event_loop", "uvloop"), EVENT_LOOPS),
        consent_categories=as_consent_categories(raw.get("consent_categories", "")),
        properties=property_rules(raw),
        on_error=raw.get("on_error"),
        transport=raw.get("transport"),
        redis_replicas=as_integer("redis_replicas", raw.get("redis_replicas", 0), 0, 16),
        redis_url_problem=redis_url_problem,
        ca_bundle=as_text(raw["ca_bundle"]) or None if raw.get("ca_bundle") else None,
    )


def _fleet_url(raw: Any) -> tuple[str | None, str | None]:
    """PENDO_REDIS_URL, or why it is unusable: a bad URL turns fleet mode off, not the plugin."""
    try:
        return (as_redis_url(raw) if raw else None), None
    except ConfigError as exc:
        return None, str(exc)


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
        return Settings(active=False, problems=every_problem(raw, exc), on_error=raw.get("on_error"))
    _warn_missing_secrets(settings)
    if settings.redis_url_problem and settings.active:
        log_once(
            f"fleet-url:{settings.redis_url_problem}",
            logging.ERROR,
            "pendo_plugin: fleet mode is off (%s); each process delivers alone, through its local "
            "routes and local spool",
            settings.redis_url_problem,
        )
    return settings


def every_problem(raw: Mapping[str, Any], first: ConfigError) -> tuple[str, ...]:
    """``first`` (what :func:`parse` stopped at), then every other setting unusable on its own: doctor
    names them all at once instead of one per run."""
    problems = [str(first)]
    for name, value in raw.items():
        try:
            parse({name: value})
        except ConfigError as exc:
            problems.append(str(exc))
    return tuple(dict.fromkeys(problems))


def missing_secret(settings: Settings) -> str | None:
    """The variable(s) whose absence keeps the plugin from sending anything, or None."""
    if settings.problems or settings.send_track or settings.send_metadata:
        return None
    if settings.mode == "webhook":
        return "PENDO_API_KEY (PENDO_MODE=webhook)"
    return "PENDO_TRACK_SECRET and PENDO_INTEGRATION_KEY"


def warn_no_secret(settings: Settings) -> None:
    """One warning per process naming the secret(s) whose absence keeps the plugin off (the kill switch
    set on purpose, or bad settings, are not that)."""
    missing = missing_secret(settings)
    if missing is not None and settings.rollout.enabled:
        log_once(
            "no-secret",
            logging.WARNING,
            "pendo_plugin is off: %s not set, so nothing is sent to Pendo "
            "(each message is counted as skipped:no_secret:<call>)",
            missing + (" are" if " and " in missing else " is"),
        )


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
