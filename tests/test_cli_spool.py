"""``pendo-plugin spool status|drain|purge`` on real spool files written by ``delivery.spool.Spool``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env
from tests.sending import track_event, visitor_row

SECRET = "spool-track-secret-1"
KEY = "spool-integration-key-1"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET, integration_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", 64 * 1024 * 1024)


def env_for(box: Sandbox, spool: Spool, **extra: str) -> dict[str, str]:
    return pendo_env(box.url, SECRET, KEY, **{"PENDO_SPOOL_DIR": str(spool.directory), **extra})


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "spool", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def track(event: str) -> payload.Payload:
    return track_event(event, "u1", account="acme")


def fill(spool: Spool) -> None:
    spool.write([track("A"), track("B"), visitor_row("u1", plan="free")])
    spool.write([visitor_row("u1", plan="pro"), payload.metadata("account", "acme", {"seats": 5})])


def test_status_counts_files_payloads_bytes_and_age(box: Sandbox, spool: Spool) -> None:
    fill(spool)
    done = cli(env_for(box, spool), "status")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["spool"] == str(spool.directory)
    assert lines["files"] == "2"
    assert lines["payloads"] == "5"
    assert lines["size"].endswith("bytes")
    assert lines["oldest"].endswith("s")


def test_status_of_an_empty_spool(box: Sandbox, spool: Spool) -> None:
    done = cli(env_for(box, spool), "status")
    assert done.returncode == 0
    assert "files     0" in done.stdout


def test_drain_sends_everything_and_deletes_the_files(box: Sandbox, spool: Spool) -> None:
    fill(spool)
    done = cli(env_for(box, spool), "drain")
    assert done.returncode == 0, done.stderr
    assert [event["event"] for event in box.track_events()] == ["A", "B"]
    assert box.visitors() == {"u1": {"plan": "pro"}}  # the newer file's value wins
    assert box.accounts() == {"acme": {"seats": 5}}
    assert spool.files() == []
    assert "sent      account 1, track 2, visitor 2" in done.stdout
    assert "left      0 file(s), 0 payload(s)" in done.stdout


def test_drain_keeps_only_what_failed(box: Sandbox, spool: Spool) -> None:
    spool.write([track("A"), track("B"), visitor_row("u1", plan="pro")])
    env = env_for(box, spool, PENDO_MAX_RETRIES="0")
    box.fail_next(1, 503)
    first = cli(env, "drain")
    assert first.returncode == 1
    assert "left      1 file(s), 1 payload(s)" in first.stdout
    assert len(box.track_events()) == 1 and box.visitors() == {"u1": {"plan": "pro"}}
    second = cli(env, "drain")
    assert second.returncode == 0
    assert sorted(event["event"] for event in box.track_events()) == ["A", "B"]
    assert len(box.metadata_requests("visitor")) == 1  # the metadata row was not sent twice
    assert spool.files() == []


def test_drain_leaves_a_file_another_process_is_sending(box: Sandbox, spool: Spool) -> None:
    held = spool.write_claimed([track("busy")])
    assert held is not None
    spool.write([track("free")])
    try:
        done = cli(env_for(box, spool), "drain")
    finally:
        held.release()
    assert done.returncode == 1
    assert [event["event"] for event in box.track_events()] == ["free"]
    assert [path.name for path in spool.files()] == [held.path.name]


def test_drain_keeps_payloads_it_has_no_secret_for(box: Sandbox, spool: Spool) -> None:
    spool.write([track("A"), visitor_row("u1", plan="pro")])
    done = cli(env_for(box, spool, PENDO_TRACK_SECRET=""), "drain")
    assert done.returncode == 1
    assert box.visitors() == {"u1": {"plan": "pro"}}
    assert box.track_events() == []
    assert spool.status().items == 1


def test_purge_refuses_without_a_terminal_unless_yes(box: Sandbox, spool: Spool) -> None:
    fill(spool)
    env = env_for(box, spool)
    refused = cli(env, "purge")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "pendo-plugin: refusing to purge without confirmation: stdin is not a terminal (pass --yes)"
    )
    assert len(spool.files()) == 2
    purged = cli(env, "purge", "--yes")
    assert purged.returncode == 0
    assert f"Purged 5 payload(s) from {spool.directory}." in purged.stdout
    assert spool.files() == []
    assert box.counts()["requests"] == 0


@pytest.mark.parametrize(
    ("action", "extra", "message"),
    [
        ("status", {"PENDO_SPOOL_DIR": "off"}, "the spool is off (PENDO_SPOOL_DIR=off)"),
        ("drain", {"PENDO_TRACK_SECRET": "", "PENDO_INTEGRATION_KEY": ""}, "nothing in the spool can be"),
        ("drain", {"PENDO_SPOOL_MAX_MB": "lots"}, "PENDO_SPOOL_MAX_MB='lots' is not a number"),
        ("drain", {"PENDO_ENABLED": "false"}, "PENDO_ENABLED is false, so the spool is left as it is"),
        ("empty", {}, "argument action: invalid choice: 'empty'"),
    ],
)
def test_errors_are_one_sentence(
    box: Sandbox, spool: Spool, action: str, extra: dict[str, str], message: str
) -> None:
    fill(spool)
    done = cli(env_for(box, spool, **extra), action)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert len(spool.files()) == 2
