"""Per-payload acknowledgement: a process killed while part of a spool file is settled leaves a log of
what Pendo acknowledged beside the file, and the next process resends only the rest.

Real interpreters with the plugin autoloaded from PENDO_* variables, a real Segment client, the
sandbox on 127.0.0.1, real spool files and a real SIGKILL.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pendo_plugin import counters
from pendo_plugin.delivery.acks import ack_path
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app, start_app

N = 20


def delivered(sandbox: Sandbox) -> Counter[int]:
    """How many times each event (by its property n) reached Pendo."""
    return Counter(event["properties"]["n"] for event in sandbox.track_events())


def test_kill_9_before_the_metadata_batch_leaves_resends_no_delivered_track_event(
    sandbox: Sandbox, spool_dir: Path
) -> None:
    """One identify and 20 track calls land in one spool file; the track events are delivered, the
    identify waits for its batch interval, and the process is killed. The next process sends the
    identify only: no track event twice."""
    script = app_script(
        f"""
        import threading
        client = make_client()
        client.identify("u1", {{"plan": "pro"}})
        send(client, {N})
        deadline = time.monotonic() + 15
        while pendo_plugin.stats().get("sent:track", 0) < {N} and time.monotonic() < deadline:
            time.sleep(0.01)
        report(phase="track delivered")
        threading.Event().wait(60)  # the metadata batch waits for its 30 s interval: killed before
        """
    )
    app = start_app(script, app_env(sandbox.url, spool_dir, sandbox.url, batch_interval=30))
    try:
        line = app.stdout.readline() if app.stdout else ""
        assert json.loads(line)["stats"].get("sent:track") == N, line
    finally:
        app.kill()  # SIGKILL: no atexit, no drain; the kernel drops the spool locks
        app.wait(10)
    assert delivered(sandbox) == Counter(range(N))
    assert "u1" not in sandbox.visitors()
    files = Spool(spool_dir, 1 << 40).files()
    assert files and all(ack_path(path).exists() for path in files), "acknowledgements beside the files"

    second = run_app(
        app_script("report(flushed=pendo_plugin.flush(15))"), app_env(sandbox.url, spool_dir, sandbox.url)
    )
    assert second.returncode == 0, second.describe()
    stats = second.reports()[-1]["stats"]
    after = delivered(sandbox)
    duplicates = sum(after.values()) - len(after)
    assert duplicates == 0, f"{duplicates} delivered track event(s) sent again: {second.describe()}"
    assert after == Counter(range(N))
    assert sandbox.visitors()["u1"] == {"plan": "pro"}, "the metadata is delivered"
    assert stats.get("already_acknowledged") == N, stats
    assert "sent:track" not in stats, stats
    assert list(spool_dir.iterdir()) == [], "files and their logs are gone"


def track_payload(n: int) -> payload.Payload:
    return payload.event("track", {"type": "track", "event": "Ack", "visitorId": "v", "properties": {"n": n}})


def test_a_claim_skips_what_an_earlier_holder_acknowledged_and_ignores_junk_in_the_log(
    tmp_path: Path,
) -> None:
    counters.reset()
    spool = Spool(tmp_path / "spool", 1 << 30)
    first = spool.write_claimed([track_payload(n) for n in range(5)])
    assert first is not None
    first.ack(first.items[1])
    first.ack(first.items[3])
    first.ack(track_payload(9))  # not one of the file's payloads: ignored
    first.release()  # as if the holder died: the file and its log stay
    with ack_path(first.path).open("ab") as log:
        log.write(b"-1\n99\nx\n4")  # junk, out of range, and a torn last line ("4" of "4\n")
    again = spool.claim(first.path)
    assert again is not None
    assert [item.body["properties"]["n"] for item in again.items] == [0, 2, 4]
    assert counters.snapshot()["already_acknowledged"] == 2
    again.done()
    assert list((tmp_path / "spool").iterdir()) == [], "done() removes the file and its log"
    counters.reset()


def test_a_symlinked_log_acknowledges_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 30)
    path = spool.write([track_payload(n) for n in range(3)])
    assert path is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"0\n1\n2\n")
    ack_path(path).symlink_to(elsewhere)
    claim = spool.claim(path)
    assert claim is not None and len(claim.items) == 3, "every payload is sent again, none lost"
    claim.release()
