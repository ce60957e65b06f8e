"""The spool trusts only a private directory of this user, and nothing it reads: symlinks, FIFOs, other
users' files, oversized files and lines, too many lines, deep nesting and torn temp files are refused,
counted and quarantined (or dropped), with real files, real subprocesses and a real sandbox."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pendo_plugin import counters
from pendo_plugin.delivery import spool_files
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.logs import forget
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, pendo_env, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

NOBODY = 65534


@pytest.fixture
def pendo() -> Iterator[Sandbox]:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    counters.reset()
    forget()
    yield
    counters.reset()


def track(event: str, user: str = "u1", **properties: Any) -> payload.Payload:
    body = {"type": "track", "event": event, "visitorId": user, "accountId": "acme",
            "timestamp": int(time.time() * 1000), "properties": properties, "context": {}}
    return payload.event("track", body)


def spool_name(items: int, prefix: str = "00000000000000000001") -> str:
    return f"{prefix}-1-abcd1234-n{items}.jsonl"


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pendo_plugin.cli", *args]
    return subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def events_at(pendo: Sandbox) -> set[str]:
    return {event["event"] for event in pendo.track_events()}


# ----- the directory ----------------------------------------------------------------------------------


def foreign_dir(tmp_path: Path) -> Path:
    """A spool directory of another user, with a payload planted in it."""
    other = tmp_path / "other-user"
    other.mkdir(mode=0o700)
    (other / spool_name(1)).write_text(json.dumps(track("Planted").as_dict()) + "\n")
    os.chown(other / spool_name(1), NOBODY, NOBODY)
    os.chown(other, NOBODY, NOBODY)
    return other


@pytest.mark.parametrize("shape", ["world_writable", "symlink_to_another_users_dir", "another_users_dir"])
def test_an_unsafe_spool_dir_is_refused_for_the_default_one(
    pendo: Sandbox, tmp_path: Path, shape: str
) -> None:
    if shape != "world_writable" and os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    if shape == "world_writable":
        unsafe = tmp_path / "shared"
        unsafe.mkdir()
        unsafe.chmod(0o777)
        (unsafe / spool_name(1)).write_text(json.dumps(track("Planted").as_dict()) + "\n")
    elif shape == "symlink_to_another_users_dir":
        unsafe = tmp_path / "link"
        unsafe.symlink_to(foreign_dir(tmp_path))
    else:
        unsafe = foreign_dir(tmp_path)
    state = tmp_path / "state"
    env = {**app_env(pendo.url, unsafe, pendo.url), "XDG_STATE_HOME": str(state)}
    script = app_script(
        """
        client = make_client()
        send(client, 3, event="Mine")
        client.flush()
        pendo_plugin.flush()
        report()
        """
    )
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    assert "Planted" not in events_at(pendo), "a payload planted in an unsafe directory was sent"
    assert events_at(pendo) == {"Mine"}
    lines = [line for line in run.stderr.splitlines() if "PENDO_SPOOL_DIR" in line]
    assert len(lines) == 1 and "using" in lines[0], run.stderr
    assert run.reports()[-1]["stats"]["spool_dir_refused"] == 1
    assert (state / "pendo_plugin" / "spool").is_dir(), "the default private directory was not used"
    assert sorted(p.name for p in unsafe.iterdir()) == [spool_name(1)], "the unsafe directory was written to"


def test_a_private_directory_of_this_user_is_used(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir(mode=0o700)
    assert Spool(directory, 1 << 20).directory == directory
    assert spool_files.directory_problem(directory) is None
    directory.chmod(0o720)
    assert "group or others" in (spool_files.directory_problem(directory) or "")


# ----- the files --------------------------------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    return Spool(directory, 1 << 30)


def plant_hostile_files(spool: Spool, victim: Path) -> dict[str, str]:
    """Every kind of bad spool entry; name -> the counter kind it must be quarantined as."""
    d = spool.directory
    planted = {}

    def name(n: int, items: int = 1) -> str:
        entry = spool_name(items, prefix=f"{n:020d}")
        return entry

    planted[name(1)] = "symlink"
    (d / name(1)).symlink_to(victim)
    planted[name(2)] = "symlink"
    (d / name(2)).symlink_to("/dev/zero")
    planted[name(3)] = "not_regular"
    os.mkfifo(d / name(3))
    planted[name(4)] = "too_large"
    with open(d / name(4), "wb") as sparse:
        sparse.truncate(spool_files.MAX_FILE_BYTES + 1)
    planted[name(5)] = "line_too_long"
    (d / name(5)).write_bytes(b'{"k":"track","b":"' + b"x" * (spool_files.MAX_LINE_BYTES + 1) + b'"}\n')
    planted[name(6, 10_001)] = "too_many_lines"
    (d / name(6, 10_001)).write_bytes(b"{}\n" * (spool_files.MAX_FILE_ITEMS + 1))
    planted[name(7)] = "too_deep"
    (d / name(7)).write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    planted[name(8)] = "not_json"
    (d / name(8)).write_bytes(b'{"k": "track", \n')
    planted[name(9)] = "foreign_owner"
    (d / name(9)).write_text(json.dumps(track("Foreign").as_dict()) + "\n")
    if os.geteuid() == 0:
        os.chown(d / name(9), NOBODY, NOBODY)
    else:
        del planted[name(9)]
        (d / name(9)).unlink()
    for file in d.iterdir():
        if not file.is_symlink():
            os.chmod(file, 0o600)
    return planted


def test_hostile_spool_files_are_quarantined_not_loaded(spool: Spool, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    victim = tmp_path / "victim.jsonl"
    victim.write_text(json.dumps(track("Victim").as_dict()) + "\n")
    planted = plant_hostile_files(spool, victim)
    good = spool.write([track("Good")])
    assert good is not None
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        claims = list(spool.claims())
    assert time.monotonic() - started < 10, "reading the spool blocked"
    assert [claim.path for claim in claims] == [good]
    assert [item.body["event"] for item in claims[0].items] == ["Good"]
    for claim in claims:
        claim.release()
    stats = counters.snapshot()
    for kind in set(planted.values()):
        assert stats[f"spool_quarantined:{kind}"] == list(planted.values()).count(kind), kind
    quarantine = spool.directory / spool_files.QUARANTINE
    assert sorted(p.name for p in quarantine.iterdir()) == sorted(planted)
    assert victim.read_text().count("Victim") == 1, "the symlink's target was touched"
    assert spool.status().quarantined == len(planted)
    assert len(caplog.records) == len(set(planted.values())), "the error lines are not rate-limited"
    assert all("Victim" not in record.getMessage() for record in caplog.records)


def test_recursion_error_quarantines_and_releases_so_drain_and_purge_go_on(
    spool: Spool, pendo: Sandbox
) -> None:
    deep = spool.directory / spool_name(1)
    deep.write_bytes(b"[" * 100_000 + b"\n")
    deep.chmod(0o600)
    deep.with_name(deep.name + ".ack").write_text("0\n")
    spool.write([track("After")])
    env = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SPOOL_DIR=str(spool.directory))
    first = cli(env, "spool", "drain")
    assert first.returncode == 0, first.stdout + first.stderr
    assert events_at(pendo) == {"After"}
    assert not deep.exists() and (spool.directory / spool_files.QUARANTINE / deep.name).exists()
    assert not deep.with_name(deep.name + ".ack").exists()  # its acknowledgement log goes with it
    again = cli(env, "spool", "drain")
    assert again.returncode == 0 and "empty" in again.stdout
    spool.write([track("Later")])
    purged = cli(env, "spool", "purge", "--yes")
    assert purged.returncode == 0 and "Purged 1 payload" in purged.stdout, purged.stdout + purged.stderr


def test_worker_flush_is_not_blocked_by_a_fifo_or_dev_zero(pendo: Sandbox, tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    os.mkfifo(directory / spool_name(1, prefix="0" * 19 + "1"))
    (directory / spool_name(1, prefix="0" * 19 + "2")).symlink_to("/dev/zero")
    script = app_script(
        """
        client = make_client()
        send(client, 3, event="Live")
        client.flush()
        started = time.monotonic()
        flushed = pendo_plugin.flush(timeout=20)
        report(flushed=flushed, seconds=time.monotonic() - started,
               rss_kb=peak_rss_kb())
        """
    )
    run = run_app(script, app_env(pendo.url, directory, pendo.url))
    assert run.returncode == 0, run.describe()
    result = run.reports()[-1]
    assert result["flushed"] is True and result["seconds"] < 10, result
    assert result["rss_kb"] < 400_000, result
    assert events_at(pendo) == {"Live"}
    assert result["stats"]["spool_quarantined:not_regular"] == 1
    assert result["stats"]["spool_quarantined:symlink"] == 1


def test_the_writer_never_writes_what_the_reader_would_refuse(spool: Spool) -> None:
    huge = track("Huge", blob="x" * (spool_files.MAX_LINE_BYTES + 1))
    assert spool.write([huge]) is None
    assert counters.snapshot()["spool_write_failed"] == 1
    assert spool.files() == []


# ----- temp files of writers that died (issue 10, point 6) -------------------------------------------


def make_temp(spool: Spool, events: list[str], *, torn: bool = False, age: float = 60.0) -> Path:
    """A temp file as a writer that died before its rename leaves it."""
    final = spool.write([track(event) for event in events])
    assert final is not None
    temp = final.with_name(f".{final.name}.tmp")
    os.rename(final, temp)
    if torn:
        data = temp.read_bytes()
        temp.write_bytes(data[: len(data) // 2])
    past = time.time() - age
    os.utime(temp, (past, past))
    return temp


def test_temp_files_are_recovered_or_dropped_by_spool_drain(spool: Spool, pendo: Sandbox) -> None:
    complete = make_temp(spool, ["Kept1", "Kept2"])
    torn = make_temp(spool, ["Torn1", "Torn2", "Torn3"], torn=True)
    # empty and dated a minute ahead: one a writer may have created and not locked yet, however slowly
    # the two CLI runs below start
    young = make_temp(spool, ["Young"], age=-60.0)
    young.write_bytes(b"")
    os.utime(young, (time.time() + 60, time.time() + 60))
    env = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SPOOL_DIR=str(spool.directory))
    status = cli(env, "spool", "status")
    assert "unfinished 3 temp file(s)" in status.stdout, status.stdout
    drained = cli(env, "spool", "drain")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert events_at(pendo) == {"Kept1", "Kept2", "Torn1"}  # the torn file's complete line kept
    assert not complete.exists() and not torn.exists()
    assert "half-written" in drained.stderr
    assert young.exists(), "a temp file a live writer may be about to lock was touched"
    assert "unfinished 1 temp file(s)" in cli(env, "spool", "status").stdout


def test_temp_files_are_recovered_when_the_worker_starts(pendo: Sandbox, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 30)
    make_temp(spool, ["Recovered"])
    make_temp(spool, ["Torn1", "Torn2", "Torn3"], torn=True)
    make_temp(spool, ["Fresh"], age=0.0)  # its writer died a moment ago: no grace period to wait out
    script = app_script(
        """
        client = make_client()
        send(client, 1, event="Live")  # the worker starts; no flush() asks it to replay the spool
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "unspooled" not in pendo_plugin.stats():
            time.sleep(0.01)
        report()
        """
    )
    run = run_app(script, app_env(pendo.url, spool.directory, pendo.url))
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert pendo.wait_for(lambda box: events_at(box) == {"Recovered", "Live", "Torn1", "Fresh"}, timeout=10)
    assert stats["dropped:spool_torn"] == 2 and stats["spool_recovered"] == 3, stats
    assert spool_files.temp_files(spool.directory) == []
