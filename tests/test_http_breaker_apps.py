"""What an outside review of the HTTP client found (issue 25b), through the real plugin path: a real
Segment app with the plugin autoloaded, whose Pendo (or proxy) is a stand-in of ``test_http_breaker.py``.
Every event is kept in the spool, none dropped, and the app's stderr has no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.test_http_breaker import PROXY_REFUSAL, SWITCH, Scripted
from tests.test_reliability_flush import spooled


@pytest.fixture
def switching_pendo() -> Iterator[Scripted]:
    """A Pendo stand-in that answers every request ``101 Switching Protocols``."""
    server = Scripted(SWITCH)
    yield server
    server.stop()


@pytest.fixture
def refusing_proxy() -> Iterator[Scripted]:
    """An HTTP proxy stand-in that answers every request ``407``."""
    server = Scripted(PROXY_REFUSAL)
    yield server
    server.stop()


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_a_real_app_whose_pendo_switches_protocols_keeps_every_event(
    sandbox: Sandbox, switching_pendo: Scripted, spool_dir: Path, event_loop: str
) -> None:
    """Through the real plugin path: a Segment app whose Pendo answers ``101``. Every event is sent
    (never more often than its retries allow) and kept in the spool, Segment's own upload is whole, and
    the app's stderr has no traceback from the worker's loop."""
    server = switching_pendo
    events = 3
    script = app_script(
        f"""
        client = make_client()
        send(client, {events})
        client.flush()
        """
    )
    env = app_env(
        f"http://127.0.0.1:{server.port}",
        spool_dir,
        sandbox.url,
        max_retries=1,
        retry_budget=2,
        shutdown_timeout=5,
    )
    env["PENDO_EVENT_LOOP"] = event_loop
    app = run_app(script, env)
    assert app.returncode == 0, app.describe()
    assert "Traceback" not in app.stderr and "Fatal error" not in app.stderr, app.describe()
    assert len(sandbox.segment_messages()) == events, "Segment's own upload is whole"
    assert spooled(spool_dir) == events, app.describe()
    assert events <= server.requests <= 2 * events, "each event sent, at most once more (max_retries=1)"


def test_a_real_app_behind_a_proxy_that_refuses_it_keeps_every_event(
    sandbox: Sandbox, refusing_proxy: Scripted, spool_dir: Path
) -> None:
    """Through the real plugin path: every payload the proxy refused with 407 was counted
    ``dropped:http_407`` and lost. Now each is kept in the spool, none dropped."""
    proxy = refusing_proxy
    events = 3
    script = app_script(
        f"""
        client = make_client()
        send(client, {events})
        client.flush()
        report(counters=pendo_plugin.counters.snapshot())
        """
    )
    segment_host = sandbox.url.replace("127.0.0.1", "localhost")  # requests' NO_PROXY matches no IP:port
    env = app_env(
        "http://127.0.0.1:9", spool_dir, segment_host, max_retries=1, retry_budget=2, shutdown_timeout=5
    )
    env.update(HTTP_PROXY=f"http://user:wrong@127.0.0.1:{proxy.port}", NO_PROXY="localhost")
    app = run_app(script, env)
    assert app.returncode == 0, app.describe()
    assert len(sandbox.segment_messages()) == events, "Segment's own upload is whole (not proxied)"
    assert proxy.requests >= events, app.describe()
    assert spooled(spool_dir) == events, app.describe()
    assert not [name for name in app.reports()[-1]["counters"] if name.startswith("dropped")], app.describe()
