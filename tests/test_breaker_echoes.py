"""An outside review of issue 22's second round: secrets echoed by an answer in a form the first masking
missed (HTML entities, percent-encoded in lower case or with ``+``, base64, a folded line; the
``errors`` of a 2xx metadata answer), and a URL whose password has no ``//`` before it. Real parts: the
real Segment SDK, the plugin in this process, a tiny loopback ``http.server`` that echoes the request's
headers, and ``pendo-plugin doctor`` in a subprocess."""

from __future__ import annotations

import base64
import html
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

import pendo_plugin
from pendo_plugin import config, counters, logs, shown
from pendo_plugin.sandbox import Sandbox
from tests import conftest
from tests.apps import wait_until
from tests.conftest import stop_runtime

TRACK_SECRET = "ts-$(rm -rf ~)/+ 'x'.*?[0]"
INTEGRATION_KEY = 'ik/a+b c&d<e>"q"|$HOME'
SECRETS = (TRACK_SECRET, INTEGRATION_KEY)
KEY_HEADER = "x-pendo-integration-key"

Echo = Callable[[str], bytes]
"""How the test server writes the request's headers into its answer."""


def _headers_echo(encode: Callable[[str], str]) -> Echo:
    return lambda headers: encode(headers).encode()


ECHOES: dict[str, tuple[int, Echo]] = {
    "html entities": (403, _headers_echo(lambda text: f"<html><pre>{html.escape(text)}</pre></html>")),
    "percent, lower case": (400, _headers_echo(lambda text: "".join(f"%{b:02x}" for b in text.encode()))),
    "quote_plus": (400, _headers_echo(lambda text: "h=" + quote_plus(text))),
    "quote, / kept": (400, _headers_echo(lambda text: "h=" + quote(text))),
    "base64": (400, _headers_echo(lambda text: json.dumps([base64.b64encode(text.encode()).decode()]))),
    "folded line": (400, _headers_echo(lambda text: text.replace("+", "\r\n\t+"))),
    "utf-16": (400, lambda headers: headers.encode("utf-16-le")),
}


def _headers_text(handler: http.server.BaseHTTPRequestHandler) -> str:
    key = handler.headers.get(KEY_HEADER, "")
    return f"{KEY_HEADER}: {key}\ncontent-type: {handler.headers.get('Content-Type')}\n"


class _EchoServer(http.server.ThreadingHTTPServer):
    status = 400
    echo: Echo
    metadata_2xx = False


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    server: _EchoServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the field schema: none, every field sent unchecked
        self._answer(404, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.metadata_2xx:
            key = self.headers.get(KEY_HEADER, "")
            body = {"total": 1, "updated": 0, "failed": 1, "missing": [key],
                    "errors": [f"bad header {KEY_HEADER}: {key}\n\x1b[2Jforged"]}
            self._answer(200, json.dumps(body).encode())
            return
        self._answer(self.server.status, self.server.echo(_headers_text(self)))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo_server() -> Iterator[_EchoServer]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def plugin_at_echo(echo_server: _EchoServer, tmp_path: Path) -> Iterator[str]:
    """The plugin active in this process, its secrets :data:`SECRETS`, writing to ``echo_server``."""
    stop_runtime()
    counters.reset()
    logs.forget()
    url = f"http://127.0.0.1:{echo_server.server_address[1]}"
    pendo_plugin.configure(
        reset=True, track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, data_url=url, api_url=url,
        spool_dir=str(tmp_path / "spool"), max_retries=1, retry_budget=2, batch_interval=0.05,
    )
    pendo_plugin.install()
    try:
        yield url
    finally:
        stop_runtime()
        config.configure(reset=True)
        counters.reset()
        logs.forget()


def _send_through_segment(url: str, predicate: Callable[[dict[str, int]], bool]) -> None:
    from segment.analytics import Client

    client = Client("test-write-key", host=url, upload_interval=0.05)
    try:
        client.identify("visitor-1", {"plan": "pro"})
        client.track("visitor-1", "Signed Up", {"plan": "pro"})
        assert wait_until(lambda: predicate(pendo_plugin.stats()), timeout=15)
    finally:
        client.flush()
        client.join()


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        for form in (secret, secret[:12], quote(secret, safe=""), quote_plus(secret), html.escape(secret)):
            assert form not in text
        assert secret[-10:] not in text


@pytest.mark.parametrize("echo", list(ECHOES))
def test_a_refusal_echoing_the_headers_in_any_encoding_logs_no_secret(
    echo: str, echo_server: _EchoServer, plugin_at_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    echo_server.status, echo_server.echo = ECHOES[echo]
    caplog.set_level(logging.INFO, logger="pendo_plugin")

    def refused(stats: dict[str, int]) -> bool:
        seen = [name for name in stats if name.startswith(("dropped:http_4", "auth_failed:"))]
        return {name.rsplit(":", 1)[1] for name in seen} >= {"track", "visitor"}

    _send_through_segment(plugin_at_echo, refused)
    refusals = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert refusals and all(shown.MASK in line for line in refusals)
    _assert_no_secret(caplog.text)
    decoded = caplog.text.replace("%2F", "/").replace("\\x00", "")  # UTF-16 read as UTF-8: NUL between
    for line in refusals:
        for chunk in line.split():  # what base64 in the line says, decoded, holds no secret either
            try:
                decoded += base64.b64decode(chunk.strip('"{}():,') + "==").decode("utf-8", "replace")
            except ValueError:
                continue
    _assert_no_secret(decoded)


def test_a_2xx_answer_echoing_the_key_in_its_errors_logs_no_secret(
    echo_server: _EchoServer, plugin_at_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    echo_server.metadata_2xx = True
    echo_server.status, echo_server.echo = 200, _headers_echo(lambda text: "{}")
    caplog.set_level(logging.INFO, logger="pendo_plugin")
    _send_through_segment(plugin_at_echo, lambda stats: stats.get("failed:visitor", 0) >= 1)
    line = next(record.getMessage() for record in caplog.records if "did not update" in record.getMessage())
    assert shown.MASK in line and "forged" in line
    assert "\n" not in line and "\x1b" not in line
    _assert_no_secret(caplog.text)


@pytest.mark.parametrize(
    ("text", "password"),
    [
        ("default:s3cr3t-pw@127.0.0.1:6379/0", "s3cr3t-pw"),  # no scheme: the parser takes "default" for one
        ("redis:/user:s3cr3t-pw@127.0.0.1/0", "s3cr3t-pw"),  # a slash missing
        ("us_er:s3cr3t-pw@app.pendo.io", "s3cr3t-pw"),
        ("https://app.pendo.io/#access_token=s3cr3t-pw", "s3cr3t-pw"),  # a token in the fragment
    ],
)
def test_a_url_without_its_slashes_or_with_a_token_in_its_fragment_is_masked(
    text: str, password: str
) -> None:
    masked = shown.url(text)
    assert masked is not None and password not in masked and shown.MASK in masked


def test_doctor_never_prints_a_password_in_a_url_written_without_slashes(tmp_path: Path) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PENDO_")},
        "PENDO_TRACK_SECRET": "doctor-track-secret",
        "PENDO_REGION": "mars",  # a bad setting: doctor shows the variables as set
        "PENDO_REDIS_URL": "default:s3cr3t-redis-pw@127.0.0.1:6379/0",
        "PENDO_DATA_URL": "user:s3cr3t-data-pw@app.pendo.io",
        "PENDO_API_URL": "https://app.pendo.io/#access_token=s3cr3t-api-token",
        "XDG_STATE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "doctor"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    output = done.stdout + done.stderr
    assert "PENDO_REDIS_URL" in output and "PENDO_DATA_URL" in output and "PENDO_API_URL" in output
    for secret in ("s3cr3t-redis-pw", "s3cr3t-data-pw", "s3cr3t-api-token", "doctor-track-secret"):
        assert secret not in output


def test_doctor_shows_pendos_field_names_cut(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_schema({"visitor": {"n" * 1_000_000: "text", "plan\x1b[2J": "text"}, "account": {}})
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PENDO_")},
        "PENDO_TRACK_SECRET": conftest.TRACK_SECRET,
        "PENDO_INTEGRATION_KEY": conftest.INTEGRATION_KEY,
        "PENDO_DATA_URL": sandbox.url,
        "PENDO_API_URL": sandbox.url,
        "XDG_STATE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "doctor"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    line = next(line for line in done.stdout.splitlines() if "visitor field schema" in line)
    assert "nnnnnnnnnn..." in line and "plan\\x1b[2J" in line
    assert len(done.stdout) < 20_000  # 1 MB before: every byte of Pendo's field names
