"""Secrets never echo, and operator output is escaped (issue 22): a 403/400 that echoes the request's
headers (app log, ``replay``, ``spool drain``), ``doctor`` with a bad region and passwords in URLs,
escape sequences in each printed field, and the sandbox's secrets from the environment. Real HTTP on
loopback (the sandbox, or a tiny echoing ``http.server``), real subprocesses, a real redis-server."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import pendo_plugin
from pendo_plugin import config, counters
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env, wait_until
from tests.conftest import stop_runtime
from tests.fleet_redis import RedisServer
from tests.http_servers import threaded_server

# secrets with shell and regex metacharacters, as an attacker would pick them
TRACK = 'trk"$(id)*.+?[a]\\|;`x-01'
KEY = "key(.*)^$\\1&&rm-02"
ESCAPE = "\x1b[2J"
FORGED = "\nFORGED pendo_plugin: all fine"


def now_ms() -> int:
    return int(time.time() * 1000)


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pendo_plugin.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean(text: str) -> None:
    """No secret in any form, no terminal escape, no forged line."""
    for secret in (TRACK, KEY, json.dumps(TRACK)[1:-1], json.dumps(KEY)[1:-1]):
        assert secret not in text
    assert "\x1b" not in text
    assert "\nFORGED" not in text


class _Echo(http.server.BaseHTTPRequestHandler):
    """Refuses every request, echoing its headers (as some proxies do): 403 for track events, 400 for
    metadata, with a forged log line and a terminal escape after them."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        echoed = json.dumps({"error": "refused", "request_headers": dict(self.headers.items())})
        body = (echoed + ESCAPE + FORGED).encode()
        status = 400 if "/metadata/" in self.path and "schema" not in self.path else 403
        self.send_response(404 if "schema" in self.path else status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    with threaded_server(_Echo) as url:
        yield url


def test_refusals_echoing_the_headers_never_log_a_secret_in_the_app(
    echo_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from segment.analytics import Client

    stop_runtime()
    counters.reset()
    pendo_plugin.configure(reset=True, track_secret=TRACK, integration_key=KEY, data_url=echo_server,
                           api_url=echo_server, spool_dir=str(tmp_path / "spool"), max_retries=0,
                           batch_interval=0.05)
    pendo_plugin.install()
    with Sandbox() as segment:
        client = Client("test-write-key", host=segment.url, upload_interval=0.05)
        try:
            with caplog.at_level(logging.INFO, logger="pendo_plugin"):
                client.track(user_id="u1", event="Signed Up")
                client.identify(f"v{ESCAPE}{FORGED}", {"plan": "pro"})
                client.flush()
                pendo_plugin.flush(10)
                assert wait_until(lambda: pendo_plugin.stats().get("auth_failed:http_403:track", 0) >= 1
                                  and pendo_plugin.stats().get("dropped:http_400:visitor", 0) >= 1)
        finally:
            client.join()
            stop_runtime()
            config.configure(reset=True)
    messages = [record.getMessage() for record in caplog.records]
    refusals = [m for m in messages if "refused" in m]
    assert len(refusals) >= 2, messages
    assert any("****" in m for m in refusals)  # the excerpt is there, the secrets masked in it
    for message in messages:
        assert_clean(message)
        assert "\n" not in message


def test_replay_and_spool_drain_never_print_a_secret(echo_server: str, tmp_path: Path) -> None:
    env = pendo_env(echo_server, TRACK, KEY, XDG_STATE_HOME=str(tmp_path / "state"), PENDO_MAX_RETRIES="0")
    export = tmp_path / "export.jsonl"
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    export.write_text("\n".join(json.dumps(m) for m in [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1", "timestamp": now},
        {"type": "identify", "userId": "v1", "messageId": "m2", "timestamp": now, "traits": {"plan": "pro"}},
    ]) + "\n")
    replayed = cli(env, "--debug", "replay", str(export))
    assert "403" in replayed.stdout + replayed.stderr, replayed.stderr
    assert_clean(replayed.stdout + replayed.stderr)

    spool_dir = tmp_path / "spool"
    Spool(spool_dir, 1 << 30).write([
        payload.event("track", {"type": "track", "event": "E", "visitorId": "u1", "timestamp": now_ms(),
                                "context": {}, "properties": {}}),
        payload.metadata("visitor", "v1", {"plan": "pro"}),
    ])
    drained = cli({**env, "PENDO_SPOOL_DIR": str(spool_dir)}, "--debug", "spool", "drain")
    assert "403" in drained.stdout + drained.stderr, drained.stderr
    assert_clean(drained.stdout + drained.stderr)


def test_doctor_with_a_bad_region_never_prints_a_password(tmp_path: Path) -> None:
    env = pendo_env("http://127.0.0.1:9", TRACK, KEY, PENDO_REGION="mars",
                    PENDO_REDIS_URL="redis://default:Pa55-redis@127.0.0.1:9/0?password=Pa55-query",
                    PENDO_DATA_URL="https://user:Pa55-data@app.pendo.io",
                    PENDO_API_URL=f"https://app.pendo.io/?token=Pa55-token&x={ESCAPE}")
    done = cli(env, "doctor")
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "PENDO_REGION" in output and "PENDO_REDIS_URL=redis://default:****@127.0.0.1:9/0" in output
    assert "Pa55" not in output
    assert_clean(output)


def test_doctor_escapes_the_field_names_of_pendos_schema() -> None:
    schema = {"visitor": {f"plan{ESCAPE}": "string", f"evil{FORGED}": "string"}, "account": {}}
    with Sandbox(track_secret="doctor-track-secret-1", integration_key="doctor-integration-key-1",
                 schema=schema) as box:
        done = cli(pendo_env(box.url, "doctor-track-secret-1", "doctor-integration-key-1"), "doctor")
    assert "visitor field schema: 2 custom field(s)" in done.stdout, done.stdout
    assert "\\x1b[2J" in done.stdout  # shown, escaped
    assert_clean(done.stdout + done.stderr)


def test_rollout_show_and_spool_status_escape_what_redis_holds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from pendo_plugin.delivery.fleet.flags import FLAGS_KEY

    client = redis_server.client()
    client.hset(FLAGS_KEY, mapping={"deny_visitors": f"a{ESCAPE},b{FORGED}", f"odd{ESCAPE}": "1",
                                    "shadow": f"maybe{ESCAPE}{FORGED}"})
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    client.xadd(STREAM, {"p": b"{}"})
    client.xreadgroup(GROUP, f"consumer{ESCAPE}{FORGED}", {STREAM: ">"}, count=1)
    env = pendo_env("http://127.0.0.1:9", TRACK, KEY, PENDO_REDIS_URL=redis_server.url,
                    PENDO_SPOOL_DIR=str(tmp_path / "spool"))
    shown = cli(env, "rollout", "show")
    assert shown.returncode == 0, shown.stderr
    assert "\\x1b[2J" in shown.stdout
    assert_clean(shown.stdout + shown.stderr)
    status = cli(env, "spool", "status")
    assert status.returncode == 0, status.stderr
    assert "consumer\\x1b[2J\\x0aFORGED" in status.stdout
    assert_clean(status.stdout + status.stderr)


def test_a_spool_file_name_is_escaped_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 30)
    assert spool.write([payload.metadata("visitor", "v1", {"plan": "pro"})]) is not None
    hostile = spool_dir / f"00000000000000000001-1-x{ESCAPE}{FORGED}-n1.jsonl"
    hostile.write_bytes(b"not json\n")
    hostile.chmod(0o600)
    with caplog.at_level(logging.ERROR, logger="pendo_plugin"):
        for claim in spool.claims():
            claim.release()
    quarantined = [r.getMessage() for r in caplog.records if "was not loaded" in r.getMessage()]
    assert quarantined and "\\x1b[2J" in quarantined[0]
    for record in caplog.records:
        assert_clean(record.getMessage())


# ----- the sandbox's secrets come from the environment


def test_the_sandbox_reads_its_secrets_from_the_environment(tmp_path: Path) -> None:
    env = {**pendo_env("http://127.0.0.1:9", "<unset>", "<unset>"), "PENDO_TRACK_SECRET": "stand-in-track-1",
           "PENDO_INTEGRATION_KEY": "stand-in-key-1"}
    refused = cli(env, "sandbox", "--port", "0", "--no-live", "--track-secret", "visible-in-ps",
                  timeout=20)
    assert refused.returncode == 2 and "PENDO_TRACK_SECRET" in refused.stderr

    command = [sys.executable, "-m", "pendo_plugin.cli", "sandbox", "--port", "0", "--no-live"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(6)]  # the banner's lines, up to "Ctrl-C to stop."
        url = banner[0].split(" on ", 1)[1].split()[0]
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"stand-in" not in cmdline

        def post(secret: str | None) -> int:
            headers = {"Content-Type": "application/json"}
            if secret is not None:
                headers["x-pendo-integration-key"] = secret
            body = json.dumps({"type": "track", "event": "E", "visitorId": "u1", "timestamp": now_ms(),
                               "properties": {}, "context": {}}).encode()
            request = urllib.request.Request(f"{url}/data/track", body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert post(None) in (401, 403)
        assert post("stand-in-track-1") == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert "  track secret: required (set)\n" in banner
    assert os.environ.get("PENDO_TRACK_SECRET") != "stand-in-track-1"
