"""One hostile value never stops delivery (issue 22): ``createdAt: 10**400`` (a date field in Pendo's
schema) among good rows, through the real SDK in this process, in a spool file an earlier version wrote
(the next process, and ``spool drain``), and in fleet mode's Redis stream; and a 2xx answer nested too
deep is an oddity, not a failure. Real sandbox, real files, real subprocesses, a real redis-server."""

from __future__ import annotations

import http.server
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin import counters
from pendo_plugin.delivery.fleet.entries import STREAM
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app, wait_until
from tests.conftest import INTEGRATION_KEY
from tests.fleet_redis import RedisServer
from tests.http_servers import threaded_server

SCHEMA = {"visitor": {"createdAt": "time", "plan": "string"}, "account": {}}
HUGE = 10**400
GOOD = [f"good-{n}" for n in range(10)]

NEXT_PROCESS_APP = """
client = make_client()
for n in range(3):
    client.identify(f"later-{n}", {"plan": "team"})
client.flush()
pendo_plugin.flush(20)
report()
"""


def _poisoned_spool(directory: Path) -> Path:
    """A spool file as the version before this fix wrote it: the attacker's row between good ones."""
    items = [payload.metadata("visitor", name, {"plan": "pro"}, 1.0) for name in GOOD[:5]]
    items.append(payload.metadata("visitor", "attacker", {"createdAt": HUGE, "plan": "evil"}, 1.0))
    items += [payload.metadata("visitor", name, {"plan": "pro"}, 1.0) for name in GOOD[5:]]
    path = Spool(directory, 1 << 30).write(items)
    assert path is not None and b"1" * 1 + b"0" * 400 in path.read_bytes()
    return path


def _delivered(box: Sandbox) -> set[str]:
    return set(box.visitors())


def test_a_huge_date_trait_among_good_identifies_stops_nothing(
    plugin: Sandbox, segment_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    plugin.set_schema(SCHEMA)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for name in GOOD[:5]:
            segment_client.identify(name, {"plan": "pro"})  # type: ignore[attr-defined]
        segment_client.identify("attacker", {"createdAt": HUGE, "plan": "evil"})  # type: ignore[attr-defined]
        for name in GOOD[5:]:
            segment_client.identify(name, {"plan": "pro"})  # type: ignore[attr-defined]
        segment_client.flush()  # type: ignore[attr-defined]
        assert pendo_plugin.flush(20)
        assert plugin.wait_for(lambda box: set(GOOD) <= _delivered(box), timeout=20)
    assert plugin.visitors()["attacker"] == {"plan": "evil"}  # the bad value left out, the row sent
    stats = pendo_plugin.stats()
    assert stats["fixed:value_huge_int"] == 1
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_a_poisoned_spool_file_of_an_earlier_version_is_delivered_by_the_next_process(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_schema(SCHEMA)
    spool_dir = tmp_path / "spool"
    poisoned = _poisoned_spool(spool_dir)
    run = run_app(app_script(NEXT_PROCESS_APP), app_env(sandbox.url, spool_dir, sandbox.url))
    assert run.returncode == 0, run.describe()
    expected = {*GOOD, "attacker", *(f"later-{n}" for n in range(3))}
    assert sandbox.wait_for(lambda box: expected <= _delivered(box), timeout=20), run.describe()
    assert sandbox.visitors()["attacker"] == {"plan": "evil"}
    assert not poisoned.exists()  # delivered, so deleted: it no longer takes later rows down with it
    stats = run.reports()[-1]["stats"]
    assert stats["fixed:bad_value:visitor"] >= 1
    assert "never retrieved" not in run.stderr


def test_spool_drain_empties_a_poisoned_spool_file(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_schema(SCHEMA)
    spool_dir = tmp_path / "spool"
    poisoned = _poisoned_spool(spool_dir)
    env = app_env(sandbox.url, spool_dir, sandbox.url)
    drained = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "spool", "drain"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert {*GOOD, "attacker"} <= _delivered(sandbox)
    assert not poisoned.exists()


FLEET_APP = """
client = make_client()
client.identify("after", {"plan": "team"})
client.flush()
pendo_plugin.flush(20)
report()
"""


def test_a_poisoned_stream_entry_in_fleet_mode_is_delivered_and_acknowledged(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    sandbox.set_schema(SCHEMA)
    client = redis_server.client()
    items = [payload.metadata("visitor", name, {"plan": "pro"}, 1.0) for name in GOOD]
    items.insert(4, payload.metadata("visitor", "attacker", {"createdAt": HUGE, "plan": "evil"}, 1.0))
    for item in items:  # as the version before this fix appended them
        client.xadd(STREAM, {"p": payload.encode(item)})
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url, redis_url=redis_server.url)
    run = run_app(app_script(FLEET_APP), env)
    assert run.returncode == 0, run.describe()
    assert sandbox.wait_for(lambda box: {*GOOD, "attacker", "after"} <= _delivered(box), timeout=20)
    assert wait_until(lambda: client.xlen(STREAM) == 0, timeout=20), client.xlen(STREAM)


# ----- a 2xx answer nested too deep


class _DeepAnswers(http.server.BaseHTTPRequestHandler):
    """Pendo's metadata and schema endpoints, each answering 200 with JSON nested 100,000 deep."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"[" * 100_000 + b"]" * 100_000
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def deep_server() -> Iterator[str]:
    with threaded_server(_DeepAnswers) as url:
        yield url


def test_a_nested_2xx_metadata_answer_is_an_oddity_not_a_failure(deep_server: str) -> None:
    import asyncio

    from pendo_plugin import config
    from pendo_plugin.delivery.senders import Sender

    counters.reset()
    settings = config.load({"integration_key": INTEGRATION_KEY, "api_url": deep_server, "spool_dir": "off",
                            "schema_check": False, "max_retries": 0}, environ={})

    async def send() -> str:
        sender = Sender.for_settings(settings, asyncio.Event())
        try:
            return await sender.send_metadata("visitor", [("v1", {"plan": "pro"}), ("v2", {"plan": "x"})],
                                              settings)
        finally:
            await sender.transport.close()

    assert asyncio.run(send()) == set()  # Pendo accepted them: no row kept for later, never resent
    stats = counters.snapshot()
    assert stats["sent:visitor"] == 2
    assert stats["answer_unreadable:visitor"] == 1


def test_doctor_reports_a_nested_answer_as_failed_checks_and_goes_on(deep_server: str) -> None:
    env = app_env(deep_server, "off", deep_server)
    done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "unexpected error" not in done.stderr + done.stdout
    assert "RecursionError" not in done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith(("  OK", "  FAIL", "  SKIP"))]
    assert any("PENDO_INTEGRATION_KEY could not be verified" in line for line in lines), done.stdout
    assert any(line.startswith("  OK") and "reachable" in line for line in lines), done.stdout


class _Unreadable(dict):  # type: ignore[type-arg]
    """Row values whose reading raises: what no rule foresaw."""

    def items(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("a value no rule foresaw")


def test_a_row_that_still_raises_is_set_aside_and_its_batch_goes_on(sandbox: Sandbox) -> None:
    import asyncio

    from pendo_plugin.delivery.senders import Sender
    from tests.sending import sandbox_settings

    counters.reset()
    sandbox.set_schema(SCHEMA)
    settings = sandbox_settings(sandbox)
    dropped: list[object] = []
    set_aside: set[str] = set()

    async def send() -> str:
        sender = Sender.for_settings(settings, asyncio.Event())
        sender.on_drop = lambda exc, items: dropped.extend(items)
        rows = [("good-1", {"plan": "pro"}), ("bad", _Unreadable(plan="x")), ("good-2", {"plan": "team"})]
        try:
            return await sender.send_metadata("visitor", rows, settings, set_aside)
        finally:
            await sender.transport.close()

    assert asyncio.run(send()) == set()  # no row kept for later
    assert set(sandbox.visitors()) == {"good-1", "good-2"}
    assert set_aside == {"bad"}
    assert counters.snapshot()["dropped:internal_error:visitor"] == 1
    assert dropped == [{"visitorId": "bad", "values": {"plan": "x"}}]


def test_the_origins_of_a_row_set_aside_are_settled_rejected_the_others_sent(sandbox: Sandbox) -> None:
    """Through the one send path (the dispatcher): what a bug in preparing one row costs is that row."""
    import asyncio

    from pendo_plugin.delivery.dispatch import dispatch
    from pendo_plugin.delivery.rows import FieldClock
    from pendo_plugin.delivery.senders import Sender
    from tests.sending import sandbox_settings

    class BuggySender(Sender):  # stands for a bug in preparing one row
        def _prepare(self, kind, item, schema):  # type: ignore[no-untyped-def]
            if item[0] == "bad":
                raise RuntimeError("a bug")
            return super()._prepare(kind, item, schema)

    counters.reset()
    settings = sandbox_settings(sandbox)
    outcomes: dict[str, str] = {}
    items = [payload.metadata("visitor", name, {"plan": "pro"}) for name in ("good-1", "bad", "good-2")]

    def settle(item: payload.Payload, outcome: str) -> None:
        outcomes[item.row_id] = outcome

    async def send() -> None:
        base = Sender.for_settings(settings, asyncio.Event())
        sender = BuggySender(base.transport, base.limiter, base.stopping)
        try:
            await dispatch(sender, items, settings, settle, FieldClock())
        finally:
            await sender.transport.close()

    asyncio.run(send())
    assert outcomes == {"good-1": "sent", "bad": "rejected", "good-2": "sent"}
    assert set(sandbox.visitors()) == {"good-1", "good-2"}
