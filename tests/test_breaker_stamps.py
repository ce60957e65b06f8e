"""An outside review of issue 22's second round: a spool line or fleet stream entry whose ``ts`` is an
integer past the float range (``math.isfinite`` raises ``OverflowError`` on it) must not stop the file,
the spool drain or the stream. Real parts: the sandbox, spool files on disk, ``pendo-plugin spool drain``
in a subprocess, a real ``redis-server``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.fleet_redis import RedisServer

HUGE = "1" + "0" * 400  # an integer JSON parses whole, past the float range
GOOD = [f"old-{n}" for n in range(5)]
POISONED = GOOD[2]


def _row(visitor: str, stamp: str = "5") -> bytes:
    """A visitor row's spool line (the stream's entry), its ``ts`` written as given."""
    line = payload.encode(payload.metadata("visitor", visitor, {"plan": "pro"}, 5))
    return line.replace(b'"ts":5}', b'"ts":' + stamp.encode() + b"}")


def _poisoned_spool_file(directory: Path) -> Path:
    """A spool file whose third line carries a huge ``ts``; the others are good."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Spool(directory, 10**8).write([payload.metadata("visitor", v, {"plan": "pro"}, 5) for v in GOOD])
    assert path is not None
    lines = path.read_bytes().split(b"\n")[:-1]
    lines[GOOD.index(POISONED)] = _row(POISONED, HUGE)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("stamp", [HUGE, "-" + HUGE, "1" + "0" * 5000, "1e400", '"5"', "null", "true"])
def test_a_line_with_any_ts_decodes_or_is_refused_never_raises(stamp: str) -> None:
    decoded = payload.decode(_row("v1", stamp))
    assert decoded is None or (decoded.row_id == "v1" and isinstance(decoded.stamp, float | int))


def test_the_next_process_delivers_a_spool_file_with_a_huge_ts(
    plugin: Sandbox, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _poisoned_spool_file(spool_dir)
    with caplog.at_level(logging.ERROR):
        assert pendo_plugin.flush(20)
        assert plugin.wait_for(lambda box: set(GOOD) <= set(box.visitors()), timeout=15)
        assert wait_until(lambda: not path.exists(), timeout=10)
    assert "OverflowError" not in caplog.text


def test_spool_drain_empties_a_spool_file_with_a_huge_ts(sandbox: Sandbox, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    path = _poisoned_spool_file(spool_dir)
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PENDO_")},
        "PENDO_TRACK_SECRET": TRACK_SECRET,
        "PENDO_INTEGRATION_KEY": INTEGRATION_KEY,
        "PENDO_DATA_URL": sandbox.url,
        "PENDO_API_URL": sandbox.url,
        "PENDO_SPOOL_DIR": str(spool_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "spool", "drain"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "OverflowError" not in done.stdout + done.stderr
    assert set(GOOD) <= set(sandbox.visitors())
    assert not path.exists()


def test_a_stream_entry_with_a_huge_ts_stops_nothing(plugin: Sandbox, redis_server: RedisServer) -> None:
    client = redis_server.client()
    for visitor in GOOD:
        client.xadd(STREAM, {"p": _row(visitor, HUGE if visitor == POISONED else "5")})
    now_ms = int(time.time() * 1000)
    track = {"type": "track", "event": "After", "visitorId": "u9", "timestamp": now_ms, "properties": {}}
    track["context"] = {}
    client.xadd(STREAM, {"p": json.dumps({"k": "track", "b": track}).encode()})
    pendo_plugin.configure(redis_url=redis_server.url)

    assert pendo_plugin.flush(20)
    assert plugin.wait_for(
        lambda box: set(GOOD) <= set(box.visitors()) and box.counts()["track_events"] == 1, timeout=15
    )
    assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=10)
