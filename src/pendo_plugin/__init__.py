"""Dual-write Segment ``identify``, ``group`` and ``track`` calls to Pendo.

This module is imported by the ``.pth`` bootstrap in every Python process of the environment,
so it imports nothing itself: the public names below are loaded on first use.

PYTEST_DONT_REWRITE (the bootstrap imports this package before pytest could rewrite it)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "configure", "flush", "hookimpl", "install", "stats"]

_LAZY = {
    "install": "pendo_plugin._autoload",
    "configure": "pendo_plugin.config",
    "stats": "pendo_plugin.api",
    "flush": "pendo_plugin.api",
    "hookimpl": "pendo_plugin.segment.hookspecs",
}

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms in every interpreter)
if TYPE_CHECKING:
    from pendo_plugin._autoload import install
    from pendo_plugin.api import flush, stats
    from pendo_plugin.config import configure
    from pendo_plugin.segment.hookspecs import hookimpl


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pendo_plugin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
