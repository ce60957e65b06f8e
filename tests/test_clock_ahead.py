"""The suite's date-sensitive cases pass with the wall clock moved 30 days ahead.

Pendo skips events older than 7 days, so a test that writes a fixed date passes today and fails
next week. This runs those cases in a child pytest whose wall clock (and its Python children's)
is 30 days ahead, and fails if any of them relies on today's date.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DAYS_AHEAD = 30
# Every test module whose events carry a timestamp checked against "now" (the 7-day window,
# replay's --since/--until, the sandbox's own age check). Not the spool's: its ages come from
# file times, which no clock shift moves.
DATE_SENSITIVE = [
    "test_dual_write.py",
    "test_translate.py",
    "test_sanitize.py",
    "test_sandbox.py",
    "test_cli_replay.py",
]


@pytest.mark.timeout(600)
def test_date_sensitive_cases_pass_with_the_clock_30_days_ahead() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"--clock-ahead-days={DAYS_AHEAD}", "-p", "no:randomly",
         *(str(TESTS / name) for name in DATE_SENSITIVE)],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=TESTS.parent,
    )
    header = next(line for line in result.stdout.splitlines() if line.startswith("wall clock moved ahead"))
    moved_to = dt.datetime.fromisoformat(header.rsplit("now ", 1)[1])
    assert moved_to - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=DAYS_AHEAD - 1)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
