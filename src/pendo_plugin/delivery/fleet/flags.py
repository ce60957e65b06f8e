"""Fleet-wide live flags: rollout settings kept in the fleet's Redis and applied by every process.

``pendo-plugin rollout set`` writes them to one hash; each process's worker reads it every
``POLL_INTERVAL`` seconds and applies the flags over its environment settings and ``configure()``
(so a kill switch set for the fleet wins), under the ``pendo_rollout`` hook exactly as the same
settings from the environment would be. What is read back is untrusted: only the known flag
names, bounded sizes, values checked by the same parser as the environment (an ``@file`` list is
refused: Redis must not make a process read its local files); a bad flag is logged, counted
(``fleet_flags:invalid``) and ignored, the others still apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.delivery.fleet.link import KEY_PREFIX, RedisLink, redis_errors
from pendo_plugin.logs import log, log_once
from pendo_plugin.pendo.rollout import ID_LIST_FIELDS

FLAGS_KEY = KEY_PREFIX + "flags"
FLAG_FIELDS: tuple[str, ...] = ("enabled", "rollout_percent", "shadow", "calls", *ID_LIST_FIELDS)
POLL_INTERVAL = 2.0  # with one Redis timeout (1 s) on top, a change applies within 5 s
MAX_VALUE_BYTES = 1 << 20
MAX_FIELDS = 64


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        if len(value) > MAX_VALUE_BYTES:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) and len(value) <= MAX_VALUE_BYTES else None


def check(name: str, value: str) -> str | None:
    """Why ``value`` is not usable for flag ``name``, or None when it is."""
    if name not in FLAG_FIELDS:
        return f"unknown flag {name[:40]!r}"
    if name in ID_LIST_FIELDS and value.strip().startswith("@"):
        return f"{name}: a list from a file is not accepted from Redis"
    try:
        config.parse({"track_secret": "check", name: value})
    except config.ConfigError as exc:
        return str(exc)
    return None


def validate(raw: Mapping[Any, Any]) -> tuple[dict[str, str], list[str]]:
    """The usable flags in a hash read from Redis, and a line per flag that was not."""
    flags: dict[str, str] = {}
    problems: list[str] = []
    for number, (key, value) in enumerate(raw.items()):
        if number >= MAX_FIELDS:
            problems.append(f"more than {MAX_FIELDS} fields; the rest ignored")
            break
        name, text = _text(key), _text(value)
        if name is None or text is None:
            problems.append("a field that is not short UTF-8 text")
            continue
        problem = check(name, text)
        if problem is None:
            flags[name] = text
        else:
            problems.append(problem)
    return flags, problems


class FlagPoller:
    """Reads the fleet's flags every ``POLL_INTERVAL`` seconds from the worker's loop."""

    def __init__(self) -> None:
        self._next = 0.0
        self.read_at: float | None = None  # when the flags were last read (monotonic), None: never

    def due(self) -> bool:
        return time.monotonic() >= self._next

    async def poll(self, link: RedisLink) -> None:
        """Read and apply the flags once; Redis not answering keeps the flags last applied."""
        self._next = time.monotonic() + POLL_INTERVAL
        try:
            raw = await link.client().hgetall(FLAGS_KEY)
            counters.record("redis", "round_trips")
        except redis_errors() as exc:
            link.failed(exc)
            return
        self.read_at = time.monotonic()
        flags, problems = validate(raw if isinstance(raw, dict) else {})
        for problem in problems:
            counters.record("fleet_flags", "invalid")
            log_once(
                f"fleet-flag:{problem}",
                logging.ERROR,
                "pendo_plugin: ignored a fleet flag in Redis: %s",
                problem,
            )
        if config.apply_fleet_flags(flags):
            counters.record("fleet_flags", "applied")
            log.warning(
                "pendo_plugin: fleet flags from Redis applied: %s",
                ", ".join(f"{name}={value[:40]}" for name, value in sorted(flags.items())) or "none",
            )
