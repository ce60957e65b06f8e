"""``pendo-plugin spool status|drain|purge``: what waits in the spool, send it now, or remove it.

A drain settles each file like the live worker does (:class:`~pendo_plugin.delivery.batch.Batch`):
deleted when everything in it was acknowledged, failures re-written to a new file of the same age,
kept whole if nothing could be sent. Temp files that writers left behind when they died are recovered
(complete) or dropped (torn, counted) first; files failing a check are quarantined, never sent. A file's
payloads are sent in slices (:data:`~pendo_plugin.delivery.dispatch.SLICE`), so memory and open
requests stay bounded.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from pendo_plugin import counters
from pendo_plugin.cli._common import CommandError, counter_delta, format_counts, rejected_counts, with_prefix
from pendo_plugin.cli.replay import EXIT_FAILED, EXIT_OK, load_settings
from pendo_plugin.config import Settings
from pendo_plugin.delivery.batch import Batch
from pendo_plugin.delivery.dead_letters import DEAD_AFTER, dead_payloads, own_failure
from pendo_plugin.delivery.dispatch import dispatch
from pendo_plugin.delivery.fleet.mode import share_budget
from pendo_plugin.delivery.rows import FieldClock
from pendo_plugin.delivery.senders import Sender
from pendo_plugin.delivery.spool import Claim, Spool
from pendo_plugin.delivery.spool_files import QUARANTINE


def _spool(settings: Settings) -> Spool:
    if settings.spool_dir is None:
        raise CommandError("the spool is off (PENDO_SPOOL_DIR=off), so nothing waits in it")
    spool = Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024))
    if spool.refused is not None:
        raise CommandError(f"the spool directory is not safe to use: {spool.refused}")
    return spool


def _size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"  # pragma: no cover


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0 s"


def spool_status(out: TextIO | None = None) -> int:
    """Print what waits in the spool: files, payloads, bytes, age of the oldest."""
    out = out or sys.stdout
    settings = load_settings()
    spool = _spool(settings)
    status = spool.status()
    print(f"spool     {spool.directory}", file=out)
    print(f"files     {status.files:,}", file=out)
    print(f"payloads  {status.items:,}", file=out)
    print(f"size      {_size(status.bytes)}", file=out)
    print(f"oldest    {_age(status.oldest_age_seconds)}", file=out)
    print(f"unfinished {status.unfinished:,} temp file(s) (recovered, or dropped if torn, at the next drain)",
          file=out)
    print(f"quarantined {status.quarantined:,} file(s) in {spool.directory / QUARANTINE} (never sent)",
          file=out)
    dead = dead_payloads(spool.directory)
    print(f"dead letters {dead:,} payload(s) that failed {DEAD_AFTER} times, in quarantine/ (pendo-plugin "
          "spool dead list|retry|purge)", file=out)
    if settings.redis_url:  # fleet mode: what waits in the shared stream
        from pendo_plugin.cli.fleet_status import stream_status

        print("\n".join(stream_status(settings.redis_url)), file=out)
    return 0


# metadata rows of one spool file: id -> (merged values, the payloads merged into them)
async def drain_claim(
    sender: Sender, spool: Spool, claim: Claim, settings: Settings, clock: FieldClock
) -> None:
    """Send one claimed spool file and settle it like the runtime does (:class:`Batch`): deleted when
    everything was acknowledged, failures re-written to a new file of the same age, kept if all failed.
    ``clock``: the newest metadata values already sent by this drain (an older one is not sent after)."""
    batch = Batch(len(claim.items), claim, spool, lambda items: None, replay=True,
                  counts=lambda payload: own_failure(sender, payload, settings))
    if not claim.items:
        claim.done()
        return
    await dispatch(sender, claim.items, settings, batch.finish, clock)


async def _drain(spool: Spool, settings: Settings, files: int, err: TextIO) -> None:
    from tqdm import tqdm

    sender = Sender.for_settings(settings, asyncio.Event())
    link = share_budget(sender, settings)  # PENDO_RATE_LIMIT (the fleet's), after live traffic
    try:
        with tqdm(total=files, desc="spool", unit="file", file=err, disable=None) as bar:
            clock = FieldClock()
            for claim in spool.claims():
                await drain_claim(sender, spool, claim, settings, clock)
                bar.update(1)
    finally:
        if settings.transport is None:
            await sender.transport.close()
        if link is not None:
            await link.close()


def spool_drain(out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Send what waits in the spool now (fleet mode: and in the Redis stream); 0 when both end up empty,
    1 if something is left."""
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings()
    spool = _spool(settings)
    spool.recover()
    status = spool.status()
    if not status.files and not settings.redis_url:
        print(f"The spool at {spool.directory} is empty; nothing to send.", file=out)
        return EXIT_OK
    if not (settings.track_secret or settings.integration_key or settings.api_key):
        raise CommandError("no PENDO_TRACK_SECRET, PENDO_INTEGRATION_KEY or PENDO_API_KEY is set, so "
                           "nothing in the spool can be sent")
    if not settings.rollout.enabled or settings.shadow:
        switch = "PENDO_SHADOW is on" if settings.shadow else "PENDO_ENABLED is false"
        raise CommandError(f"{switch}, so the spool is left as it is")
    empty = True
    if status.files:
        print(f"Draining {spool.directory}: {status.files:,} file(s), {status.items:,} payload(s)", file=out)
        before = counters.snapshot()
        asyncio.run(_drain(spool, settings, status.files, err))
        delta = counter_delta(before, counters.snapshot())
        left = spool.status()
        print(f"  sent      {format_counts(with_prefix(delta, 'sent:'))}", file=out)
        print(f"  rejected  {format_counts(rejected_counts(delta))}", file=out)
        print(f"  left      {left.files:,} file(s), {left.items:,} payload(s)", file=out)
        empty = not left.files
    else:
        print(f"The spool at {spool.directory} is empty.", file=out)
    if settings.redis_url:  # fleet mode: what waits in the shared stream too
        from pendo_plugin.cli.spool_stream import drain_stream

        before = counters.snapshot()
        empty = drain_stream(settings, out) and empty
        delta = counter_delta(before, counters.snapshot())
        print(f"  sent      {format_counts(with_prefix(delta, 'sent:'))}", file=out)
    return EXIT_OK if empty else EXIT_FAILED


def _confirm(question: str, stdin: TextIO) -> bool:
    if not stdin.isatty():
        raise CommandError("refusing to purge without confirmation: stdin is not a terminal (pass --yes)")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def spool_purge(assume_yes: bool = False, out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Delete what waits in the spool (asks first unless ``assume_yes``)."""
    out = out or sys.stdout
    settings = load_settings()
    spool = _spool(settings)
    status = spool.status()
    if not status.files:
        print(f"The spool at {spool.directory} is empty; nothing to purge.", file=out)
        return EXIT_OK
    question = f"Delete {status.items:,} payload(s) in {status.files:,} file(s) from {spool.directory}?"
    if not assume_yes and not _confirm(question, stdin or sys.stdin):
        print("Nothing deleted.", file=out)
        return EXIT_FAILED
    removed = spool.purge()
    left = spool.status()
    held = f"; {left.files:,} file(s) in use by another process were left" if left.files else ""
    print(f"Purged {removed:,} payload(s) from {spool.directory}{held}.", file=out)
    return EXIT_OK

