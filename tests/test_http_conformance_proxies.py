"""The HTTP client's proxies and TLS against real servers on 127.0.0.1, on both event loops: squid (a
scheme-less ``HTTPS_PROXY``, ``CONNECT`` to a bracketed IPv6 host), nginx with a temp CA's certificate
(``PENDO_CA_BUNDLE``), TLS listeners with a self-signed, an expired and a wrong-name certificate; the
configuration refused with one clear line; and the pure proxy-selection rules (``NO_PROXY`` forms)."""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

import pytest

from pendo_plugin import config, counters
from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.proxies import ProxyTable, parse_proxy
from pendo_plugin.sandbox import Sandbox
from tests import http_conformance as conformance
from tests.conftest import TRACK_SECRET
from tests.http_conformance import Squid, deliver, numbers, post, settings_for
from tests.http_servers import PROXY_PASSWORD, PROXY_USER, Pki
from tests.sending import track_payload

# the suite's fixtures (tests/http_conformance.py), by name
box = conformance.box
clean = conformance.clean
front = conformance.front
hints = conformance.hints
loop_kind = conformance.loop_kind
pki = conformance.pki
proxy = conformance.proxy
tls_listener = conformance.tls_listener

# ----- 7. proxies


def test_a_scheme_less_https_proxy_is_http_and_ipv6_is_bracketed(
    loop_kind: str,
    box: Sandbox,
    front: dict[str, int],
    proxy: Squid,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box.reset()
    port, access_log = proxy.port, proxy.access_log
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")
    settings = settings_for(f"https://[::1]:{front['tls']}", ca_bundle=str(pki.ca))
    outcomes = deliver(loop_kind, settings, [track_payload(n) for n in range(2)])
    assert outcomes == ["sent", "sent"]
    assert numbers(box) == [0, 1]
    deadline = time.monotonic() + 10  # squid writes its log line when the tunnel closes
    while f"[::1]:{front['tls']}" not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"CONNECT [::1]:{front['tls']}" in access_log.read_text()


@pytest.mark.parametrize("https_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_proxy_authentication_through_squid(
    loop_kind: str,
    box: Sandbox,
    front: dict[str, int],
    proxy: Squid,
    pki: Pki,
    https_proxy: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Held: a TLS proxy (squid's https_port, its certificate from PENDO_CA_BUNDLE's CA) and basic proxy
    authentication; a wrong password is refused by squid (407) and named with the proxy, masked."""
    box.reset()
    where = (
        f"https://localhost:{proxy.tls_port}"
        if https_proxy
        else f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.auth_port}"
    )
    monkeypatch.setenv("HTTPS_PROXY", where)
    settings = settings_for(f"https://localhost:{front['tls']}", ca_bundle=str(pki.ca))
    assert deliver(loop_kind, settings, [track_payload(3)]) == ["sent"]
    assert numbers(box) == [3]
    if https_proxy:
        return
    monkeypatch.setenv("HTTPS_PROXY", f"http://{PROXY_USER}:wrong@127.0.0.1:{proxy.auth_port}")
    with pytest.raises(
        ConnectionError, match=rf"proxy http://pendo:\*\*\*\*@127.0.0.1:{proxy.auth_port}: .*HTTP 407"
    ):
        post(loop_kind, f"https://localhost:{front['tls']}/", ca_bundle=str(pki.ca))


def test_a_tunnel_the_proxy_refuses_names_the_proxy(
    loop_kind: str, proxy: Squid, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    with caplog.at_level(logging.ERROR, "pendo_plugin"):
        outcomes = deliver(loop_kind, settings_for("https://127.0.0.1:9"), [track_payload(0)])
    assert outcomes == ["failed"]
    assert counters.snapshot().get("retries_exhausted:track") == 1
    assert f"proxy http://127.0.0.1:{proxy.port}: the proxy refused the tunnel (HTTP 403)" in caplog.text


def test_all_proxy_is_used_and_a_failing_proxy_is_named_with_its_password_masked(
    loop_kind: str, closed_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = closed_url.removeprefix("http://")
    monkeypatch.setenv("ALL_PROXY", f"http://me:hunter2@{closed}")
    with caplog.at_level(logging.ERROR, "pendo_plugin"), pytest.raises(ConnectionError) as failure:
        post(loop_kind, "https://pendo.invalid/data/track", timeout=5)
    assert f"proxy http://me:****@{closed}" in str(failure.value)
    assert "hunter2" not in str(failure.value) + caplog.text
    assert f"proxy http://me:****@{closed}" in caplog.text


def test_no_proxy_cidr_sends_directly(
    loop_kind: str, box: Sandbox, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.reset()
    monkeypatch.setenv("HTTP_PROXY", closed_url)
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")
    assert deliver(loop_kind, settings_for(box.url), [track_payload(7)]) == ["sent"]
    assert numbers(box) == [7]


def test_an_unknown_proxy_scheme_is_refused_with_one_clear_line(
    loop_kind: str, box: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.reset()
    monkeypatch.setenv("HTTPS_PROXY", "socks5://u:pw@127.0.0.1:1080")
    with caplog.at_level(logging.ERROR, "pendo_plugin"):
        outcomes = deliver(loop_kind, settings_for("https://pendo.invalid"), [track_payload(0)])
        assert deliver(loop_kind, settings_for(box.url), [track_payload(1)]) == ["sent"]  # http unaffected
    assert outcomes == ["failed"]
    refused = "HTTPS_PROXY='socks5://u:****@127.0.0.1:1080': proxy scheme 'socks5' is not supported"
    assert refused in caplog.text
    assert "u:pw" not in caplog.text


# ----- TLS: named certificate problems, PENDO_CA_BUNDLE


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("self_signed", "certificate verify failed: self-signed certificate"),
        ("expired", "certificate verify failed: certificate has expired"),
        ("other_name", "certificate verify failed: IP address mismatch"),
    ],
)
def test_tls_errors_name_the_certificate_problem(
    loop_kind: str, tls_listener: Any, pki: Pki, label: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = tls_listener(label)
    with caplog.at_level(logging.ERROR, "pendo_plugin"), pytest.raises(ssl.SSLError, match=problem):
        post(loop_kind, f"https://127.0.0.1:{port}/", ca_bundle=str(pki.ca))
    assert problem in caplog.text


def test_pendo_ca_bundle_adds_a_private_ca_to_the_system_store(
    loop_kind: str, tls_listener: Any, pki: Pki
) -> None:
    port = tls_listener("good")
    with pytest.raises(ssl.SSLError, match="unable to get local issuer certificate"):
        post(loop_kind, f"https://127.0.0.1:{port}/")
    assert post(loop_kind, f"https://127.0.0.1:{port}/", ca_bundle=str(pki.ca))[0].status == 200
    system = len(ssl.create_default_context().get_ca_certs())
    added = HttpTransport(1, str(pki.ca))._context().get_ca_certs()
    assert len(added) == system + 1  # added to the system's CAs, not replacing them


def test_cr_lf_in_a_configured_url_is_refused_with_a_clear_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "pendo_plugin"):
        settings = config.load(
            {"track_secret": TRACK_SECRET, "data_url": "https://app.pen\r\ndo.io"}, environ={}
        )
    assert not settings.active
    assert "PENDO_DATA_URL: the URL has a control character" in caplog.text


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("pendo.io:443", "app.pendo.io", 443, True),
        ("pendo.io:443", "app.pendo.io", 8443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("[::1]", "::1", 443, True),
        ("[::1]:8443", "::1", 443, False),
        ("::1", "::1", 443, True),
        (".example.com", "a.example.com", 443, True),
        ("*.example.com", "example.com", 443, True),
        ("*", "anything", 443, True),
        ("", "app.pendo.io", 443, False),
    ],
)
def test_no_proxy_forms(no_proxy: str, host: str, port: int, direct: bool) -> None:
    table = ProxyTable({"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": no_proxy})
    chosen = table.for_origin("https", host, port)
    assert (chosen is None) is direct
    if chosen is not None:
        assert (chosen.host, chosen.port, chosen.tls) == ("proxy.corp", 3128, False)


def test_lower_case_proxy_variables_win_and_all_proxy_is_the_fallback() -> None:
    table = ProxyTable({"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2", "ALL_PROXY": "https://c:3"})
    assert table.for_origin("https", "x", 443).host == "a"  # type: ignore[union-attr]
    assert table.for_origin("http", "x", 80).url == "https://c:3"  # type: ignore[union-attr]


def test_a_proxy_url_is_shown_with_its_userinfo_masked() -> None:
    assert parse_proxy("HTTPS_PROXY", "http://user:s3cret@proxy:3128").shown == "http://user:****@proxy:3128"
    assert parse_proxy("HTTPS_PROXY", "http://t0ken@proxy:3128/").shown == "http://****@proxy:3128/"
    assert parse_proxy("HTTPS_PROXY", "user:s3cret@proxy:3128").shown == "http://user:****@proxy:3128"
    assert "s3cret" not in repr(parse_proxy("HTTPS_PROXY", "http://user:s3cret@proxy:3128"))
    assert parse_proxy("HTTPS_PROXY", "proxy:3128").shown == "http://proxy:3128"
