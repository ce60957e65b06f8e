"""The sandbox's web page, rendered by a real headless Chromium after its JavaScript fetched the state."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pendo_plugin.sandbox import Sandbox

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)

HOSTILE_ID = "<img src=x onerror=\"document.title='pwned'\">"


def render(url: str, profile: Path) -> str:
    """The page's DOM after Chromium ran its scripts for up to 5 s of virtual time."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def send(box: Sandbox) -> None:
    now = int(time.time() * 1000)
    visitors = [
        {"visitorId": "u-1", "values": {"plan": "pro", "logins": 5}},
        {"visitorId": HOSTILE_ID, "values": {"plan": "free"}},
    ]
    accounts = [{"accountId": "acme", "values": {"tier": "gold"}}]
    for kind, rows in (("visitor", visitors), ("account", accounts)):
        url = f"{box.url}/api/v1/metadata/{kind}/custom/value?create=true"
        assert requests.post(url, json=rows, timeout=10).status_code == 200
    for event, properties in (("First Thing", {"ok": 1}), ("Signed Up", {"1x": 1})):
        body = {
            "type": "track",
            "event": event,
            "visitorId": "u-1",
            "accountId": "acme",
            "timestamp": now,
            "properties": properties,
            "context": {},
        }
        assert requests.post(f"{box.url}/data/track", json=body, timeout=10).status_code == 200


def test_page_lists_recorded_visitors_accounts_events_and_violations(box: Sandbox, tmp_path: Path) -> None:
    send(box)
    served = requests.get(f"{box.url}/", timeout=10).text
    assert "u-1" not in served and "acme" not in served  # so whatever shows up below came from the fetch

    dom = render(f"{box.url}/", tmp_path / "profile")

    assert '<body data-state="loaded">' in dom
    assert '<td class="id">u-1</td><td class="json">{"plan":"pro","logins":5}</td>' in dom
    assert '<td class="id">acme</td><td class="json">{"tier":"gold"}</td>' in dom
    assert '<td class="event">Signed Up</td><td>u-1</td><td>acme</td>' in dom
    assert dom.index("Signed Up") < dom.index("First Thing")  # newest event first
    assert "<li>track property name '1x' starts with a digit</li>" in dom
    assert "<span>track events: <b>2</b></span>" in dom
    assert "<span>visitors: <b>2</b></span>" in dom


def test_page_shows_ids_as_text_never_as_markup(box: Sandbox, tmp_path: Path) -> None:
    send(box)
    dom = render(f"{box.url}/", tmp_path / "profile")
    assert '<td class="id">&lt;img src=x onerror="document.title=\'pwned\'"&gt;</td>' in dom
    assert "<img" not in dom
    assert "<title>Pendo sandbox</title>" in dom


def test_page_of_an_empty_sandbox_shows_placeholders(box: Sandbox, tmp_path: Path) -> None:
    dom = render(f"{box.url}/", tmp_path / "profile")
    assert '<body data-state="loaded">' in dom
    assert "no visitor metadata yet" in dom and "no track events yet" in dom
    assert box.request_log() == []  # the page's own requests are not logged as Pendo traffic
