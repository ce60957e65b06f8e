"""Shared fixtures: a real Pendo stand-in on loopback, the plugin configured against it, and a real
Segment client whose uploads go to the same stand-in's /v1/batch."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin import config, counters, destination
from pendo_plugin.sandbox import Sandbox
from tests.fleet_redis import redis_server, redis_server_aof  # noqa: F401  (fixtures)
from tests.fleet_topologies import redis_cluster, redis_cluster_with_replicas, replica_set  # noqa: F401  (fixtures)

TRACK_SECRET = "test-track-secret-0001"
INTEGRATION_KEY = "test-integration-key-0001"
CLOCK_DIR = Path(__file__).parent / "clock"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-ahead-days",
        type=float,
        default=0.0,
        help="run with the wall clock moved this many days ahead (this process and its Python children)",
    )


def pytest_configure(config: pytest.Config) -> None:
    days = config.getoption("--clock-ahead-days")
    if not days:
        return
    import time_machine

    time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days), tick=True).start()
    os.environ["TEST_CLOCK_AHEAD_DAYS"] = str(days)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLOCK_DIR), os.environ.get("PYTHONPATH")]))


def pytest_report_header(config: pytest.Config) -> str | None:
    days = config.getoption("--clock-ahead-days")
    if not days:
        return None
    return f"wall clock moved ahead {days:g} days: now {dt.datetime.now(dt.timezone.utc).isoformat()}"



@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running Pendo (and Segment) stand-in on 127.0.0.1."""
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        yield server


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """A spool directory of this test's own."""
    return tmp_path / "spool"


def stop_runtime() -> None:
    """Shut the in-process delivery runtime down so the next test starts fresh."""
    current = destination._runtime
    if current is not None:
        current.shutdown(5.0)
    destination._runtime = None


@pytest.fixture
def plugin(sandbox: Sandbox, spool_dir: Path) -> Iterator[Sandbox]:
    """The plugin active in this process, writing to ``sandbox``; reset afterwards."""
    stop_runtime()
    counters.reset()
    pendo_plugin.configure(
        reset=True,
        track_secret=TRACK_SECRET,
        integration_key=INTEGRATION_KEY,
        data_url=sandbox.url,
        api_url=sandbox.url,
        spool_dir=str(spool_dir),
        max_retries=3,
        retry_budget=10,
        batch_interval=0.05,
    )
    pendo_plugin.install()
    try:
        yield sandbox
    finally:
        stop_runtime()
        config.configure(reset=True)
        counters.reset()


@pytest.fixture
def segment_client(sandbox: Sandbox) -> Iterator[object]:
    """A real ``segment.analytics.Client`` uploading to the stand-in's /v1/batch."""
    from segment.analytics import Client

    client = Client("test-write-key", host=sandbox.url, upload_interval=0.05)
    try:
        yield client
    finally:
        client.flush()
        client.join()


# ----- reliability tests: dead Pendo endpoints on loopback ----------------------------------------


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on: every connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """A loopback URL that accepts connections and never answers: every request hangs until its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# ----- the supported SDKs, one venv each (built once per session) ---------------------------------


@pytest.fixture(scope="session")
def sdk_pythons(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One venv per supported SDK, shared by the whole session: the plugin's wheel plus that SDK
    (built side by side: most of the time goes to pip waiting on its cache and the index)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.sdk_envs import SDKS, build_wheel, sdk_venv

    base = tmp_path_factory.mktemp("sdk-venvs")
    wheel = build_wheel(base / "wheel")
    with ThreadPoolExecutor(len(SDKS)) as pool:
        futures = {key: pool.submit(sdk_venv, base / key, sdk, wheel) for key, sdk in SDKS.items()}
        return {key: future.result() for key, future in futures.items()}
