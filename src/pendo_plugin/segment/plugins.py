"""The ``segment_analytics`` plugin manager: discovery from entry points and isolated hook calls.

pluggy's own hook call stops at the first exception; here every implementation is called on its
own, so one failing plugin is logged (once per plugin, hook and exception type), counted under
``plugin_error:<plugin>:<hook>`` and never stops the others nor reaches the app.

``SEGMENT_ANALYTICS_PLUGINS`` (comma-separated entry-point names) loads only those plugins; an
empty value loads none. ``SEGMENT_ANALYTICS_PLUGINS_DISABLED`` lists plugins never to load.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from pendo_plugin import _fork, counters, shown
from pendo_plugin.logs import log, log_once
from pendo_plugin.segment import hookspecs

ALLOW_ENV = "SEGMENT_ANALYTICS_PLUGINS"
DENY_ENV = "SEGMENT_ANALYTICS_PLUGINS_DISABLED"

# (plugin name, function, argument names) in pluggy's call order
Impl = tuple[str, Callable[..., Any], tuple[str, ...]]

_lock = threading.RLock()


def _new_lock_in_child() -> None:
    """A forked child gets a fresh lock: another thread of the parent may have held this one."""
    global _lock
    _lock = threading.RLock()


_fork.register(after_in_child=_new_lock_in_child)
_manager: pluggy.PluginManager | None = None
_impls: dict[str, tuple[Impl, ...]] = {}
_failed_to_load: frozenset[str] = frozenset()  # entry points whose import raised (their hooks are unknown)


def _names(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def _wanted(name: str) -> bool:
    allow = os.environ.get(ALLOW_ENV)
    if allow is not None and name not in _names(allow):
        return False
    return name not in _names(os.environ.get(DENY_ENV, ""))


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    global _failed_to_load
    for entry in entry_points(group=hookspecs.PROJECT):
        if not _wanted(entry.name) or manager.has_plugin(entry.name):
            continue
        try:
            manager.register(entry.load(), name=entry.name)
        except Exception as exc:
            _failed_to_load |= {entry.name}
            counters.record("plugin_error", "load")
            log.error(
                "segment_analytics plugin %r failed to load: %s: %s", entry.name, type(exc).__name__, exc
            )


def manager() -> pluggy.PluginManager:
    """The process's plugin manager, with every wanted entry-point plugin registered."""
    global _manager
    with _lock:
        if _manager is None:
            created = pluggy.PluginManager(hookspecs.PROJECT)
            created.add_hookspecs(hookspecs)
            _load_entry_points(created)
            _manager = created
        return _manager


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module by hand (in addition to entry points). A plugin already
    registered (the module its installed entry point loaded) stays registered once: its name is returned."""
    with _lock:
        plugins = manager()
        if plugins.is_registered(plugin):
            return plugins.get_name(plugin)
        registered = plugins.register(plugin, name=name)
        _impls.clear()
        return registered


def unregister_plugin(plugin: object | None = None, name: str | None = None) -> None:
    """Remove a plugin registered by hand or from an entry point."""
    with _lock:
        manager().unregister(plugin, name=name)
        _impls.clear()


def _implementations(hook_name: str) -> tuple[Impl, ...]:
    impls = _impls.get(hook_name)
    if impls is None:
        with _lock:
            hook = getattr(manager().hook, hook_name)
            impls = tuple(
                (impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(hook.get_hookimpls())
                if not (impl.hookwrapper or impl.wrapper)
            )
            _impls[hook_name] = impls
    return impls


def implementations(hook_name: str) -> tuple[Impl, ...]:
    """``(plugin name, function, argument names)`` of each implementation of ``hook_name``, in call order,
    for a caller that chains their answers (errors are its to handle, with :func:`report_error`)."""
    return _implementations(hook_name)


def failed_to_load() -> frozenset[str]:
    """The entry-point plugins that could not be imported: which hooks they would implement is unknown."""
    return _failed_to_load


def implemented(hook_name: str) -> bool:
    """Whether any plugin implements ``hook_name`` (cached until a plugin is registered or removed)."""
    impls = _impls.get(hook_name)  # asked per message: the cached answer without a further call
    return bool(impls if impls is not None else _implementations(hook_name))


MAX_ERROR_CHARS = 300
"""The most of a plugin's exception text a log line carries."""


def report_error(plugin: str, hook_name: str, exc: BaseException, *, with_text: bool = True) -> None:
    """Count ``plugin_error:<hook>`` and log once, naming the plugin; ``with_text=False`` leaves the
    exception's text out (it may quote the values a redacting hook was handling). The text is escaped
    and cut (it may quote the message), and an exception whose ``__str__`` raises is named by its type."""
    counters.record("plugin_error", hook_name)
    log_once(
        f"plugin:{plugin}:{hook_name}:{type(exc).__name__}",
        logging.ERROR,
        "segment_analytics plugin %r raised in %s: %s%s (logged once; see stats())",
        plugin,
        hook_name,
        type(exc).__name__,
        f": {shown.escape(exc, MAX_ERROR_CHARS)}" if with_text
        else " (its text is not logged: it may quote the payload's values)",
    )


def call_all(hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of ``hook_name``, each isolated from the others' errors."""
    for plugin, function, argnames in _implementations(hook_name):
        try:
            function(*[kwargs[name] for name in argnames])
        except Exception as exc:
            report_error(plugin, hook_name, exc)


def first_result(hook_name: str, **kwargs: Any) -> Any:
    """The first non-None answer of ``hook_name``'s implementations; a raising one is skipped."""
    for plugin, function, argnames in _implementations(hook_name):
        try:
            answer = function(*[kwargs[name] for name in argnames])
        except Exception as exc:
            report_error(plugin, hook_name, exc)
            continue
        if answer is not None:
            return answer
    return None
