"""Secrets never follow a redirect: Pendo answering 3xx with a ``Location`` on another host (a second
loopback server here) gets no request at all to that host, from the worker, ``doctor``, ``replay`` or
``spool drain``; the 3xx is a failure (logged once with the Location host only, counted), never ``sent``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, pendo_env, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

TOKEN = "location-token-do-not-log"


@pytest.fixture
def elsewhere() -> Iterator[Sandbox]:
    """The host a redirect points to: it must never see a request."""
    with Sandbox() as server:
        yield server


@pytest.fixture
def pendo() -> Iterator[Sandbox]:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        yield server


def redirect_everything(pendo: Sandbox, elsewhere: Sandbox, status: int) -> str:
    """Every Pendo endpoint answers ``status`` pointing at ``elsewhere``; the Location host as logged."""
    location = {"Location": f"{elsewhere.url}/data/track?token={TOKEN}"}
    for prefix in ("/data/", "/api/"):
        pendo.fail_next(10_000, status, path_prefix=prefix, headers=location)
    return elsewhere.url.removeprefix("http://")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def track_message(n: int) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Redirected",
        "userId": "u1",
        "messageId": f"m{n}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "properties": {"n": n},
    }


@pytest.mark.parametrize("status", [302, 307])
def test_worker_never_follows_a_redirect(
    pendo: Sandbox, elsewhere: Sandbox, tmp_path: Path, status: int
) -> None:
    target = redirect_everything(pendo, elsewhere, status)
    spool_dir = tmp_path / "spool"
    script = app_script(
        """
        client = make_client()
        send(client, 5)
        client.identify(user_id="u1", traits={"plan": "pro"})
        client.flush()
        pendo_plugin.flush()
        report()
        """
    )
    env = app_env(pendo.url, spool_dir, pendo.url, max_retries=1, retry_budget=2, batch_interval=0.05)
    run = run_app(script, env)
    assert run.returncode == 0, run.describe()
    stats = run.reports()[-1]["stats"]
    assert elsewhere.request_log() == [], "a request followed the redirect"
    assert stats.get(f"redirect_refused:http_{status}", 0) >= 1, stats
    assert not any(name.startswith("sent:") for name in stats), stats
    redirect_lines = [line for line in run.stderr.splitlines() if "redirect" in line]
    assert redirect_lines and all(target in line for line in redirect_lines), run.stderr
    assert TOKEN not in run.stderr and TRACK_SECRET not in run.stderr
    assert len(redirect_lines) == len(set(redirect_lines)), "the redirect line repeats"
    waiting = Spool(spool_dir, 1 << 30).status()
    assert waiting.items == 6, "a redirected payload left the spool"


def test_doctor_never_follows_a_redirect(pendo: Sandbox, elsewhere: Sandbox) -> None:
    target = redirect_everything(pendo, elsewhere, 302)
    env = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY)
    result = cli(env, "doctor", "--send-test-event")
    assert result.returncode == 1, result.stdout + result.stderr
    assert elsewhere.request_log() == []
    assert f"redirect to {target} refused" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_replay_never_follows_a_redirect(pendo: Sandbox, elsewhere: Sandbox, tmp_path: Path) -> None:
    redirect_everything(pendo, elsewhere, 307)
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(track_message(n)) + "\n" for n in range(3)))
    env = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_MAX_RETRIES="1", PENDO_RETRY_BUDGET="2")
    result = cli(env, "replay", str(export))
    assert result.returncode == 1, result.stdout + result.stderr
    assert elsewhere.request_log() == []
    checkpoint = json.loads((tmp_path / "export.jsonl.pendo-checkpoint").read_text())
    acked = checkpoint["files"][str(export)]
    assert acked == {"line": 0, "acked": []}, "a redirected line was recorded as delivered"
    assert TOKEN not in result.stdout + result.stderr


def test_spool_drain_never_follows_a_redirect(pendo: Sandbox, elsewhere: Sandbox, tmp_path: Path) -> None:
    redirect_everything(pendo, elsewhere, 302)
    spool = Spool(tmp_path / "spool", 1 << 30)
    body = {"type": "track", "event": "Spooled", "visitorId": "u1", "timestamp": int(time.time() * 1000)}
    spool.write([payload.event("track", body), payload.metadata("visitor", "u1", {"plan": "x"})])
    env = pendo_env(pendo.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SPOOL_DIR=str(spool.directory),
                    PENDO_MAX_RETRIES="1", PENDO_RETRY_BUDGET="2")
    result = cli(env, "spool", "drain")
    assert result.returncode == 1, result.stdout + result.stderr
    assert elsewhere.request_log() == []
    assert spool.status().items == 2, "a redirected payload left the spool"
    assert TOKEN not in result.stdout + result.stderr
