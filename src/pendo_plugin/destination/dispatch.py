"""Which routed payloads this process may send, and one send-and-settle of a list of them.

:func:`admit` applies the shadow, kill-switch, secret and key checks (``Settings.hold_reason``, which
the router uses too) to every payload about to be sent, whatever it comes from: the live queue, a
spool file replayed by the worker (on ``pendo_plugin.flush()`` or every 30 s) or by ``pendo-plugin
spool drain``. A held payload is settled as ``failed``, so it stays in the spool for a later moment or
a process that may send it; it never reaches Pendo. :func:`dispatch` sends a list of payloads (tracks
one by one, metadata rows merged per kind) and settles each one through a callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pendo_plugin import counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.rows import FieldClock, MergedRows
from pendo_plugin.delivery.senders import Outcome, Sender
from pendo_plugin.pendo.payload import METADATA_KINDS, Payload

SLICE = 512  # sends started at once by one dispatch

Settle = Callable[[Payload, Outcome], None]


def admit(payload: Payload, settings: Settings, settle: Settle) -> bool:
    """True if ``payload`` may be sent; otherwise settle it at once as failed, so it is kept
    (``held:<reason>:<kind>``). (What a spool file holds that is no payload was dropped when it was
    read: :func:`pendo_plugin.pendo.payload.decode`.)"""
    reason = settings.hold_reason(payload.route)
    if reason is not None:
        counters.incr(f"held:{reason}:{payload.kind}")
        settle(payload, "failed")
        return False
    return True


async def dispatch(
    sender: Sender,
    payloads: list[Payload],
    settings: Settings,
    settle: Settle,
    clock: FieldClock,
    *,
    retry: bool = True,
) -> None:
    """Send ``payloads`` (``retry=False``: one attempt each; metadata rows merged per kind, never an
    older value after a newer one: ``clock``) and settle every one of them with its outcome."""
    sends: list[Coroutine[Any, Any, None]] = []
    rows: dict[str, MergedRows[Payload]] = {kind: MergedRows(kind) for kind in METADATA_KINDS}
    for payload in payloads:
        if not admit(payload, settings, settle):
            continue
        if payload.kind in rows:
            rows[payload.kind].add(payload, payload)
        else:
            sends.append(_send_one(sender, payload, settings, settle, retry))
    sends += [_send_rows(sender, group, settings, settle, clock) for group in rows.values() if group]
    for start in range(0, len(sends), SLICE):
        await asyncio.gather(*sends[start : start + SLICE])


async def _send_one(
    sender: Sender, payload: Payload, settings: Settings, settle: Settle, retry: bool
) -> None:
    outcome: Outcome = "failed"
    try:
        outcome = await sender.send_one(payload, settings, retry)
    finally:
        settle(payload, outcome)


async def _send_rows(
    sender: Sender, rows: MergedRows[Payload], settings: Settings, settle: Settle, clock: FieldClock
) -> None:
    outcome: Outcome = "failed"
    try:
        outcome = await sender.send_metadata(rows.kind, rows.rows(clock), settings)
    finally:
        for payload in rows.origins():
            settle(payload, outcome)
