"""``pendo-plugin rollout show|set|clear``: the fleet's live flags (:mod:`pendo_plugin.delivery.fleet.flags`).

Every running process applies what ``set`` writes within 5 seconds, over its environment settings.
``clear`` removes the fleet's flags, so each process goes back to its own environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from pendo_plugin import config, shown
from pendo_plugin.cli._common import CommandError
from pendo_plugin.delivery.fleet.flags import (
    FLAG_FIELDS,
    FLAGS_KEY,
    READ_SCRIPT,
    check,
    read_flags,
    script_args,
)
from pendo_plugin.delivery.fleet.topology import connect_sync

EXIT_OK = 0


def _client() -> Any:
    raw = config.raw_from_env(os.environ).get("redis_url")
    if not raw:
        raise CommandError("fleet mode is off: set PENDO_REDIS_URL to the fleet's Redis")
    try:
        import redis
    except ImportError:
        raise CommandError("fleet mode needs: pip install 'segment-pendo-plugin[redis]'") from None
    settings = config.parse({"redis_url": raw})
    if settings.redis_url is None:
        raise CommandError(settings.redis_url_problem or "PENDO_REDIS_URL is not usable")
    try:
        return connect_sync(settings.redis_url, 5)[0]
    except (redis.RedisError, OSError) as exc:
        shown = config.redacted_url(raw)
        raise CommandError(f"could not reach Redis at {shown}: {type(exc).__name__}") from None


def _call(what: str, action: Any) -> Any:
    import redis

    try:
        return action()
    except (redis.RedisError, OSError) as exc:
        url = config.redacted_url(config.raw_from_env(os.environ).get("redis_url"))
        raise CommandError(f"could not {what} at {url}: {type(exc).__name__}") from None


def rollout_show(out: TextIO | None = None) -> int:
    """Print the fleet's flags; a flag not set in Redis comes from each process's environment."""
    out = out or sys.stdout
    client = _client()
    script = client.register_script(READ_SCRIPT)
    reply = _call("read the fleet flags", lambda: script(keys=[FLAGS_KEY], args=script_args()))
    flags, problems = read_flags(reply)
    for name in FLAG_FIELDS:
        value = shown.escape(flags[name]) if name in flags else "(not set: each process uses its environment)"
        print(f"{name:16} {value}", file=out)
    for problem in problems:
        print(f"ignored by every process: {shown.escape(problem)}", file=out)
    return EXIT_OK


def rollout_set(values: Mapping[str, str | None], out: TextIO | None = None) -> int:
    """Check and write the given flags (None: leave as is); they apply fleet-wide within 5 s."""
    chosen = {name: value for name, value in values.items() if value is not None}
    if not chosen:
        raise CommandError("nothing to set: give at least one of --enabled, --percent, --shadow, ...")
    for name, value in chosen.items():
        problem = check(name, value)
        if problem is not None:
            raise CommandError(problem)
    client = _client()
    _call("write the fleet flags", lambda: client.hset(FLAGS_KEY, mapping=chosen))
    print("fleet flags set: " + ", ".join(f"{k}={v}" for k, v in chosen.items()), file=out or sys.stdout)
    return EXIT_OK


def rollout_clear(out: TextIO | None = None) -> int:
    """Remove the fleet's flags: every process goes back to its own environment within 5 s."""
    client = _client()
    _call("remove the fleet flags", lambda: client.delete(FLAGS_KEY))
    print("fleet flags cleared", file=out or sys.stdout)
    return EXIT_OK
