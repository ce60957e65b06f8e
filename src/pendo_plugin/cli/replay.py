"""``pendo-plugin replay``: stored traffic sent to Pendo the way live traffic is.

A replay reads Segment exports (JSON lines, gzip or plain, or stdin) and sends each message through the
live path's own :class:`~pendo_plugin.destination.route.Router` (rollout, translation, Pendo's rules) and
send path, :class:`~pendo_plugin.delivery.dispatch.Dispatcher` (the checks, retries, adaptive
concurrency, metadata batches), in its own ``asyncio.run``. Progress is checkpointed per file: the lines
whose payloads were all acknowledged (or refused for good, or had nothing to send) are recorded, so an
interrupted replay resumes without resending them. What it reads is in :mod:`.replay_input`, its summary
in :mod:`.replay_report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from pendo_plugin import bounded, config, counters, shown
from pendo_plugin.cli._common import (
    CommandError,
    counter_delta,
    quiet_logs,
    rejected_counts,
)
from pendo_plugin.cli.replay_input import (
    Acks,
    Checkpoint,
    Filters,
    Job,
    ReadError,
    ReplayOptions,
    Source,
    parse_filters,
    parse_line,
    plan_jobs,
)
from pendo_plugin.cli.replay_report import Tally, print_summary
from pendo_plugin.config import SECRET_FIELDS, Settings
from pendo_plugin.delivery.dispatch import EVENTS_PER_SLOT, Dispatcher
from pendo_plugin.delivery.senders import Outcome, Payload, Sender
from pendo_plugin.destination.route import Router
from pendo_plugin.pendo.translate import translate

SAVE_INTERVAL = 0.5
MAX_REPORTED_MALFORMED = 20
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
PREVIEW = "use --dry-run to preview"


# ----------------------------------------------------------------------------------- settings


def load_settings() -> Settings:
    """The settings in force (environment plus ``configure()``); CommandError names a bad variable."""
    with quiet_logs():
        settings = config.current()
    if settings.problems:
        raise CommandError(f"{settings.problems[0]}; fix it first")
    return settings


def _sendable_settings(dry_run: bool) -> Settings:
    """Settings a replay can send with; a dry run lends placeholder secrets so routing is unchanged."""
    settings = load_settings()
    if dry_run:
        missing = {name: "dry-run-placeholder" for name in SECRET_FIELDS if not getattr(settings, name)}
        if missing:
            with quiet_logs():
                settings = config.load(missing)
        return settings
    if not (settings.send_track or settings.send_metadata):
        needed = "PENDO_API_KEY is" if settings.mode == "webhook" else (
            "PENDO_TRACK_SECRET and PENDO_INTEGRATION_KEY are")
        raise CommandError(f"{needed} not set, so nothing can be sent ({PREVIEW})")
    if not settings.rollout.enabled:
        raise CommandError(f"PENDO_ENABLED is false, so a replay would send nothing ({PREVIEW})")
    if settings.shadow:
        raise CommandError(f"PENDO_SHADOW is on, so a replay would send nothing ({PREVIEW})")
    return settings


def _warnings(settings: Settings) -> list[str]:
    """What the operator should know before a replay sends anything."""
    notes = []
    if settings.mode == "api" and not settings.track_secret:
        notes.append("PENDO_TRACK_SECRET is not set: track lines will be skipped")
    if settings.mode == "api" and not settings.integration_key:
        notes.append("PENDO_INTEGRATION_KEY is not set: identify and group lines will be skipped")
    if settings.rollout.percent < 100:
        percent = settings.rollout.percent
        notes.append(f"PENDO_ROLLOUT_PERCENT={percent:g}: only that share of visitors is sent")
    return notes


# ----------------------------------------------------------------------------------- the replay


@dataclass
class Line:
    """One export line with payloads in flight; acknowledged when every one of them is settled."""

    acks: Acks
    number: int
    remaining: int
    failed: bool = False


class Replayer:
    """Routes export lines and sends their payloads, keeping the checkpoint up to date."""

    def __init__(self, settings: Settings, filters: Filters, sender: Sender | None,
                 checkpoints: Sequence[Checkpoint], err: TextIO) -> None:
        self.settings = settings
        self.filters = filters
        self._window = settings.max_concurrency * EVENTS_PER_SLOT  # sends in flight at most
        self.sends = None if sender is None else Dispatcher(sender)  # None: a dry run
        self.checkpoints = checkpoints
        self.err = err
        self.router = Router()
        self.tally = Tally()
        self.stop_requested = False
        self._dirty = False

    # ----- one line

    async def process(self, source: Source, acks: Acks, number: int, raw: bytes | bounded.Oversized) -> None:
        """Route one line and dispatch what it becomes; lines with nothing to send are settled at once."""
        self.tally.lines += 1
        if isinstance(raw, bounded.Oversized):
            self._malformed(source, acks, number, f"{raw.size:,} bytes, longer than --max-line-mb")
            return
        if not raw.strip():
            self._settled(acks, number, "blank_line")
            return
        message, problem = parse_line(raw)
        if message is None:
            self._malformed(source, acks, number, problem or "malformed")
            return
        if number in acks:
            self.tally.skipped["in_checkpoint"] += 1
            self._remember_account(message)
            return
        reason = self.filters.reason_to_skip(message)
        if reason is not None:
            self._remember_account(message)
            self._settled(acks, number, reason)
            return
        age = None if self.filters.allow_old else True
        payloads = self.router.route(message, self.settings, max_age_days=age)
        if not payloads or self.sends is None:
            self.tally.would_send.update(payload.kind for payload in payloads)
            self._settled(acks, number, None)
            return
        line = Line(acks, number, len(payloads))
        settle = partial(self._settle, line)
        for payload in payloads:
            await self.sends.room(self._window)
            self.sends.submit(payload, self.settings, settle)
        self.send_due_rows()

    def _settled(self, acks: Acks, number: int, skip_reason: str | None) -> None:
        if skip_reason is not None:
            self.tally.skipped[skip_reason] += 1
        acks.add(number)
        self._dirty = True

    def _malformed(self, source: Source, acks: Acks, number: int, problem: str) -> None:
        if number not in acks:
            text = f"{source.label}: line {number}: {problem}"
            self.tally.malformed.append(text)
            if len(self.tally.malformed) <= MAX_REPORTED_MALFORMED:
                _write(self.err, f"{text} (skipped)")
            elif len(self.tally.malformed) == MAX_REPORTED_MALFORMED + 1:
                _write(self.err, "further malformed lines are only counted in the summary")
        acks.add(number)
        self._dirty = True

    def _remember_account(self, message: Mapping[str, Any]) -> None:
        """Lines not sent still link visitors to accounts, so later track events get their accountId."""
        if message.get("type") in ("identify", "group"):
            link = translate(message, now_ms=0, max_age_days=None).account_link
            if link is not None:
                self.router.accounts.remember(*link)

    # ----- sending

    def send_due_rows(self, force: bool = False) -> None:
        """Send waiting metadata rows when a batch is full or its interval has passed (or now: ``force``)."""
        if self.sends is not None:
            self.sends.send_rows(self.settings, force=force)

    def _settle(self, line: Line, payload: Payload, outcome: Outcome) -> None:
        if outcome == "failed":
            self.tally.failed[payload.kind] += 1
            line.failed = True
        line.remaining -= 1
        if line.remaining == 0 and not line.failed:
            line.acks.add(line.number)
            self._dirty = True

    async def wait_for_sends(self) -> None:
        """Wait until every send started has settled."""
        if self.sends is not None:
            await self.sends.wait()

    # ----- stopping and saving

    def request_stop(self) -> None:
        """First Ctrl-C: read no further, let requests in flight finish. Second: cancel them."""
        sends = self.sends
        if self.stop_requested:
            if sends is not None:
                sends.cancel()
            return
        self.stop_requested = True
        in_flight = unsettled = 0
        if sends is not None:
            sends.sender.stopping.set()  # retry waits end now; those lines stay unacknowledged
            in_flight = sends.sender.limiter.in_flight  # HTTP requests: at most PENDO_MAX_CONCURRENCY
            unsettled = sends.load  # payloads handed over and not yet settled, those requests' included
        _write(self.err, f"stopping: waiting for {in_flight} request(s) in flight, {unsettled} payload(s) "
                         "not yet settled (Ctrl-C again to stop at once)")

    def save(self, force: bool = False) -> None:
        """Write the checkpoints if lines were settled since the last save (or now, with ``force``)."""
        if self._dirty or force:
            self._dirty = False
            for checkpoint in self.checkpoints:
                checkpoint.save()

    async def save_periodically(self) -> None:
        """Persist progress every :data:`SAVE_INTERVAL` seconds while the replay runs."""
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            self.save()


def _write(out: TextIO, text: str) -> None:
    from tqdm import tqdm

    tqdm.write(shown.escape(text), file=out)  # a report may quote the export: one line, escaped


# ----------------------------------------------------------------------------------- running a replay


async def _replay_source(replayer: Replayer, job: Job) -> None:
    from tqdm import tqdm

    source = job.source
    source.open()
    if job.acks.line or job.acks.ranges:
        _write(replayer.err, f"{source.label}: resuming after line {job.acks.line:,} (from the checkpoint)")
    number = 0
    with tqdm(desc=source.label, unit=" lines", unit_scale=True, file=replayer.err, disable=None,
              dynamic_ncols=True) as bar:
        try:
            while not replayer.stop_requested:
                chunk = await asyncio.to_thread(source.read_chunk)
                if not chunk:
                    break
                for raw in chunk:
                    number += 1
                    await replayer.process(source, job.acks, number, raw)
                    if replayer.stop_requested:
                        break
                replayer.send_due_rows()
                _advance(bar, number, source)
        finally:
            source.close()


def _advance(bar: Any, lines: int, source: Source) -> None:
    """Move the bar to ``lines``; its total is estimated from the share of the file read so far."""
    position = source.position()
    if source.total and position:
        bar.total = max(lines, round(lines * source.total / position))
    bar.update(lines - bar.n)


def _install_signal_handlers(replayer: Replayer) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, replayer.request_stop)


async def _replay(jobs: list[Job], checkpoints: list[Checkpoint], settings: Settings, filters: Filters,
                  dry_run: bool, err: TextIO) -> Replayer:
    sender = None if dry_run else Sender.for_settings(settings, asyncio.Event())
    replayer = Replayer(settings, filters, sender, [] if dry_run else checkpoints, err)
    _install_signal_handlers(replayer)
    saver = asyncio.ensure_future(replayer.save_periodically())
    try:
        for job in jobs:
            if replayer.stop_requested:
                break
            try:
                await _replay_source(replayer, job)
            except ReadError as exc:
                replayer.tally.read_error = str(exc)
                break
        if not replayer.stop_requested:
            replayer.send_due_rows(force=True)
        await replayer.wait_for_sends()
    finally:
        saver.cancel()
        replayer.save(force=True)
        if sender is not None and settings.transport is None:
            await sender.transport.close()
    return replayer


def run(options: ReplayOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Replay the exports; 0 when everything was delivered, 1 if something failed, 130 if interrupted."""
    out, err = out or sys.stdout, err or sys.stderr
    filters = parse_filters(options)
    settings = _sendable_settings(options.dry_run)
    jobs, checkpoints = plan_jobs(options, filters)
    if not options.dry_run:
        for checkpoint in checkpoints:
            checkpoint.save()  # fails now, not after the first sends, if the place is not writable
        for note in _warnings(settings):
            print(f"note: {note}", file=err)
    before = counters.snapshot()
    replayer = asyncio.run(_replay(jobs, checkpoints, settings, filters, options.dry_run, err))
    delta = counter_delta(before, counters.snapshot())
    print_summary(replayer.tally, replayer.stop_requested, jobs, delta, options.dry_run, out)
    if replayer.stop_requested:
        return EXIT_INTERRUPTED
    if replayer.tally.read_error:
        print(f"pendo-plugin: {replayer.tally.read_error}", file=err)
        return EXIT_FAILED
    return EXIT_FAILED if sum(replayer.tally.failed.values()) or rejected_counts(delta) else EXIT_OK


