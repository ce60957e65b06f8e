"""Where each setting ``doctor`` shows came from: the environment, ``configure()`` in this process, or
the fleet's live flags in Redis (fleet mode); the rest are defaults.

The fleet flags are read and checked the way every process reads them (bounded, by the same script:
``fleet.flags.read_flags``), so doctor shows the settings a process of the fleet runs with. Redis not
answering leaves them out: the Redis check reports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pendo_plugin import config

ENVIRONMENT, CONFIGURE, FLEET, DEFAULT = "environment", "configure()", "fleet flags", "default"


def fleet_flags(redis_url: str | None) -> dict[str, str]:
    """The fleet's valid live flags in Redis (empty without fleet mode or when Redis does not answer)."""
    if not redis_url:
        return {}
    try:
        from pendo_plugin.cli.fleet_status import _client, _errors
        from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, READ_SCRIPT, read_flags, script_args

        client = _client(redis_url)
        reply = client.register_script(READ_SCRIPT)(keys=[FLAGS_KEY], args=script_args())
    except ImportError:
        return {}
    except _errors():
        return {}
    return read_flags(reply)[0]


def effective(flags: Mapping[str, str]) -> config.Settings:
    """The settings a process would run with: environment, then ``configure()``, then the fleet flags."""
    return config.load({**config._overrides, **flags})


def sources(flags: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """For every setting name, where its value comes from (the later source wins, like in a process)."""
    environ = os.environ if environ is None else environ
    found = {}
    for name, variable in config.ENV_NAMES.items():
        if name in flags:
            found[name] = FLEET
        elif name in config._overrides:
            found[name] = CONFIGURE
        elif variable in environ:
            found[name] = ENVIRONMENT
        else:
            found[name] = DEFAULT
    return found
