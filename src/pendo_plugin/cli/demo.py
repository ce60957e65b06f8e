"""``pendo-plugin demo``: the plugin end to end in a few seconds, with nothing to set up.

It starts an embedded :class:`~pendo_plugin.sandbox.Sandbox` (a local Pendo and Segment stand-in with a
few demo fields), runs :mod:`pendo_plugin.cli.demo_app` -- an ordinary Segment app -- in a fresh interpreter
pointed at it, then prints what Pendo and Segment received, any rule violations, and the plugin's
counters from inside the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pendo_plugin.cli._common import CommandError
from pendo_plugin.sandbox import Sandbox

TRACK_SECRET = "demo-track-secret"
INTEGRATION_KEY = "demo-integration-key"
DEMO_SCHEMA = {
    "visitor": {"plan": "string", "email": "string", "logins": "number", "createdAt": "date"},
    "account": {"name": "string", "plan": "string", "seats": "number"},
}
EXPECTED = {"track_events": 3, "visitors": 1, "accounts": 1, "segment_messages": 7}
# demo_app.send()'s track calls in the order it makes them: the table shows them so, whatever order the
# concurrent requests reached the sandbox in (three calls often share one millisecond's timestamp)
SENT_ORDER = ("Report Exported", "Plan Upgraded", "Dashboard Viewed")
APP_TIMEOUT = 60.0


@dataclass(frozen=True)
class AppRun:
    """What the sample app reported: how the plugin was activated, and its counters."""

    activation: str
    stats: dict[str, int]


def app_environment(url: str) -> dict[str, str]:
    """The app's environment: this one without PENDO_* settings, plus the sandbox's."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PENDO_", "SEGMENT_ANALYTICS_PLUGINS")) or name == "PENDO_AUTOLOAD"}
    env.update(
        PENDO_TRACK_SECRET=TRACK_SECRET,
        PENDO_INTEGRATION_KEY=INTEGRATION_KEY,
        PENDO_DATA_URL=url,
        PENDO_API_URL=url,
        PENDO_SPOOL_DIR="off",
        PENDO_FLUSH_TIMEOUT="10",
        PENDO_DEMO_SEGMENT_HOST=url,
    )
    return env


def run_app(url: str) -> AppRun:
    """Run the sample app in a subprocess; CommandError if it fails."""
    script = Path(__file__).with_name("demo_app.py")
    try:
        done = subprocess.run([sys.executable, str(script)], env=app_environment(url), capture_output=True,
                              text=True, timeout=APP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise CommandError(f"the sample app did not finish within {APP_TIMEOUT:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandError(f"the sample app failed (exit {done.returncode}): {detail}")
    report = json.loads(lines[-1])
    return AppRun(str(report["activation"]), dict(report["stats"]))


# ----------------------------------------------------------------------------------- printing


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)


def _rows(rows: dict[str, dict[str, Any]]) -> list[str]:
    return [f"    {row_id:<10} " + "  ".join(f"{name}={_value(v)}" for name, v in values.items())
            for row_id, values in rows.items()] or ["    (none)"]


def _sent_order(event: dict[str, Any]) -> tuple[int, Any]:
    name = event.get("event")
    return (SENT_ORDER.index(name) if name in SENT_ORDER else len(SENT_ORDER), event.get("timestamp", 0))


def _event_table(events: list[dict[str, Any]]) -> list[str]:
    events = sorted(events, key=_sent_order)
    header = f"    {'event':<18} {'visitor':<9} {'account':<8} properties"
    rows = [f"    {e['event']:<18} {e['visitorId']:<9} {e.get('accountId', '-'):<8} "
            f"{json.dumps(e.get('properties') or {}, separators=(', ', ': '))}" for e in events]
    return [header, *rows] if rows else ["    (none)"]


def _stats_lines(stats: dict[str, int], per_line: int = 3) -> list[str]:
    cells = [f"{name} {value}" for name, value in sorted(stats.items())]
    width = max((len(cell) for cell in cells), default=0) + 2
    return ["    " + "".join(cell.ljust(width) for cell in cells[i : i + per_line]).rstrip()
            for i in range(0, len(cells), per_line)]


def report_lines(box: Sandbox, app: AppRun) -> list[str]:
    """What Pendo and Segment received, the violations, and the plugin's counters."""
    how = ("the installed .pth bootstrap (no Pendo code in the app)" if app.activation == "autoload" else
           "pendo_plugin.install(): PENDO_AUTOLOAD is off or the .pth is not installed (editable install?)")
    violations = box.violations()
    return [
        f"The sample app imports only segment.analytics; Pendo was activated by {how}.",
        "It sent identify, group, 4 track calls (one opting out with integrations={'Pendo': False}), "
        "and a page call.",
        "",
        "Pendo received",
        "  visitors (metadata)",
        *_rows(box.visitors()),
        "  accounts (metadata)",
        *_rows(box.accounts()),
        "  track events",
        *_event_table(box.track_events()),
        "",
        f"Segment received: {len(box.segment_messages())} messages",
        f"Violations of Pendo's rules: {len(violations) or 'none'}",
        *[f"  {text}" for text in violations[:10]],
        "",
        "pendo_plugin stats in the app (pendo_plugin.stats()):",
        *_stats_lines(app.stats),
    ]


def problems(box: Sandbox) -> list[str]:
    """Differences from what the demo should produce (none when it worked)."""
    counts = box.counts()
    found = [f"expected {want} {name.replace('_', ' ')}, got {counts.get(name, 0)}"
             for name, want in EXPECTED.items() if counts.get(name, 0) != want]
    if counts.get("violations"):
        found.append(f"the sandbox saw {counts['violations']} violation(s) of Pendo's rules")
    return found


def run(out: TextIO | None = None) -> int:
    """Run the demo; 0 when Pendo received exactly what it should."""
    out = out or sys.stdout
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, schema=DEMO_SCHEMA) as box:
        print(f"Started a local Pendo sandbox at {box.url} with demo fields; running the sample app...\n",
              file=out, flush=True)
        app = run_app(box.url)
        print("\n".join(report_lines(box, app)), file=out)
        found = problems(box)
    if found:
        print(f"\nThe demo did not go as expected: {'; '.join(found)}.", file=out)
        return 1
    print("\nNext: `pendo-plugin sandbox` keeps a sandbox running (with a live page); "
          "`pendo-plugin doctor` checks your real keys.", file=out)
    return 0
