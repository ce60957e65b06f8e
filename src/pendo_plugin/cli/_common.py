"""What every ``pendo-plugin`` subcommand shares: its errors, exit codes, quiet logging, check lines."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pendo_plugin import counters

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


# ----- counter deltas, for the summaries of replay and spool drain


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    changed = {name: value - before.get(name, 0) for name, value in after.items()}
    return {name: value for name, value in changed.items() if value}


def with_prefix(delta: Mapping[str, int], prefix: str) -> Counter[str]:
    return Counter({name[len(prefix):]: value for name, value in delta.items() if name.startswith(prefix)})


def rejected_counts(delta: Mapping[str, int]) -> Counter[str]:
    """Payloads Pendo refused, by kind: dropped on an HTTP status (``dropped:http_400:track``) or metadata
    rows it did not update (``failed:visitor``); drops of ours (``dropped:undeliverable:*``, ...) are not."""
    refused: Counter[str] = Counter()
    for name, value in delta.items():
        outcome, reason, kind = counters.parse(name)
        by_pendo = outcome == "failed" or (
            outcome == "dropped" and reason is not None and counters.HTTP_STATUS.fullmatch(reason) is not None
        )
        if by_pendo and kind is not None:
            refused[kind] += value
    return refused


def format_counts(counter: Mapping[str, int]) -> str:
    shown = [f"{name} {value:,}" for name, value in sorted(counter.items()) if value]
    return ", ".join(shown) or "0"
