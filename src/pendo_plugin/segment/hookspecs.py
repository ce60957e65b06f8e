"""The hooks of the ``segment_analytics`` plugin system.

Every hook is called with keyword arguments. An exception raised by one plugin is caught,
logged once per kind and counted; it never reaches the app nor stops the other plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

PROJECT = "segment_analytics"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def segment_startup(client: Any) -> None:
    """A Segment client that sends was created: get ready (load settings, start a worker) so that the
    first message is cheap; must not block."""


@hookspec
def segment_message(client: Any, message: Mapping[str, Any]) -> None:
    """A message the Segment client accepted, after its normalisation; read-only, must not block."""


@hookspec
def segment_flush(client: Any, timeout: float) -> None:
    """The app called ``flush()``: drain your own queue within ``timeout`` seconds."""


@hookspec
def segment_shutdown(client: Any, timeout: float) -> None:
    """``join()``/``shutdown()`` or interpreter exit: drain within ``timeout``, persist the rest."""


@hookspec(firstresult=True)
def pendo_rollout(message: Mapping[str, Any]) -> bool | None:
    """Decide whether one message goes to Pendo: True, False, or None for the built-in flags."""


@hookspec
def pendo_transform(
    kind: str, payload: dict[str, Any], message: Mapping[str, Any]
) -> dict[str, Any] | bool | None:
    """Change one translated payload (a copy; ``kind``: track, visitor, account, webhook) on the worker
    thread: return a new payload dict to replace it, ``False`` to drop it, or ``None`` to keep it."""
