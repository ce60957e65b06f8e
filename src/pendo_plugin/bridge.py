"""Patches ``segment.analytics.client.Client`` so its send path calls the ``segment_analytics`` hooks.

``_enqueue`` hands each message the SDK accepted to ``segment_message`` (not when ``send=False``
nor when the SDK's own queue refused it); ``flush`` calls ``segment_flush``; ``join`` (and so
``shutdown`` and the SDK's atexit handler) calls ``segment_shutdown``. The SDK's own behaviour,
return values and exceptions are unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
from typing import Any

from pendo_plugin import config, plugins
from pendo_plugin.plugins import register_plugin, unregister_plugin

__all__ = ["install", "patch_client_class", "register_plugin", "shutdown_all", "unregister_plugin"]

PATCHED = "_pendo_plugin_patched"
_atexit_lock = threading.Lock()
_atexit_registered = False


def shutdown_all(client: Any = None) -> None:
    """Run every plugin's ``segment_shutdown`` with the configured bound (also at interpreter exit)."""
    with contextlib.suppress(Exception):
        plugins.call_all("segment_shutdown", client=client, timeout=config.current().shutdown_timeout)


def _register_exit_hook() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(shutdown_all)
            _atexit_registered = True


def patch_client_class(cls: type) -> None:
    """Wrap the SDK client's send path once; calling it again does nothing."""
    if getattr(cls, PATCHED, False):
        return
    original_enqueue = cls._enqueue  # type: ignore[attr-defined]
    original_flush = cls.flush  # type: ignore[attr-defined]
    original_join = cls.join  # type: ignore[attr-defined]

    @functools.wraps(original_enqueue)
    def _enqueue(self: Any, msg: Any) -> Any:
        result = original_enqueue(self, msg)
        if self.send and result[0]:
            plugins.call_all("segment_message", client=self, message=result[1])
        return result

    @functools.wraps(original_flush)
    def flush(self: Any) -> None:
        original_flush(self)
        with contextlib.suppress(Exception):
            plugins.call_all("segment_flush", client=self, timeout=config.current().flush_timeout)

    @functools.wraps(original_join)
    def join(self: Any) -> None:
        try:
            original_join(self)
        finally:
            shutdown_all(self)

    cls._enqueue = _enqueue  # type: ignore[attr-defined]
    cls.flush = flush  # type: ignore[attr-defined]
    cls.join = join  # type: ignore[attr-defined]
    setattr(cls, PATCHED, True)
    plugins.manager()
    _register_exit_hook()


def install() -> None:
    """Activate the plugin system explicitly (the ``.pth`` bootstrap does the same on import)."""
    from segment.analytics.client import Client

    patch_client_class(Client)
