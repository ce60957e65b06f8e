"""``pendo-plugin forget`` on real spool files (``delivery.spool.Spool``) and a real ``redis-server`` stream,
run as the operator runs it: a subprocess of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pendo_plugin.delivery.fleet.entries import GROUP, STREAM, decode
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import encode
from tests.apps import pendo_env
from tests.fleet_redis import RedisServer, free_port
from tests.sending import track_event, visitor_row

CLOSED = "http://127.0.0.1:9"  # forget never talks to Pendo


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", 64 * 1024 * 1024)


def forget(spool: Spool, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = pendo_env(CLOSED, "forget-secret-01", "forget-key-01", PENDO_SPOOL_DIR=str(spool.directory),
                            **env)
    return subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "forget", *args], env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def webhook(user: str) -> payload.Payload:
    return payload.event("webhook", {"type": "track", "userId": user, "event": "Raw", "properties": {}})


def waiting(spool: Spool) -> list[tuple[str, str]]:
    """(kind, visitor or row id) of every payload left in the spool."""
    left = []
    for path in spool.files():
        for line in path.read_bytes().splitlines():
            item = payload.decode(line)
            assert item is not None
            left.append((item.kind, item.body.get("visitorId") or item.row_id or item.body.get("userId")))
    return sorted(left)


def fill(spool: Spool) -> None:
    spool.write([track_event("A", "alice"), track_event("B", "bob"), visitor_row("alice", plan="pro")])
    spool.write([visitor_row("bob", plan="free"), payload.metadata("account", "acme", {"seats": 5}),
                 webhook("alice")])
    spool.write([track_event("C", "carol")])


def test_forget_removes_every_waiting_payload_of_the_visitors(spool: Spool, tmp_path: Path) -> None:
    fill(spool)
    files_before = spool.files()
    ids = tmp_path / "erase.txt"
    ids.write_text("# erasure requests\nalice\n")

    done = forget(spool, f"@{ids}", "nobody", "--yes")

    assert done.returncode == 0, done.stderr
    assert "alice: 3 payload(s) in the spool" in done.stdout
    assert "nobody: 0 payload(s) in the spool" in done.stdout
    assert "Removed 3 payload(s) from the spool." in done.stdout
    assert waiting(spool) == [("account", "acme"), ("track", "bob"), ("track", "carol"), ("visitor", "bob")]
    assert files_before[2] in spool.files()  # a file without them is left as it was
    assert [path.name.split("-")[0] for path in spool.files()] == [p.name.split("-")[0] for p in files_before]


def test_forget_asks_first_and_keeps_everything_without_an_answer(spool: Spool) -> None:
    fill(spool)
    done = forget(spool, "alice")
    assert done.returncode == 2
    assert "pass --yes" in done.stderr
    assert ("track", "alice") in waiting(spool)


def test_a_file_another_process_holds_is_reported_and_left(spool: Spool) -> None:
    fill(spool)
    held = spool.claim(spool.files()[0])  # this process holds the spool's lock on the first file
    assert held is not None
    try:
        done = forget(spool, "alice", "--yes")
    finally:
        held.release()
    assert done.returncode == 1
    assert "1 spool file(s) were in use" in done.stdout
    assert waiting(spool).count(("track", "alice")) == 1  # the held file is untouched
    assert ("webhook", "alice") not in waiting(spool)


def test_deny_file_keeps_later_events_out(spool: Spool, tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    first = forget(spool, "mallory", "--yes", "--deny-file", str(deny))
    again = forget(spool, "alice,bob", "mallory", "--yes", "--deny-file", str(deny))

    assert first.returncode == again.returncode == 0, again.stderr
    assert deny.read_text().splitlines() == ["mallory", "alice", "bob"]  # appended, never repeated
    assert deny.stat().st_mode & 0o777 == 0o600
    assert f"PENDO_DENY_VISITORS=@{deny}" in again.stdout

    from pendo_plugin import config
    from pendo_plugin.pendo.rollout import decide

    rules = config.load({"track_secret": "x" * 10, "deny_visitors": f"@{deny}"}, environ={}).rollout
    message = {"type": "track", "userId": "alice", "event": "E"}
    assert not decide(message, rules, visitor_id="alice", account_id=None).send


def test_forget_in_fleet_mode_removes_stream_entries(spool: Spool, redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for item in [track_event("A", "alice"), track_event("B", "bob"), visitor_row("alice", plan="pro"),
                 webhook("alice")] * 300:  # more than one page of the stream
        client.xadd(STREAM, {"p": encode(item)})
    client.xreadgroup(GROUP, "worker-1", {STREAM: ">"}, count=10)  # some are pending with a consumer
    spool.write([track_event("S", "alice")])

    done = forget(spool, "alice", "--yes", PENDO_REDIS_URL=redis_server.url)

    assert done.returncode == 0, done.stderr
    assert "alice: 1 payload(s) in the spool, 900 in the fleet's stream" in done.stdout
    assert "Removed 1 payload(s) from the spool, 900 from the fleet's stream." in done.stdout
    left = [decode(fields) for _, fields in client.xrange(STREAM)]
    assert len(left) == 300 and all(item is not None and item.body["visitorId"] == "bob" for item in left)
    pending = client.xpending(STREAM, GROUP)["pending"]
    assert pending <= 3  # only bob's entries of the first ten are still pending
    assert waiting(spool) == []
    assert json.dumps(done.stdout).count("alice") == 1


def test_a_redis_that_does_not_answer_is_one_sentence_and_the_spool_is_left(spool: Spool) -> None:
    fill(spool)
    before = waiting(spool)
    done = forget(spool, "alice", "--yes", PENDO_REDIS_URL=f"redis://:pw-0001@127.0.0.1:{free_port()}/0")
    assert done.returncode == 2
    assert "did not answer" in done.stderr and "Traceback" not in done.stderr
    assert "pw-0001" not in done.stderr + done.stdout
    assert waiting(spool) == before
