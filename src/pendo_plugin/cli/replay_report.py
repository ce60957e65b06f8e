"""What ``pendo-plugin replay`` did: its own tally (lines read, skipped, malformed, failed) and the
summary printed at the end, which adds the counters the Sender kept (sent, rejected, adjusted)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from pendo_plugin.cli._common import format_counts, rejected_counts, with_prefix
from pendo_plugin.cli.replay_input import Job


@dataclass
class Tally:
    """What the replay did, for the summary (the Sender's own counts come from :mod:`counters`)."""

    lines: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    would_send: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    read_error: str | None = None



def summary_lines(tally: Tally, jobs: list[Job], delta: Mapping[str, int], dry_run: bool) -> list[str]:
    """The end-of-replay report."""
    rollout = with_prefix(delta, "rollout:off_")
    refused_by_rollout = Counter({f"off_{name}": count for name, count in rollout.items()})
    skipped = tally.skipped + with_prefix(delta, "skipped:") + refused_by_rollout
    lines = [f"lines read      {tally.lines:,}"]
    if dry_run:
        lines.append(f"would send      {format_counts(tally.would_send)}")
    else:
        lines.append(f"sent            {format_counts(with_prefix(delta, 'sent:'))}")
    lines.append(f"skipped         {format_counts(skipped)}")
    fixed = with_prefix(delta, "fixed:")
    if fixed:
        lines.append(f"adjusted        {format_counts(fixed)} (to fit Pendo's rules)")
    unknown = with_prefix(delta, "dropped_field:")
    if unknown:
        hint = "(not in Pendo; see pendo-plugin doctor --traits)"
        lines.append(f"unknown fields  {format_counts(unknown)} {hint}")
    malformed = ", ".join(text.split(": ", 1)[1] for text in tally.malformed[:5])
    more = ", ..." if len(tally.malformed) > 5 else ""
    lines.append(f"malformed       {len(tally.malformed):,}" + (f" ({malformed}{more})" if malformed else ""))
    if not dry_run:
        lines.append(f"rejected        {format_counts(rejected_counts(delta))}")
        lines.append(f"failed          {format_counts(tally.failed)}")
    lines += [_checkpoint_line(job) for job in jobs if job.checkpoint is not None and not dry_run]
    return lines


def _checkpoint_line(job: Job) -> str:
    acks = job.acks
    beyond = sum(end - start + 1 for start, end in acks.ranges)
    extra = f" and {beyond:,} later line(s)" if beyond else ""
    assert job.checkpoint is not None
    return f"checkpoint      {job.checkpoint.path}: {job.source.label} done through line {acks.line:,}{extra}"


def print_summary(tally: Tally, interrupted: bool, jobs: list[Job], delta: Mapping[str, int], dry_run: bool,
                  out: TextIO) -> None:
    """Print the report, headed by what happened."""
    if interrupted:
        title = "Replay interrupted; run the same command again to resume"
    else:
        title = "Dry run (nothing sent)" if dry_run else "Replay finished"
    print(title, file=out)
    for line in summary_lines(tally, jobs, delta, dry_run):
        print(f"  {line}", file=out)
