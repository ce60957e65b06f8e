"""``pendo-plugin sandbox``: run the sandbox in the foreground with a live table of what it received."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from pendo_plugin.sandbox.rules import Schema
from pendo_plugin.sandbox.server import Sandbox

_ROWS = (
    ("visitors", "visitors"),
    ("accounts", "accounts"),
    ("track_events", "track events"),
    ("webhook_messages", "webhook messages"),
    ("segment_messages", "segment messages"),
    ("violations", "violations"),
    ("requests", "requests"),
)


def format_counts(counts: Mapping[str, int], url: str) -> list[str]:
    """The live table's lines: one count per row, then the page URL."""
    lines = [f"{'what':<18}{'count':>10}", "-" * 28]
    lines += [f"{label:<18}{counts.get(key, 0):>10,}" for key, label in _ROWS]
    lines.append(f"page: {url}/")
    return lines


class _LiveTable:
    """Reprints the counts once a tick: in place on a terminal, only on change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._printed = 0
        self._last: dict[str, int] | None = None

    def __call__(self, sandbox: Sandbox) -> None:
        counts = sandbox.counts()
        if counts == self._last and not self._tty:
            return
        self._last = counts
        lines = format_counts(counts, sandbox.url)
        if self._tty and self._printed:
            self._out.write(f"\x1b[{self._printed}F")
        self._out.write("".join(line + ("\x1b[K\n" if self._tty else "\n") for line in lines))
        self._out.flush()
        self._printed = len(lines)


def _describe(name: str, secret: str | None) -> str:
    return f"  {name}: {'required (set)' if secret else 'not required'}"


def main_sandbox(
    port: int,
    latency: float,
    track_secret: str | None,
    integration_key: str | None,
    api_key: str | None,
    live: bool,
    *,
    schema: Schema | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the sandbox in the foreground until Ctrl-C; print the URL and, when ``live``, a counts table."""
    out = out or sys.stdout
    sandbox = Sandbox(
        port=port,
        latency=latency,
        track_secret=track_secret,
        integration_key=integration_key,
        api_key=api_key,
        schema=schema,
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(f"sandbox: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    banner = [
        f"Pendo sandbox listening on {sandbox.url} (page: {sandbox.url}/), latency {latency * 1000:.0f} ms",
        f"  PENDO_DATA_URL={sandbox.url} PENDO_API_URL={sandbox.url}",
        _describe("track secret", track_secret),
        _describe("integration key", integration_key),
        _describe("API key (webhook path)", api_key),
        "Ctrl-C to stop.",
    ]
    print("\n".join(banner), file=out, flush=True)
    sandbox.serve_forever(on_tick=_LiveTable(out) if live else None)
    totals = ", ".join(f"{label} {sandbox.counts().get(key, 0)}" for key, label in _ROWS)
    print(f"\nSandbox stopped: {totals}.", file=out, flush=True)
    return 0
