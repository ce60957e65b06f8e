"""``pendo-plugin replay`` in real subprocesses against a real sandbox: delivery, malformed lines, filters,
and checkpoints that resume an interrupted or partly failed replay without resending anything."""

from __future__ import annotations

import gzip
import json
import re
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env

SECRET = "replay-track-secret-1"
KEY = "replay-integration-key-1"
SCHEMA = {"visitor": {"plan": "string", "email": "string"}, "account": {"name": "string"}}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET, integration_key=KEY, schema=SCHEMA) as sandbox:
        yield sandbox


def env_for(box: Sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    return pendo_env(box.url, SECRET, KEY, XDG_STATE_HOME=str(tmp_path / "state"), **extra)


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


NOW = datetime.now(timezone.utc)


def track(mid: str, user: str = "u1", at: datetime | None = None, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Report Exported",
        "messageId": mid,
        "timestamp": iso(at or NOW),
        "properties": {"mid": mid, **props},
    }


def identify(mid: str, user: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "messageId": mid, "timestamp": iso(NOW), "traits": traits}


def group(mid: str, user: str, account: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "userId": user,
        "groupId": account,
        "messageId": mid,
        "timestamp": iso(NOW),
        "traits": traits,
    }


def write_export(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def mids(box: Sandbox) -> Counter[str]:
    return Counter(event["properties"]["mid"] for event in box.track_events())


def test_replay_delivers_track_and_metadata_skips_page_and_reports_malformed_line(
    box: Sandbox, tmp_path: Path
) -> None:
    export = write_export(
        tmp_path / "export.jsonl",
        [
            identify("m1", "u1", plan="pro", email="ada@example.com"),
            group("m2", "u1", "acme", name="Acme Inc"),
            track("m3"),
            {"type": "page", "userId": "u1", "name": "Home", "messageId": "m4", "timestamp": iso(NOW)},
            "{this is not json",
            track("m6", user="u2", plan="free"),
        ],
    )
    done = cli(env_for(box, tmp_path), "replay", str(export))
    assert done.returncode == 0, done.stderr
    assert mids(box) == {"m3": 1, "m6": 1}
    first = next(event for event in box.track_events() if event["properties"]["mid"] == "m3")
    assert first["accountId"] == "acme"  # linked by the group line before it
    assert box.visitors() == {"u1": {"plan": "pro", "email": "ada@example.com"}}
    assert box.accounts() == {"acme": {"name": "Acme Inc"}}
    assert box.violations() == []
    assert "line 5: not JSON" in done.stderr
    assert "Traceback" not in done.stderr
    summary = done.stdout
    assert "lines read      6" in summary
    assert "account 1, track 2, visitor 1" in summary
    assert "call:page 1" in summary
    assert "malformed       1 (line 5: not JSON)" in summary
    checkpoint = tmp_path / "export.jsonl.pendo-checkpoint"
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600
    assert json.loads(checkpoint.read_text())["files"][str(export)]["line"] == 6


def test_second_run_sends_nothing_again(box: Sandbox, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.jsonl", [track(f"m{n}") for n in range(5)])
    env = env_for(box, tmp_path)
    assert cli(env, "replay", str(export)).returncode == 0
    again = cli(env, "replay", str(export))
    assert again.returncode == 0
    assert "in_checkpoint 5" in again.stdout
    assert mids(box) == {f"m{n}": 1 for n in range(5)}


def test_gzip_file_and_stdin(box: Sandbox, tmp_path: Path) -> None:
    env = env_for(box, tmp_path)
    gz = write_export(tmp_path / "part1.jsonl.gz", [track("g1"), track("g2")])
    assert cli(env, "replay", str(gz)).returncode == 0
    text = json.dumps(track("s1")) + "\n"
    refused = cli(env, "replay", "-", stdin=text)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "pendo-plugin: replaying stdin needs --checkpoint PATH to be resumable (or --no-checkpoint)"
    )
    piped = cli(env, "replay", "-", "--checkpoint", str(tmp_path / "stdin.ckpt"), stdin=text)
    assert piped.returncode == 0, piped.stderr
    assert mids(box) == {"g1": 1, "g2": 1, "s1": 1}


def test_dry_run_sends_nothing_and_writes_no_checkpoint(box: Sandbox, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.jsonl", [identify("m1", "u1", plan="pro"), track("m2")])
    env = env_for(box, tmp_path)
    del env["PENDO_TRACK_SECRET"], env["PENDO_INTEGRATION_KEY"]  # a preview needs no secrets
    done = cli(env, "replay", "--dry-run", str(export))
    assert done.returncode == 0, done.stderr
    assert "would send      track 1, visitor 1" in done.stdout
    assert box.counts()["requests"] == 0
    assert not (tmp_path / "export.jsonl.pendo-checkpoint").exists()


def test_interrupted_replay_resumes_without_resending(box: Sandbox, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = []
    for n in range(300):
        if n % 50 == 0:
            lines.append(identify(f"i{n}", f"user{n}", plan="pro"))
        lines.append(track(f"t{n}", user=f"user{n - n % 50}"))
    export = write_export(tmp_path / "big.jsonl", lines)
    env = env_for(box, tmp_path, PENDO_MAX_CONCURRENCY="2")
    box.set_latency(0.01)
    process = subprocess.Popen(
        [sys.executable, "-m", "pendo_plugin.cli", "replay", str(export)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert box.wait_for(lambda b: len(b.track_events()) >= 40, timeout=30)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Replay interrupted" in out
    stopping = re.search(r"stopping: waiting for (\d+) request\(s\) in flight", err)
    assert stopping is not None and int(stopping.group(1)) <= 2, err  # PENDO_MAX_CONCURRENCY bounds it
    sent_before = len(box.track_events())
    assert 40 <= sent_before < 300
    box.set_latency(0)
    resumed = cli(env, "replay", str(export))
    assert resumed.returncode == 0, resumed.stderr
    assert "in_checkpoint" in resumed.stdout
    assert mids(box) == {f"t{n}": 1 for n in range(300)}
    rows = Counter(row["visitorId"] for rows in box.metadata_requests("visitor") for row in rows)
    assert rows == {f"user{n}": 1 for n in range(0, 300, 50)}


def test_failed_lines_are_the_only_ones_sent_again(box: Sandbox, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.jsonl", [track(f"m{n}") for n in range(20)])
    env = env_for(box, tmp_path, PENDO_MAX_RETRIES="0")
    box.fail_next(3, 503)
    first = cli(env, "replay", str(export))
    assert first.returncode == 1
    assert "failed          track 3" in first.stdout
    assert len(box.track_events()) == 17
    second = cli(env, "replay", str(export))
    assert second.returncode == 0, second.stderr
    assert "in_checkpoint 17" in second.stdout
    assert mids(box) == {f"m{n}": 1 for n in range(20)}


def test_filters_by_call_and_time_and_keeps_account_links(box: Sandbox, tmp_path: Path) -> None:
    day = timedelta(days=1)
    export = write_export(
        tmp_path / "export.jsonl",
        [
            group("g1", "u1", "acme", name="Acme"),
            track("early", at=NOW - 3 * day),
            track("inside", at=NOW - day),
            track("late", at=NOW),
            identify("i1", "u1", plan="pro"),
        ],
    )
    env = env_for(box, tmp_path)
    since, until = iso(NOW - 2 * day), iso(NOW - day / 2)
    done = cli(env, "replay", str(export), "--calls", "track", "--since", since, "--until", until)
    assert done.returncode == 0, done.stderr
    assert mids(box) == {"inside": 1}
    assert box.track_events()[0]["accountId"] == "acme"  # the group line was not sent, but still linked
    assert box.visitors() == {} and box.accounts() == {}
    assert "--calls:group 1" in done.stdout and "before_--since 1" in done.stdout
    other = cli(env, "replay", str(export), "--calls", "identify")
    assert other.returncode == 2
    assert "written with other --calls/--since/--until/--allow-old flags" in other.stderr


def test_old_events_are_sent_only_with_allow_old(box: Sandbox, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.jsonl", [track("old", at=NOW - timedelta(days=30))])
    env = env_for(box, tmp_path)
    skipped = cli(env, "replay", "--no-checkpoint", str(export))
    assert skipped.returncode == 0
    assert "too_old 1" in skipped.stdout
    assert box.track_events() == []
    sent = cli(env, "replay", "--no-checkpoint", "--allow-old", str(export))
    assert sent.returncode == 0
    assert mids(box) == {"old": 1}


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["replay", "gone.jsonl"], {}, "pendo-plugin: cannot read gone.jsonl: No such file or directory"),
        (["replay", "x", "--since", "yesterday"], {}, "--since 'yesterday' is not an ISO 8601 time"),
        (["replay", "x", "--calls", "page"], {}, "--calls 'page' must list some of identify,group,track"),
        (
            ["replay", "x"],
            {"PENDO_TRACK_SECRET": "", "PENDO_INTEGRATION_KEY": ""},
            "PENDO_TRACK_SECRET and PENDO_INTEGRATION_KEY are not set",
        ),
        (["replay", "x"], {"PENDO_REGION": "mars"}, "PENDO_REGION='mars' is not one of"),
        (["replay"], {}, "the following arguments are required: FILE"),
    ],
)
def test_errors_are_one_sentence(
    box: Sandbox, tmp_path: Path, args: list[str], extra: dict[str, str], message: str
) -> None:
    write_export(tmp_path / "x", [track("m1")])
    env = env_for(box, tmp_path, **extra)
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert box.counts()["requests"] == 0


def test_replay_uses_the_live_rollout(box: Sandbox, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.jsonl", [track("in"), track("out", user="u9")])
    env = env_for(box, tmp_path, PENDO_DENY_VISITORS="u9")
    started = time.monotonic()
    done = cli(env, "replay", str(export))
    assert done.returncode == 0
    assert mids(box) == {"in": 1}
    assert "off_deny_visitor 1" in done.stdout
    assert time.monotonic() - started < 30


def test_an_older_identify_later_in_the_export_does_not_overwrite_a_newer_one(
    box: Sandbox, tmp_path: Path
) -> None:
    """Exports are not always in time order: per field, the value of the newest message wins, merged
    in one batch or (one row per batch here) sent in batches one after the other."""
    newer = identify("m1", "u1", plan="pro")
    older = identify("m2", "u1", plan="free", email="ada@example.com")
    older["timestamp"] = iso(NOW - timedelta(hours=1))
    export = write_export(tmp_path / "export.jsonl", [newer, older])
    for batch_size in ("250", "1"):
        box.reset()
        env = env_for(box, tmp_path, PENDO_METADATA_BATCH_SIZE=batch_size)
        done = cli(env, "replay", "--no-checkpoint", str(export))
        assert done.returncode == 0, done.stderr
        assert box.visitors() == {"u1": {"plan": "pro", "email": "ada@example.com"}}, batch_size
