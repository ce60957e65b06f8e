"""An outside review of issue 22's second round: log-once keys that carry a status the answer chose
(``exhausted:<kind>:http_<status>``, ``permanent:<kind>:<status>``, ``schema:<kind>:<status>``,
``redirect:<status>``) let a hostile Pendo or proxy, cycling through statuses, fill the 1,024 keys, after
which every new problem (a refused key, Redis down) was only counted: 500 statuses (500 to 999) took 500
keys for track events alone, as many for each other kind. Each such family now logs at most 20. Real
parts: the real Segment SDK, the plugin in this process, a loopback ``http.server``."""

from __future__ import annotations

import http.server
import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import config, counters, logs
from tests.apps import wait_until
from tests.conftest import stop_runtime

TRACKS = 500  # each answered with a status of its own, 500 to 999
STATUSES = itertools.cycle(range(500, 1000))


class _Cycling(http.server.ThreadingHTTPServer):
    refuse_key = False


class _CyclingHandler(http.server.BaseHTTPRequestHandler):
    server: _Cycling
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.refuse_key:
            self._answer(401)
            return
        with self.lock:
            status = next(STATUSES)
        self._answer(status)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def cycling_url(tmp_path: Path) -> Iterator[tuple[_Cycling, str]]:
    server = _Cycling(("127.0.0.1", 0), _CyclingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    stop_runtime()
    counters.reset()
    logs.forget()
    pendo_plugin.configure(
        reset=True, track_secret="cycling-track-secret", integration_key="cycling-integration-key",
        data_url=url, api_url=url, spool_dir="off", max_retries=0, retry_budget=1, batch_interval=0.05,
    )
    pendo_plugin.install()
    try:
        yield server, url
    finally:
        stop_runtime()
        config.configure(reset=True)
        counters.reset()
        logs.forget()
        server.shutdown()
        server.server_close()


def test_statuses_chosen_by_the_answer_cannot_silence_later_problems(
    cycling_url: tuple[_Cycling, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = cycling_url
    caplog.set_level(logging.WARNING, logger="pendo_plugin")
    from segment.analytics import Client

    client: Any = Client("test-write-key", host=url, upload_interval=0.05, max_retries=0)
    try:
        for n in range(TRACKS):
            client.track("visitor-1", "Cycled", {"n": n})
        assert wait_until(lambda: pendo_plugin.stats().get("retries_exhausted:track", 0) >= TRACKS, 60)
        giving_up = [line for line in caplog.messages if "giving up on track" in line]
        assert len(giving_up) <= logs.MAX_PER_FAMILY + 1  # 500 lines and keys before, one per status

        server.refuse_key = True
        client.identify("visitor-1", {"plan": "pro"})
        assert wait_until(lambda: any("refused the key for visitor" in line for line in caplog.messages))
    finally:
        client.flush()
        client.join()
