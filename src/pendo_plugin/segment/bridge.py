"""Patches the ``Client`` of each Segment-compatible SDK (:mod:`pendo_plugin.segment.sdks`) so its send path
calls the ``segment_analytics`` hooks.

``__init__`` calls ``segment_startup`` for a client that sends (``send=True``); ``_enqueue`` hands
each message the SDK accepted to ``segment_message``, in the Segment shape the SDK's adapter gives it
(not when ``send=False`` nor when the SDK's own queue refused it); ``flush`` calls ``segment_flush``;
``join`` (and so ``shutdown`` and the SDK's atexit handler) calls ``segment_shutdown``. The SDK's own
behaviour, return values and exceptions are unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import threading
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.logs import log_once
from pendo_plugin.segment import plugins
from pendo_plugin.segment.plugins import register_plugin, unregister_plugin
from pendo_plugin.segment.sdks import PATCHED, enqueue_answer, sdk_of

__all__ = ["PATCHED", "patch_client_class", "register_plugin", "shutdown_all", "unregister_plugin"]

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


def _unexpected_answer(sdk: str) -> None:
    counters.record("skipped", "sdk_answer")
    log_once(
        f"sdk_answer:{sdk}",
        logging.ERROR,
        "%s Client._enqueue answered something other than (accepted, message); not written to Pendo "
        "(logged once; see stats())",
        sdk,
    )


def patch_client_class(cls: type) -> bool:
    """Wrap a supported SDK client's send path once; calling it again does nothing.

    True when ``cls`` is patched (now or earlier); False, and left alone, when it is not the ``Client``
    of a supported SDK's client module or lacks that SDK's methods.
    """
    if getattr(cls, PATCHED, False):
        return True
    sdk = sdk_of(cls)
    if sdk is None:
        return False
    to_segment = sdk.to_segment
    original_init = cls.__init__  # type: ignore[misc]
    original_enqueue = cls._enqueue  # type: ignore[attr-defined]
    original_flush = cls.flush  # type: ignore[attr-defined]
    original_join = cls.join  # type: ignore[attr-defined]

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if getattr(self, "send", False):
            plugins.call_all("segment_startup", client=self)

    @functools.wraps(original_enqueue)
    def _enqueue(self: Any, msg: Any) -> Any:
        result = original_enqueue(self, msg)
        if self.send:
            answer = enqueue_answer(result)
            if answer is None:
                _unexpected_answer(sdk.distribution)
            elif answer[0]:
                plugins.call_all("segment_message", client=self, message=to_segment(answer[1]))
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

    cls.__init__ = __init__  # type: ignore[misc]
    cls._enqueue = _enqueue  # type: ignore[attr-defined]
    cls.flush = flush  # type: ignore[attr-defined]
    cls.join = join  # type: ignore[attr-defined]
    setattr(cls, PATCHED, True)
    plugins.manager()
    _register_exit_hook()
    return True

