"""The spool on real files: written ahead and locked before sending, owner-only, no secrets in
names, a size cap that drops the oldest (counted), and several processes sharing one directory
without ever sending the same file twice."""

from __future__ import annotations

import fcntl
import os
import re
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, finish_app, start_app, wait_until
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

NAME = re.compile(r"^\d{20}-\d+-[0-9a-f]{8}-n\d+\.jsonl$")


def send(client: Any, count: int, user: str = "u1", start: int = 0) -> None:
    for n in range(start, start + count):
        client.track(user_id=user, event="Reliability", properties={"n": n})


def delivered(sandbox: Sandbox) -> Counter[int]:
    return Counter(event["properties"]["n"] for event in sandbox.track_events())


def locked_by_someone(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def track_payload(n: int) -> payload.Payload:
    """A payload as the router writes it to the spool."""
    body = {
        "type": "track",
        "event": "Reliability",
        "visitorId": "spooled",
        "timestamp": int(time.time() * 1000),
        "properties": {"n": n},
        "context": {},
    }
    return payload.event("track", body)


def test_payloads_are_written_ahead_fsynced_and_locked_before_any_is_sent(
    plugin: Sandbox, segment_client: Any, spool_dir: Path
) -> None:
    plugin.set_latency(1.0)
    send(segment_client, 10)
    assert wait_until(lambda: pendo_plugin.stats().get("written_ahead") == 10)
    files = Spool(spool_dir, 1 << 40).files()
    assert plugin.track_events() == [], "nothing was acknowledged yet"
    assert sum(int(path.stem.rsplit("-n", 1)[1]) for path in files) == 10
    assert all(locked_by_someone(path) for path in files), "the sending process holds every file"
    assert pendo_plugin.flush(10)
    assert delivered(plugin) == Counter(range(10))
    assert Spool(spool_dir, 1 << 40).files() == [], "deleted once Pendo acknowledged everything"


def test_spool_files_are_owner_only_and_their_names_and_contents_hold_no_secret(
    plugin: Sandbox, segment_client: Any, spool_dir: Path, closed_url: str
) -> None:
    pendo_plugin.configure(data_url=closed_url, api_url=closed_url, max_retries=0)
    send(segment_client, 5)
    segment_client.flush()  # returns once the events are safe in the spool
    files = sorted(spool_dir.iterdir())
    assert files and all(NAME.match(path.name) for path in files), files
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        for secret in (TRACK_SECRET, INTEGRATION_KEY):
            assert secret not in path.name and secret not in text
    assert Spool(spool_dir, 1 << 40).status().items == 5
    stats = pendo_plugin.stats()
    assert stats["spooled"] == 5 and not [name for name in stats if name.startswith("dropped")], stats


def test_size_cap_drops_the_oldest_files_and_counts_them(tmp_path: Path) -> None:
    counters.reset()
    spool = Spool(tmp_path / "spool", max_bytes=1500)
    written = [spool.write([track_payload(n) for n in range(batch * 3, batch * 3 + 3)]) for batch in range(5)]
    held = spool.write_claimed([track_payload(99)])  # a file being sent right now is never removed
    assert held is not None
    for _ in range(3):
        spool.write([track_payload(100)])
    remaining = spool.files()
    assert held.path in remaining
    assert sum(path.stat().st_size for path in remaining) <= 1500 + held.path.stat().st_size
    assert written[0] not in remaining, "the oldest went first"
    removed = [path for path in written if path not in remaining]
    assert counters.snapshot()["dropped:spool_full"] == 3 * len(removed)
    assert [path for path in remaining if path in written] == written[len(removed) :], "oldest first"
    held.done()
    counters.reset()


def test_a_refused_key_keeps_the_events_for_a_corrected_one(
    plugin: Sandbox, segment_client: Any, spool_dir: Path
) -> None:
    plugin.fail_next(1000, 403, path_prefix="/data/track")  # Pendo refuses the key, again and again
    send(segment_client, 3)
    segment_client.flush()
    stats = pendo_plugin.stats()
    assert stats["auth_failed:http_403:track"] >= 3
    assert not [name for name in stats if name.startswith("dropped")], stats
    assert plugin.track_events() == []
    assert Spool(spool_dir, 1 << 40).status().items == 3
    plugin.reset()  # the key is accepted again
    assert pendo_plugin.flush(10)  # flush replays the spool
    assert delivered(plugin) == Counter(range(3))
    assert Spool(spool_dir, 1 << 40).files() == []


def test_two_processes_draining_one_spool_never_send_a_file_twice(sandbox: Sandbox, spool_dir: Path) -> None:
    files = 12
    spool = Spool(spool_dir, 1 << 40)
    for batch in range(files):
        spool.write([track_payload(batch * 5 + i) for i in range(5)])
    total = files * 5
    sandbox.set_latency(0.25)  # each file takes a while, so both processes are draining at once
    script = app_script("report(flushed=pendo_plugin.flush(30))")
    env = app_env(sandbox.url, spool_dir, sandbox.url)
    started = time.monotonic()
    apps = [start_app(script, env) for _ in range(2)]
    runs = [finish_app(app, started) for app in apps]
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert run.reports()[-1]["flushed"] is True, run.describe()
    seen = delivered(sandbox)
    assert seen == Counter(range(total)), f"duplicates: {sorted(n for n, c in seen.items() if c > 1)}"
    shares = [run.reports()[-1]["stats"].get("unspooled", 0) for run in runs]
    assert sum(shares) == total
    assert all(share > 0 for share in shares), f"both processes drained: {shares}"
    assert spool.files() == []


def test_pendo_down_parks_events_on_disk_and_the_replay_delivers_them_when_back(
    plugin: Sandbox, segment_client: Any, closed_url: str, spool_dir: Path
) -> None:
    pendo_plugin.configure(data_url=closed_url, max_retries=0, max_concurrency=2)
    send(segment_client, 300, user="down")
    # after 32 refused connections in a row the breaker opens: what waits for a slot stays on disk only
    assert wait_until(lambda: pendo_plugin.stats().get("parked", 0) > 0, timeout=20)
    assert pendo_plugin.flush(20)  # everything is either sent or safe on disk
    assert Spool(spool_dir, 10**9).status().items == 300
    assert "sent:track" not in pendo_plugin.stats()

    pendo_plugin.configure(data_url=plugin.url)  # Pendo is back; the spool replay finds out
    assert pendo_plugin.flush(20)
    assert delivered(plugin) == Counter(range(300))
    assert Spool(spool_dir, 10**9).status().items == 0
