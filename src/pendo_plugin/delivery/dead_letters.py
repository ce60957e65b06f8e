"""The local dead letter: a spooled payload that failed :data:`DEAD_AFTER` times, counted across the
processes that replayed it, is moved to the spool's ``quarantine/`` as a ``dead-*`` file instead of being
retried for ever (fleet mode's dead stream is the same rule, with the same constant).

A payload's failures travel with it in its spool line (``"f": n``). Only its own failures count: not a
shutdown, not Pendo looking down (the sender's breaker), not a hold (the same rules as fleet mode's
``RedisQueue._its_own_failure``). A dead file is a spool file: ``pendo-plugin spool dead retry`` moves it
back into the spool with its failures reset, ``purge`` deletes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pendo_plugin import counters
from pendo_plugin.delivery.holds import hold_reason
from pendo_plugin.delivery.spool_files import QUARANTINE, make_private_directory
from pendo_plugin.logs import log_once

if TYPE_CHECKING:
    from pendo_plugin.config import Settings
    from pendo_plugin.delivery.transmit import Transmitter
    from pendo_plugin.pendo.payload import Payload

DEAD_AFTER = 5  # a payload that failed this many times, in any processes, is a dead letter
MAX_FAILURE_DIGITS = 6
DEAD_PREFIX = "dead-"


def failures_in(document: object) -> int:
    """A spool line's failure count (untrusted: a value that is not a small non-negative integer counts
    as failed too often)."""
    raw = document.get("f") if isinstance(document, dict) else None
    if raw is None:
        return 0
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 10**MAX_FAILURE_DIGITS:
        return raw
    return DEAD_AFTER


def own_failure(sender: Transmitter, payload: Payload, settings: Settings) -> bool:
    """Whether ``payload``'s failure is its own: Pendo answered (the sender's last attempt got an answer,
    its breaker is closed) and the settings do not hold it."""
    if sender.failing or sender.unanswered > 0:
        return False
    return hold_reason(payload, settings) is None


def with_failures(line: bytes, failures: int) -> bytes:
    """``line`` (one encoded payload, a JSON object) carrying its failure count."""
    return line if failures <= 0 else line[:-1] + b',"f":%d}' % failures


def bury(directory: Path, path: Path, items: int) -> None:
    """Move the spool file ``path`` (just written, of ``items`` dead payloads) to ``quarantine/``; counted
    as ``spool_quarantined:dead_letter`` per payload, logged once."""
    place = directory / QUARANTINE
    counters.record("spool_quarantined", "dead_letter", amount=items)
    try:
        make_private_directory(place)
        os.rename(path, place / (DEAD_PREFIX + path.name))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        log_once("spool-dead-letter-move", logging.ERROR, "pendo_plugin: a dead letter could not be moved "
                 "to %s (%s); deleted", place, type(exc).__name__)
        return
    log_once("spool-dead-letter", logging.ERROR, "pendo_plugin: %d payload(s) failed %d times and were moved "
             "to %s (spool_quarantined:dead_letter; pendo-plugin spool dead list|retry|purge); further ones "
             "are only counted", items, DEAD_AFTER, place)


def dead_files(directory: Path) -> list[Path]:
    """The dead-letter files in ``quarantine/``, oldest first."""
    try:
        with os.scandir(directory / QUARANTINE) as entries:
            return sorted(Path(e.path) for e in entries if e.name.startswith(DEAD_PREFIX) and e.is_file(
                follow_symlinks=False))
    except OSError:
        return []


def dead_payloads(directory: Path) -> int:
    """How many payloads the dead-letter files hold (by their names: ``...-n<count>.jsonl``)."""
    total = 0
    for path in dead_files(directory):
        count = path.stem.rsplit("-n", 1)[-1]
        total += int(count) if count.isdigit() and len(count) <= MAX_FAILURE_DIGITS else 0
    return total
