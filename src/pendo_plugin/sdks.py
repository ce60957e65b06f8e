"""The Segment-compatible SDKs the bridge patches, and the one small adapter each needs.

All three ship analytics-python's pipeline: a ``Client`` whose ``_enqueue(msg)`` normalises the message
(``messageId``, ISO ``timestamp``, ``context.library``) and returns ``(accepted, message)``, plus
``flush()`` and ``join()`` (``shutdown()`` calls both, the SDK's atexit handler calls ``join``). What
differs is only what the message looks like, so each SDK's adapter is one function that turns its
accepted message into the Segment shape the hooks promise:

- ``segment-analytics-python`` 2.x (``segment.analytics``): the reference shape, passed on as is.
- ``analytics-python`` 1.4 (``analytics``, the legacy package): the same shape, passed on as is.
- ``rudder-sdk-python`` 2.x (``rudderstack.analytics``): ``identify`` keeps its traits only in
  ``context.traits``, and ``context.library`` claims ``analytics-python``. Plugins get a copy with
  ``traits`` at the top level and the library named ``rudder-sdk-python``; the SDK's own message (what
  its backend receives) is left untouched. Its module-level ``dataPlaneUrl`` only sets the client's
  ``host``, which the bridge never reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Message = Mapping[str, Any]

REQUIRED_METHODS = ("_enqueue", "flush", "join")


def _as_is(message: Message) -> Message:
    return message


def _rudder(message: Message) -> Message:
    """Traits back at the top level of an identify, and the library named after the SDK that sent it."""
    context = message.get("context")
    if not isinstance(context, dict):
        return message
    copy = dict(message)
    if (
        message.get("type") == "identify"
        and "traits" not in message
        and isinstance(context.get("traits"), dict)
    ):
        copy["traits"] = context["traits"]
    library = context.get("library")
    if isinstance(library, dict):
        copy["context"] = {**context, "library": {**library, "name": "rudder-sdk-python"}}
    return copy


@dataclass(frozen=True)
class Sdk:
    """One supported SDK: its distribution, the module holding its ``Client``, and its adapter."""

    distribution: str
    module: str
    tested: str
    to_segment: Callable[[Message], Message]


SDKS = (
    Sdk("segment-analytics-python", "segment.analytics.client", "2.4", _as_is),
    Sdk("analytics-python", "analytics.client", "1.4", _as_is),
    Sdk("rudder-sdk-python", "rudderstack.analytics.client", "2.1", _rudder),
)
BY_MODULE = {sdk.module: sdk for sdk in SDKS}


def sdk_of(cls: type) -> Sdk | None:
    """The supported SDK whose client module defines ``cls``, or None: another module, or not the SDK's
    shape (an unrelated package may well be called ``analytics``)."""
    sdk = BY_MODULE.get(cls.__module__)
    if sdk is None or not all(callable(getattr(cls, name, None)) for name in REQUIRED_METHODS):
        return None
    return sdk


def enqueue_answer(result: Any) -> tuple[bool, Message] | None:
    """``_enqueue``'s ``(accepted, message)`` answer, or None when it is not of that shape."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return bool(result[0]), result[1]
    return None


def survey() -> list[str]:
    """One line per supported SDK: its installed version and whether its ``Client`` is patched once its
    client module is imported here (so whether the bootstrap works in this environment)."""
    import importlib
    import os
    from importlib.metadata import PackageNotFoundError, version

    from pendo_plugin.bridge import PATCHED

    lines = []
    for sdk in SDKS:
        try:
            found = f"{sdk.distribution} {version(sdk.distribution)}"
        except PackageNotFoundError:
            lines.append(f"{sdk.distribution}: not installed")
            continue
        try:
            client = importlib.import_module(sdk.module).Client
        except Exception as exc:
            lines.append(f"{found}: found, cannot be imported: {type(exc).__name__}: {exc}")
            continue
        if getattr(client, PATCHED, False):
            lines.append(f"{found}: found and patched")
        elif os.environ.get("PENDO_AUTOLOAD", "1").strip() == "0":
            lines.append(f"{found}: found, not patched here: PENDO_AUTOLOAD=0 (call pendo_plugin.install())")
        else:
            lines.append(f"{found}: found, NOT patched: the plugin's .pth bootstrap did not run here")
    return lines
