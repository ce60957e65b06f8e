"""The values of ``PENDO_*`` settings: the variables' names, and one strict parser per kind of value.

Each parser takes the raw value (a string from the environment, or a Python value given to
``configure()``) and returns it checked, or raises :class:`ConfigError` naming the variable.
:mod:`pendo_plugin.config` builds the ``Settings`` from them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pendo_plugin.pendo.property_rules import PropertyRules
from pendo_plugin.pendo.rollout import CALLS, ID_LIST_FIELDS, RolloutRules
from pendo_plugin.shown import url

# region -> (track/API host, webhook host)
REGIONS: dict[str, tuple[str, str]] = {
    "us": ("https://app.pendo.io", "https://data.pendo.io"),
    "eu": ("https://app.eu.pendo.io", "https://data.eu.pendo.io"),
    "us1": ("https://us1.app.pendo.io", "https://us1.data.pendo.io"),
    "jpn": ("https://app.jpn.pendo.io", "https://data.jpn.pendo.io"),
    "au": ("https://app.au.pendo.io", "https://data.au.pendo.io"),
}

SECRET_FIELDS = ("track_secret", "integration_key", "api_key")

# the worker thread's event loop: uvloop's where it is installed (a dependency on CPython outside Windows),
# or asyncio's own selector loop
EVENT_LOOPS = frozenset({"uvloop", "asyncio"})

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
    "event_loop": "PENDO_EVENT_LOOP",
    "consent_categories": "PENDO_CONSENT_CATEGORIES",
    "deny_properties": "PENDO_DENY_PROPERTIES",
    "allow_properties": "PENDO_ALLOW_PROPERTIES",
    "hash_properties": "PENDO_HASH_PROPERTIES",
    "hash_key": "PENDO_HASH_KEY",
    "redis_replicas": "PENDO_REDIS_REPLICAS",
    "ca_bundle": "PENDO_CA_BUNDLE",
}

OBJECT_SETTINGS = frozenset({"on_error", "transport"})


class ConfigError(ValueError):
    """A setting has a value the plugin cannot use; the message names the variable."""


REDIS_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
MAX_SENTINELS = 16


def as_redis_url(raw: Any) -> str | None:
    """``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://``; the value is not repeated in
    errors (a password)."""
    text = as_text(raw)
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme in SENTINEL_SCHEMES:
        sentinel_parts(text)
        return text
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            "PENDO_REDIS_URL is not a redis://, rediss://, unix:// or redis+sentinel:// URL"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError("PENDO_REDIS_URL has no host")
    return text


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>/<db>``: the Sentinels, the
    service (master) name and the database number."""
    parts = urlsplit(url)
    hosts_text = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for item in hosts_text.split(",")[: MAX_SENTINELS + 1]:
        host, colon, port = item.strip().rpartition(":")
        if not colon or port.endswith("]"):  # no port: "host", "[::1]"
            host, port = item.strip(), "26379"
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("PENDO_REDIS_URL: a Sentinel address is not host:port")
        sentinels.append((host, int(port)))
    if len(sentinels) > MAX_SENTINELS:
        raise ConfigError(f"PENDO_REDIS_URL lists more than {MAX_SENTINELS} Sentinels")
    path = [piece for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError("PENDO_REDIS_URL: a Sentinel URL ends in /<service name>/<database number>")
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0


def as_rate_limit(raw: Any) -> float | None:
    text = as_text(raw).lower()
    if text in ("", "off", "none", "0"):
        return None
    return as_number("rate_limit", text, 0.1, 100_000)


def as_text(raw: Any) -> str:
    return str(raw).strip()


def as_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = as_text(raw).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a boolean (use true or false)")


def as_number(name: str, raw: Any, low: float, high: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def as_integer(name: str, raw: Any, low: int, high: int) -> int:
    value = as_number(name, raw, low, high)
    if value != int(value):
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not a whole number")
    return int(value)


def as_choice(name: str, raw: Any, choices: Mapping[str, Any] | frozenset[str]) -> str:
    value = as_text(raw).lower()
    if value not in choices:
        raise ConfigError(f"{ENV_NAMES[name]}={raw!r} is not one of {', '.join(sorted(choices))}")
    return value


def as_id_list(name: str, raw: Any) -> frozenset[str]:
    """A comma-separated list, or ``@/path/file`` with one entry per line (``#`` starts a comment)."""
    try:
        return read_list(raw)
    except OSError as exc:
        raise ConfigError(f"{ENV_NAMES[name]}: cannot read {as_text(raw)[1:]!r}: {exc.strerror}") from None


_COMMENT = re.compile(r"(?:^|\s)#")  # a comment starts a line or follows a space: ids may hold "#"


def read_list(raw: Any) -> frozenset[str]:
    """The entries of a list value (``a,b``, ``@file`` or a Python collection); raises OSError for a file
    that cannot be read. The one parser of lists, for settings and the command line alike."""
    if isinstance(raw, (set, frozenset, list, tuple)):
        return frozenset(str(item) for item in raw)
    text = as_text(raw)
    if text.startswith("@"):
        lines = Path(text[1:]).expanduser().read_text(encoding="utf-8").splitlines()
        items = (_COMMENT.split(line, 1)[0].strip() for line in lines)
    else:
        items = (part.strip() for part in text.split(","))
    return frozenset(item for item in items if item)


def as_calls(raw: Any) -> frozenset[str]:
    calls = as_id_list("calls", raw)
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
    """A URL for an error message, quoted, as :func:`pendo_plugin.shown.url` shows it."""
    return f"'{url(as_text(raw))}'"


def as_url(name: str, raw: Any) -> str:
    """A scheme and host (and port) only: no userinfo, path, query or fragment, which would change where
    requests go or put text from the variable into every request."""
    text = as_text(raw).rstrip("/")
    if any(ord(char) < 0x20 or char == "\x7f" for char in text):  # urlsplit would drop CR/LF/tab silently
        raise ConfigError(f"{ENV_NAMES[name]}: the URL has a control character (CR, LF or tab)")
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


def as_spool_dir(raw: Any) -> Path | None:
    text = as_text(raw)
    if text.lower() in ("", "off", "none", "0", "false"):
        return None
    return Path(text).expanduser()


def rollout_rules(raw: Mapping[str, Any]) -> RolloutRules:
    percent = as_number("rollout_percent", raw.get("rollout_percent", 100), 0, 100)
    if round(percent * 100) != round(percent * 100, 6):
        raise ConfigError(f"PENDO_ROLLOUT_PERCENT={raw['rollout_percent']!r} has steps finer than 0.01")
    lists = {name: as_id_list(name, raw[name]) if name in raw else frozenset() for name in ID_LIST_FIELDS}
    return RolloutRules(
        enabled=as_bool("enabled", raw["enabled"]) if "enabled" in raw else True,
        percent=percent,
        unit=as_choice("rollout_unit", raw.get("rollout_unit", "visitor"), frozenset({"visitor", "account"})),  # type: ignore[arg-type]
        salt=as_text(raw.get("rollout_salt", "pendo-rollout-v1")) or "pendo-rollout-v1",
        calls=as_calls(raw["calls"]) if "calls" in raw else CALLS,
        **lists,
    )


def property_rules(raw: Mapping[str, Any]) -> PropertyRules:
    """``PENDO_DENY_PROPERTIES``, ``PENDO_ALLOW_PROPERTIES``, ``PENDO_HASH_PROPERTIES`` (lists as above)
    and ``PENDO_HASH_KEY``."""
    lists = {
        rule: as_id_list(f"{rule}_properties", raw[f"{rule}_properties"])
        if f"{rule}_properties" in raw else frozenset()
        for rule in ("deny", "allow", "hash")
    }
    for rule, paths in lists.items():
        bad = sorted(path for path in paths if "" in path.split("."))
        if bad:
            raise ConfigError(f"{ENV_NAMES[rule + '_properties']} has an empty name in {bad[0]!r}")
    key = as_hash_key(raw.get("hash_key"))
    return PropertyRules(deny=lists["deny"], allow=lists["allow"], hash=lists["hash"], hash_key=key or None)


def as_consent_categories(raw: Any) -> frozenset[str]:
    """``PENDO_CONSENT_CATEGORIES``; a value that is set but names no category (an empty ``@file``, ``,``) is
    refused rather than read as "consent not enforced": a privacy control must not fail open."""
    categories = as_id_list("consent_categories", raw)
    if not categories and isinstance(raw, str) and raw.strip():
        raise ConfigError(f"PENDO_CONSENT_CATEGORIES={raw.strip()!r} names no category; unset it to enforce "
                          "no consent")
    return categories


def as_hash_key(raw: Any) -> bytes:
    """``PENDO_HASH_KEY``: bytes are the key itself, text its UTF-8, ``@/path`` the file's bytes (a mounted
    secret; the trailing newline dropped). Never the text ``@/path`` itself: a key anyone can read is none."""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    text = as_text(raw) if raw is not None else ""
    if not text.startswith("@"):
        return text.encode()
    try:
        return Path(text[1:]).expanduser().read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"PENDO_HASH_KEY: cannot read {text[1:]!r}: {exc.strerror}") from None
