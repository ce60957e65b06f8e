"""``replay`` trusts nothing in an export: an endless line is skipped in bounded memory, deep nesting is
skipped and the checkpoint moves past both, and the checkpoint's temp file never follows a planted symlink.
Real files, a real sandbox and the CLI in real subprocesses."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pendo_plugin.replay import Checkpoint, Filters, ReplayOptions, parse_filters
from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env

SECRET = "replay-hardening-secret-1"
KEY = "replay-hardening-key-1"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET, integration_key=KEY) as sandbox:
        yield sandbox


def track_line(mid: str) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = {"type": "track", "userId": "u1", "event": "Hardened", "messageId": mid, "timestamp": now,
               "properties": {"mid": mid}}
    return json.dumps(message) + "\n"


def replay_measured(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``pendo-plugin replay`` in a child of a small wrapper that reports the child's peak RSS (KiB)."""
    wrapper = textwrap.dedent(
        """
        import resource, subprocess, sys
        done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "replay", *sys.argv[1:]],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        sys.stderr.write(f"\\nPEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
        sys.exit(done.returncode)
        """
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *args], env=env, capture_output=True, text=True,
                          timeout=180)
    peak = int(done.stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()[0])
    return done, peak


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_endless_line_is_skipped_in_bounded_memory(box: Sandbox, tmp_path: Path, dry_run: bool) -> None:
    """The issue's case, scaled: a small gzip of 512 MB of zeros with no newline, then a good line."""
    export = tmp_path / "zeros.jsonl.gz"
    zeros = bytes(16 * 1024 * 1024)
    with gzip.open(export, "wb", compresslevel=1) as out:
        out.write(track_line("m1").encode())
        for _ in range(32):
            out.write(zeros)
        out.write(b"\n")
        out.write(track_line("m3").encode())
    assert export.stat().st_size < 8 * 1024 * 1024
    env = pendo_env(box.url, SECRET, KEY)
    flags = ["--dry-run"] if dry_run else []
    done, peak_kb = replay_measured(env, str(export), "--max-line-mb", "2", *flags)
    assert done.returncode == 0, done.stderr
    assert "line 2: 536,870,912 bytes, longer than --max-line-mb (skipped)" in done.stderr
    assert peak_kb < 200 * 1024, f"peak RSS {peak_kb} KiB while skipping a 512 MB line"
    if dry_run:
        assert box.track_events() == []
        return
    assert sorted(event["properties"]["mid"] for event in box.track_events()) == ["m1", "m3"]
    checkpoint = json.loads(Path(f"{export}.pendo-checkpoint").read_text())
    assert checkpoint["files"][str(export)]["line"] == 3, "the checkpoint did not move past the long line"


def test_deep_nesting_is_skipped_and_the_checkpoint_moves_past_it(box: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "deep.jsonl"
    deep = '{"type": "track", "properties": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    nested_65 = '{"type": "track", "p": ' + "[" * 64 + "]" * 64 + "}\n"
    export.write_text(track_line("m1") + deep + nested_65 + track_line("m4"))
    done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "replay", str(export)],
                          env=pendo_env(box.url, SECRET, KEY), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert "line 2: nested deeper than 64 levels (skipped)" in done.stderr
    assert "line 3: nested deeper than 64 levels (skipped)" in done.stderr
    assert sorted(event["properties"]["mid"] for event in box.track_events()) == ["m1", "m4"]
    checkpoint = json.loads(Path(f"{export}.pendo-checkpoint").read_text())
    assert checkpoint["files"][str(export)]["line"] == 4


def filters() -> Filters:
    return parse_filters(ReplayOptions(files=["x"]))


def test_the_checkpoint_temp_file_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "export.jsonl.pendo-checkpoint"
    planted = tmp_path / f".{path.name}.{os.getpid()}.tmp"  # the name an earlier version used
    planted.symlink_to(victim)
    checkpoint = Checkpoint(path, filters())
    checkpoint.acks("export.jsonl").add(1)
    checkpoint.save()
    assert victim.read_text() == "precious\n"
    assert planted.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["files"]["export.jsonl"]["line"] == 1
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(["victim", path.name, planted.name])
