"""Public functions for the app and operators: counters and an explicit flush."""

from __future__ import annotations

from pendo_plugin import config, counters


def stats() -> dict[str, int]:
    """Counters of messages seen, queued, sent, retried, spooled, skipped and dropped, by reason."""
    return counters.snapshot()


def flush(timeout: float | None = None) -> bool:
    """Wait until everything queued for Pendo is delivered, refused for good or given up on for now
    (retries used up: it waits in the spool), retries and Retry-After pauses that fit ``timeout``
    (default ``PENDO_FLUSH_TIMEOUT``) included; False if the time ran out first, or what is left can
    only be retried after it.

    Also replays what an earlier process left in the spool, and waits for that.
    """
    from pendo_plugin.destination import runtime

    settings = config.current()
    if not settings.active:
        return True
    return bool(runtime().flush(settings.flush_timeout if timeout is None else timeout))
