"""Bounded memory and private folders (issue 22): hostile fleet flags (1 MB values rotated, a 100 MB
value, a key of the wrong type) read from a real redis-server, 20,000 unknown trait names, and every
folder the plugin creates under umask 000."""

from __future__ import annotations

import asyncio
import logging
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin import config, counters, logs
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, MAX_VALUE_BYTES, FlagPoller
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.fleet_redis import RedisServer

MB = 1 << 20


@pytest.fixture
def clean_state() -> Iterator[None]:
    counters.reset()
    logs.forget()
    config.configure(reset=True)
    try:
        yield
    finally:
        config.configure(reset=True)
        counters.reset()
        logs.forget()


def _poll(url: str, times: int = 1, before_each: object = None) -> RedisLink:
    """``times`` polls of the fleet flags, as a worker makes them, on one link."""

    async def run() -> RedisLink:
        link = RedisLink(url)
        poller = FlagPoller()
        try:
            for n in range(times):
                if callable(before_each):
                    before_each(n)
                await poller.poll(link)
        finally:
            await link.close()
        return link

    return asyncio.run(run())


def test_a_100_mb_flag_value_never_leaves_redis(
    redis_server: RedisServer, clean_state: None, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.hset(FLAGS_KEY, mapping={"deny_visitors": b"x" * (100 * MB), "rollout_percent": "40"})
    tracemalloc.start()
    try:
        with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
            link = _poll(redis_server.url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * MB, f"peak {peak / MB:.1f} MB"  # the value stayed in Redis
    assert not link.down
    assert config.current().rollout.percent == 40  # the good flag applies
    stats = counters.snapshot()
    assert stats["fleet_flags:invalid"] == 1 and stats["fleet_flags:applied"] == 1
    assert any("104,857,600 bytes" in record.getMessage() for record in caplog.records)


def test_flag_values_rotated_every_poll_log_bounded_lines_and_keys(
    redis_server: RedisServer, clean_state: None, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    polls = 40

    def rotate(n: int) -> None:  # a new bad 1 MB value each time (one just under the cap, read and refused)
        client.hset(FLAGS_KEY, "shadow", f"{n:04d}".encode() + b"y" * (MAX_VALUE_BYTES - 4))

    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        link = _poll(redis_server.url, polls, rotate)
    assert not link.down
    assert counters.snapshot()["fleet_flags:invalid"] == polls  # every one counted
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) <= logs.MAX_PER_FAMILY + 1
    assert max(len(line) for line in lines) < 1000  # cut, not a megabyte each
    assert len(logs._seen) <= logs.MAX_PER_FAMILY
    assert sum(len(key) for key in logs._seen) < 100_000


@pytest.mark.parametrize("kind", ["string", "list"])
def test_a_flags_key_of_the_wrong_type_is_an_invalid_flag_not_an_outage(
    redis_server: RedisServer, clean_state: None, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    if kind == "string":
        client.set(FLAGS_KEY, "enabled=false")
    else:
        client.rpush(FLAGS_KEY, "enabled", "false")
    with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
        link = _poll(redis_server.url, 3)
    assert not link.down and link.outages == 0  # Redis answered: the shared budget and stream stay
    stats = counters.snapshot()
    assert stats["fleet_flags:invalid"] == 3
    assert "redis:errors" not in stats
    messages = [record.getMessage() for record in caplog.records]
    assert sum(f"is a {kind}, not a hash" in m for m in messages) == 1  # logged once
    assert not any("not answering" in m for m in messages)


def test_20000_unknown_trait_names_log_a_bounded_number_of_lines(
    clean_state: None, caplog: pytest.LogCaptureFixture
) -> None:
    from pendo_plugin.delivery.senders import Sender
    from tests.sending import sandbox_settings

    traits = {f"unknown_{n}": n for n in range(20_000)}
    traits["plan"] = "pro"
    with Sandbox(track_secret="t-secret-0001", integration_key="i-key-0001",
                 schema={"visitor": {"plan": "string"}, "account": {}}) as box:
        settings = sandbox_settings(box, track_secret="t-secret-0001", integration_key="i-key-0001")

        async def send() -> str:
            sender = Sender.for_settings(settings, asyncio.Event())
            try:
                return await sender.send_metadata("visitor", [("v1", traits)], settings)
            finally:
                await sender.transport.close()

        with caplog.at_level(logging.WARNING, logger="pendo_plugin"):
            assert asyncio.run(send()) == set()  # no row kept for later
        assert box.visitors()["v1"] == {"plan": "pro"}
    assert counters.snapshot()["dropped_field:unknown:visitor"] == 20_000  # every one counted
    warnings = [record for record in caplog.records if "does not exist in Pendo" in record.getMessage()]
    assert len(warnings) == logs.MAX_PER_FAMILY
    assert len(caplog.records) <= logs.MAX_PER_FAMILY + 2
    assert len(logs._seen) <= logs.MAX_PER_FAMILY + 1


UMASK_APP = """
client = make_client()
for n in range(5):
    client.track(user_id="u1", event="Private", properties={"n": n})
client.flush()
pendo_plugin.flush(2)
report()
"""


@pytest.mark.parametrize("where", ["PENDO_SPOOL_DIR", "XDG_STATE_HOME"])
def test_every_folder_the_plugin_creates_is_private_under_umask_000(
    tmp_path: Path, closed_url: str, sandbox: Sandbox, where: str
) -> None:
    base = tmp_path / "made"
    env = app_env(closed_url, base / "a" / "b" / "spool", sandbox.url, max_retries=0)
    if where == "XDG_STATE_HOME":  # the default folder: $XDG_STATE_HOME/pendo_plugin/spool
        del env["PENDO_SPOOL_DIR"]
        env["XDG_STATE_HOME"] = str(base / "state")
    script = "import os; os.umask(0)\n" + app_script(UMASK_APP)
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    created = [base, *base.rglob("*")]
    folders = [path for path in created if path.is_dir()]
    files = [path for path in created if path.is_file()]
    assert len(folders) >= 3 and files, created
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
