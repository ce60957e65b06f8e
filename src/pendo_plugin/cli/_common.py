"""What every ``pendo-plugin`` subcommand shares: its errors, exit codes, quiet logging, check lines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

PROG = "pendo-plugin"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A problem the operator can fix (bad input, missing secret, unreachable host); one sentence."""


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the plugin's logger (for a command that reports the same problems itself)."""
    logger = logging.getLogger("pendo_plugin")
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous



@dataclass(frozen=True)
class Check:
    """One line of the report: ``OK``, ``FAIL`` or ``SKIP`` (not run because an earlier check failed)."""

    status: str
    text: str


def ok(text: str) -> Check:
    """A passed check."""
    return Check("OK", text)


def fail(text: str) -> Check:
    """A failed check."""
    return Check("FAIL", text)


def skip(text: str) -> Check:
    """A check that could not run; the failure that caused it is reported on its own line."""
    return Check("SKIP", text)
