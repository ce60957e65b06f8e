"""What cannot be sent now: left in the spool for a later attempt, or, with the spool off or not
writable, counted as dropped and handed to the app's ``on_error``. Also used on the app's thread when the
worker is gone (its intake is routed and spooled there, without a worker)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pendo_plugin import config, counters
from pendo_plugin.config import Settings
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.destination.queues import Intake
from pendo_plugin.destination.route import Router
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.payload import Payload


def report_drop(exc: Exception, items: list[Any]) -> None:
    """Hand payloads lost for good to the app's ``on_error`` callback, if it set one: each as the dict of
    its spool line (``{"k": "track", "b": body}``, ...), or a metadata row as Pendo got it."""
    callback = config.current().on_error
    if callback is None:
        return
    try:
        callback(exc, [item.as_dict() if isinstance(item, Payload) else item for item in items])
    except Exception as error:
        log_once("on_error", logging.ERROR, "pendo_plugin: on_error callback raised %s", type(error).__name__)


def undeliverable(items: list[Payload]) -> None:
    """Count and report payloads that failed and cannot be kept (the spool is off or not writable)."""
    for item in items:
        counters.record("dropped", "undeliverable", item.kind)
    log_once(
        "undeliverable",
        logging.WARNING,
        "pendo_plugin: payloads could not be delivered and could not be kept (spool off or not "
        "writable: PENDO_SPOOL_DIR); dropped and counted as dropped:undeliverable",
    )
    report_drop(RuntimeError("undeliverable, and the spool is off or not writable"), items)


def leave_in_spool(payloads: list[Payload], spool: Spool | None) -> None:
    """Leave ``payloads`` in the spool for a later attempt (or count them dropped, spool off)."""
    if not payloads:
        return
    if spool is not None and spool.write(payloads) is not None:
        counters.record("spooled", amount=len(payloads))
    else:
        undeliverable(payloads)


def open_spool(settings: Settings) -> Spool | None:
    """The spool the settings name, or None when it is off."""
    if settings.spool_dir is None:
        return None
    return Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024))


def spool_unrouted(intake: Intake, messages: list[Mapping[str, Any]], settings: Settings) -> None:
    """Route ``messages`` on the calling thread and leave them in the spool unsent (the worker is gone)."""
    if intake.router is None:
        intake.router = Router()
    router = intake.router
    leave_in_spool([payload for message in messages for payload in router.route(message, settings)],
                   open_spool(settings))
