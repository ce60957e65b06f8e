"""The sandbox over real HTTP: Pendo's status codes and bodies, rule checks, recording, faults, waiting."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import requests

from pendo_plugin.sandbox import TRACK_OK, Sandbox, main_sandbox, property_name_problem

SECRET = "track-secret-value-123"
KEY = "integration-key-value-456"
API_KEY = "public-api-key-789"
SCHEMA = {
    "visitor": {"plan": "string", "logins": "number", "beta": "boolean", "signed_up": "date"},
    "account": {"tier": "string"},
}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(track_secret=SECRET, integration_key=KEY, api_key=API_KEY, schema=SCHEMA) as sandbox:
        yield sandbox


def track_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "track",
        "event": "Registered",
        "visitorId": "u1",
        "accountId": "a1",
        "timestamp": int(time.time() * 1000),
        "properties": {"plan": "pro"},
        "context": {"ip": "203.0.113.9"},
    }
    body.update(overrides)
    return body


def post_track(box: Sandbox, body: Any, secret: str | None = SECRET) -> requests.Response:
    headers = {"x-pendo-integration-key": secret} if secret is not None else {}
    return requests.post(f"{box.url}/data/track", json=body, headers=headers, timeout=10)


def post_rows(
    box: Sandbox, kind: str, rows: Any, *, create: bool = False, key: str | None = KEY, group: str = "custom"
) -> requests.Response:
    url = f"{box.url}/api/v1/metadata/{kind}/{group}/value" + ("?create=true" if create else "")
    headers = {"x-pendo-integration-key": key} if key is not None else {}
    return requests.post(url, json=rows, headers=headers, timeout=10)


# ---------------------------------------------------------------- lifecycle


def test_start_serves_on_loopback_and_stop_is_idempotent() -> None:
    sandbox = Sandbox()
    assert sandbox.start() is sandbox
    url = sandbox.url
    assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
    assert requests.get(f"{url}/api/v1/token/verify", timeout=10).status_code == 200
    sandbox.stop()
    sandbox.stop()
    assert not sandbox.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v1/token/verify", timeout=10)


def test_start_on_a_busy_port_raises_oserror(box: Sandbox) -> None:
    port = int(box.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        Sandbox(port=port).start()


def test_serve_forever_returns_when_stopped_and_keeps_recordings() -> None:
    sandbox = Sandbox()
    ticks: list[str] = []

    def tick(s: Sandbox) -> None:
        post_track(s, track_body(), secret=None)
        ticks.append(s.url)
        s.stop()

    sandbox.serve_forever(on_tick=tick, interval=0.01)
    assert len(ticks) == 1 and not sandbox.running
    assert len(sandbox.track_events()) == 1


# ---------------------------------------------------------------- /data/track


def test_track_accepted_and_recorded(box: Sandbox) -> None:
    body = track_body()
    response = post_track(box, body)
    assert (response.status_code, response.text) == (200, TRACK_OK)
    assert box.track_events() == [body]
    assert box.violations() == []


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", KEY])
def test_track_with_wrong_or_missing_secret_is_403(box: Sandbox, secret: str | None) -> None:
    assert post_track(box, track_body(), secret=secret).status_code == 403
    assert box.track_events() == []


def test_track_without_configured_secret_accepts_any_header() -> None:
    with Sandbox() as sandbox:
        assert post_track(sandbox, track_body(), secret=None).status_code == 200
        assert post_track(sandbox, track_body(), secret="anything").status_code == 200
        assert len(sandbox.track_events()) == 2


def test_track_malformed_json_is_400(box: Sandbox) -> None:
    response = requests.post(
        f"{box.url}/data/track",
        data=b'{"type": "track",',
        headers={"x-pendo-integration-key": SECRET, "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert box.track_events() == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"visitorId": ""}, "visitorId must be a non-empty string"),
        ({"visitorId": None}, "visitorId must be a non-empty string"),
        ({"event": ""}, "event must be a non-empty string"),
        ({"type": "identify"}, "type must be 'track'"),
        ({"timestamp": time.time() * 1000 + 0.5}, "timestamp must be an integer"),
        ({"timestamp": dt.datetime.now(dt.timezone.utc).isoformat()}, "timestamp must be an integer"),
        ({"context": None}, "context must be an object"),
        ({"properties": ["a"]}, "properties must be an object"),
    ],
)
def test_track_breaking_required_fields_is_400_and_a_violation(
    box: Sandbox, overrides: dict[str, Any], fragment: str
) -> None:
    response = post_track(box, track_body(**overrides))
    assert response.status_code == 400
    assert fragment in response.text
    assert box.track_events() == []
    assert any(fragment in violation for violation in box.violations())


def test_bad_property_names_are_violations_but_the_event_is_accepted(box: Sandbox) -> None:
    properties = {"1x": 1, "a-b": 2, "x" * 33: 3, "__p__": 4, "ok_name_2": 5, "_lead": 6}
    assert post_track(box, track_body(properties=properties)).status_code == 200
    assert len(box.track_events()) == 1
    violations = box.violations()
    assert "track property name '1x' starts with a digit" in violations
    assert any("'a-b'" in v and "letters, digits and underscore" in v for v in violations)
    assert any("longer than 32 characters" in v for v in violations)
    assert any("'__p__'" in v and "starts and ends with '__'" in v for v in violations)
    assert not any("ok_name_2" in v or "_lead" in v for v in violations)
    assert len(violations) == 4


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("plan", None),
        ("_x_", None),
        ("__x", None),
        ("x" * 32, None),
        ("9lives", "starts with a digit"),
        ("x" * 33, "longer than 32"),
        ("two words", "letters, digits and underscore"),
        ("émoji", "letters, digits and underscore"),
        ("__dunder__", "starts and ends with '__'"),
        ("", "is empty"),
    ],
)
def test_property_name_problem(name: str, problem: str | None) -> None:
    found = property_name_problem(name)
    assert found is None if problem is None else (found is not None and problem in found)


def test_properties_over_512_bytes_are_flagged_but_accepted(box: Sandbox) -> None:
    assert post_track(box, track_body(properties={"blob": "x" * 510})).status_code == 200
    assert post_track(box, track_body(properties={"blob": "x" * 400})).status_code == 200
    assert len(box.track_events()) == 2
    [violation] = box.violations()
    assert "over Pendo's 512-byte limit" in violation


def test_timestamps_in_seconds_or_older_than_7_days_are_flagged(box: Sandbox) -> None:
    now_ms = int(time.time() * 1000)
    assert post_track(box, track_body(timestamp=now_ms // 1000)).status_code == 200
    assert post_track(box, track_body(timestamp=now_ms - 8 * 24 * 3600 * 1000)).status_code == 200
    assert post_track(box, track_body(timestamp=now_ms - 6 * 24 * 3600 * 1000)).status_code == 200
    violations = box.violations()
    assert len(violations) == 2
    assert "looks like seconds" in violations[0]
    assert "more than 7 days old" in violations[1]


def test_more_than_5000_event_names_are_flagged(box: Sandbox) -> None:
    box.set_latency(0)
    with requests.Session() as session:
        for i in range(5_001):
            body = track_body(event=f"E{i}", properties=None)
            session.post(f"{box.url}/data/track", json=body, headers={"x-pendo-integration-key": SECRET})
    assert box.violations() == ["track event name 'E5000' goes over Pendo's 5,000 names per app"]
    assert len(box.track_events()) == 5_001


def test_track_sent_as_text_plain_is_flagged(box: Sandbox) -> None:
    response = requests.post(
        f"{box.url}/data/track",
        data=json.dumps(track_body()),
        headers={"x-pendo-integration-key": SECRET, "content-type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 200
    assert any("Content-Type" in v for v in box.violations())


# ---------------------------------------------------------------- metadata


def test_unknown_field_rejects_the_whole_request_with_400(box: Sandbox) -> None:
    rows = [{"visitorId": "u1", "values": {"plan": "pro"}}, {"visitorId": "u2", "values": {"shoe_size": 44}}]
    response = post_rows(box, "visitor", rows, create=True)
    assert response.status_code == 400
    assert "missing field mappings" in response.text and "shoe_size" in response.text
    assert box.visitors() == {}
    assert box.metadata_requests() == []
    assert any("shoe_size" in v for v in box.violations())


def test_without_create_unknown_ids_come_back_missing(box: Sandbox) -> None:
    response = post_rows(box, "visitor", [{"visitorId": "new", "values": {"plan": "pro"}}])
    assert response.status_code == 200
    assert response.json() == {"total": 1, "updated": 0, "failed": 1, "missing": ["new"], "errors": []}
    assert box.visitors() == {}


def test_create_then_update_merges_values(box: Sandbox) -> None:
    first = post_rows(
        box, "visitor", [{"visitorId": "u1", "values": {"plan": "pro", "logins": 5}}], create=True
    )
    assert first.json() == {"total": 1, "updated": 1, "failed": 0, "missing": [], "errors": []}
    second = post_rows(box, "visitor", [{"visitorId": "u1", "values": {"logins": 6, "beta": True}}])
    assert second.json()["updated"] == 1
    assert box.visitors() == {"u1": {"plan": "pro", "logins": 6, "beta": True}}
    assert box.metadata_requests("visitor") == [
        [{"visitorId": "u1", "values": {"plan": "pro", "logins": 5}}],
        [{"visitorId": "u1", "values": {"logins": 6, "beta": True}}],
    ]
    assert box.metadata_requests("account") == []


def test_wrong_type_counts_the_row_in_errors_and_applies_the_others(box: Sandbox) -> None:
    rows = [
        {"visitorId": "u1", "values": {"logins": "five"}},
        {"visitorId": "u2", "values": {"plan": "pro", "signed_up": 1_700_000_000_000}},
        {"visitorId": "u3", "values": {"beta": "yes"}},
        {"accountId": "wrong-id-field", "values": {}},
    ]
    body = post_rows(box, "visitor", rows, create=True).json()
    assert (body["total"], body["updated"], body["failed"], body["missing"]) == (4, 1, 3, [])
    assert len(body["errors"]) == 3
    assert "logins" in body["errors"][0] and "expects number" in body["errors"][0]
    assert box.visitors() == {"u2": {"plan": "pro", "signed_up": 1_700_000_000_000}}


def test_a_track_event_makes_the_visitor_and_account_known(box: Sandbox) -> None:
    assert post_track(box, track_body(visitorId="seen", accountId="acct")).status_code == 200
    assert (
        post_rows(box, "visitor", [{"visitorId": "seen", "values": {"plan": "pro"}}]).json()["updated"] == 1
    )
    assert (
        post_rows(box, "account", [{"accountId": "acct", "values": {"tier": "gold"}}]).json()["updated"] == 1
    )
    assert box.accounts() == {"acct": {"tier": "gold"}}


def test_agent_group_and_schemaless_sandbox_accept_any_field() -> None:
    with Sandbox() as sandbox:
        rows = [{"accountId": "a1", "values": {"anything": 1, "bad-name": "x"}}]
        assert post_rows(sandbox, "account", rows, create=True, group="agent").json()["updated"] == 1
        assert sandbox.accounts() == {"a1": {"anything": 1, "bad-name": "x"}}
        assert any("'bad-name' is not a valid Pendo field name" in v for v in sandbox.violations())
        schema = requests.get(f"{sandbox.url}/api/v1/metadata/schema/account", timeout=10)
        assert schema.status_code == 404  # "any field": clients must not drop fields for want of a schema


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong", 403), (SECRET, 403)])
def test_metadata_needs_the_integration_key(box: Sandbox, key: str | None, status: int) -> None:
    rows = [{"visitorId": "u1", "values": {"plan": "pro"}}]
    assert post_rows(box, "visitor", rows, create=True, key=key).status_code == status
    assert box.visitors() == {}


def test_metadata_without_write_access_is_403() -> None:
    with Sandbox(write_access=False) as sandbox:
        rows = [{"visitorId": "u1", "values": {"plan": "pro"}}]
        assert post_rows(sandbox, "visitor", rows, create=True).status_code == 403
        assert sandbox.visitors() == {}


def test_metadata_malformed_bodies_and_paths(box: Sandbox) -> None:
    url = f"{box.url}/api/v1/metadata/visitor/custom/value"
    headers = {"x-pendo-integration-key": KEY}
    assert requests.post(url, data=b"[{", headers=headers, timeout=10).status_code == 400
    assert requests.post(url, json={"visitorId": "u1"}, headers=headers, timeout=10).status_code == 400
    assert post_rows(box, "user", []).status_code == 404
    assert post_rows(box, "visitor", [], group="segment").status_code == 404
    assert post_rows(box, "visitor", []).json() == {
        "total": 0,
        "updated": 0,
        "failed": 0,
        "missing": [],
        "errors": [],
    }


def test_set_schema_applies_to_later_requests(box: Sandbox) -> None:
    rows = [{"visitorId": "u1", "values": {"shoe_size": 44}}]
    assert post_rows(box, "visitor", rows, create=True).status_code == 400
    box.set_schema({"visitor": {"shoe_size": "number"}})
    assert post_rows(box, "visitor", rows, create=True).status_code == 200
    box.set_schema(None)
    assert post_rows(box, "visitor", [{"visitorId": "u1", "values": {"x": 1}}]).status_code == 200
    assert box.visitors() == {"u1": {"shoe_size": 44, "x": 1}}


# ---------------------------------------------------------------- schema, token, webhook, Segment


def test_schema_endpoint_lists_fields_with_types(box: Sandbox) -> None:
    headers = {"x-pendo-integration-key": KEY}
    response = requests.get(f"{box.url}/api/v1/metadata/schema/visitor", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "auto": {},
        "agent": {},
        "custom": {
            "plan": {"Type": "string"},
            "logins": {"Type": "number"},
            "beta": {"Type": "boolean"},
            "signed_up": {"Type": "date"},
        },
    }
    bad = requests.get(f"{box.url}/api/v1/metadata/schema/account", headers={"x-pendo-integration-key": "x"})
    assert bad.status_code == 403
    box.set_schema({"account": {"tier": "string"}})
    response = requests.get(f"{box.url}/api/v1/metadata/schema/visitor", headers=headers, timeout=10)
    assert response.status_code == 404


def test_token_verify(box: Sandbox) -> None:
    url = f"{box.url}/api/v1/token/verify"
    good = requests.get(url, headers={"x-pendo-integration-key": KEY}, timeout=10)
    assert (good.status_code, good.json()) == (200, {"valid": True, "writeAccess": True})
    assert requests.get(url, headers={"x-pendo-integration-key": "nope"}, timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 403
    with Sandbox(integration_key=KEY, write_access=False) as read_only:
        response = requests.get(
            f"{read_only.url}/api/v1/token/verify", headers={"x-pendo-integration-key": KEY}
        )
        assert response.json() == {"valid": True, "writeAccess": False}


def test_webhook_records_raw_messages_and_checks_the_key(box: Sandbox) -> None:
    message = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m1"}
    assert requests.post(f"{box.url}/data/segmentio/{API_KEY}", json=message, timeout=10).status_code == 200
    assert requests.post(f"{box.url}/data/segmentio/other-key", json=message, timeout=10).status_code == 403
    assert requests.post(f"{box.url}/data/segmentio/{API_KEY}", data=b"nope", timeout=10).status_code == 400
    assert box.webhook_messages() == [message]


def test_segment_batch_records_every_message_including_gzip(box: Sandbox) -> None:
    batch = {"batch": [{"type": "track", "event": "A"}, {"type": "identify", "userId": "u1"}]}
    assert requests.post(f"{box.url}/v1/batch", json=batch, auth=("write-key", ""), timeout=10).json() == {}
    zipped = gzip.compress(json.dumps({"batch": [{"type": "group", "groupId": "g"}]}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    assert requests.post(f"{box.url}/v1/batch", data=zipped, headers=headers, timeout=10).status_code == 200
    assert requests.post(f"{box.url}/v1/batch", json={"nope": 1}, timeout=10).status_code == 400
    assert [m["type"] for m in box.segment_messages()] == ["track", "identify", "group"]


def test_segment_latency_is_separate_from_pendo_latency() -> None:
    with Sandbox(segment_latency=0.3) as sandbox:
        started = time.monotonic()
        requests.post(f"{sandbox.url}/v1/batch", json={"batch": []}, timeout=10)
        assert time.monotonic() - started >= 0.3
        sandbox.set_latency(0.2)
        started = time.monotonic()
        post_track(sandbox, track_body(), secret=None)
        assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------- request log, faults, waiting


def test_request_log_masks_every_secret(box: Sandbox) -> None:
    post_track(box, track_body())
    post_rows(box, "visitor", [], key=KEY)
    requests.post(f"{box.url}/data/segmentio/{API_KEY}", json={"type": "track"}, timeout=10)
    requests.post(
        f"{box.url}/v1/batch?api_key=qs-secret-abc", json={"batch": []}, auth=("segment-write-key", "")
    )
    log = box.request_log()
    assert [(r.method, r.status) for r in log] == [("POST", 200)] * 4
    dumped = repr(log)
    for secret in (SECRET, KEY, API_KEY, "qs-secret-abc"):
        assert secret not in dumped
    assert log[0].headers["x-pendo-integration-key"] == "***"
    assert log[3].headers["Authorization"] == "***"
    assert log[2].path == "/data/segmentio/***"
    assert log[3].query == {"api_key": "***"}
    assert [r.at for r in log] == sorted(r.at for r in log)


def test_fail_next_fails_then_succeeds_and_failures_are_not_recorded(box: Sandbox) -> None:
    box.fail_next(2, 503, headers={"Retry-After": "1"})
    first, second, third = (post_track(box, track_body(event=f"E{i}")) for i in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "1"
    assert [e["event"] for e in box.track_events()] == ["E2"]
    assert [r.status for r in box.request_log()] == [503, 503, 200]


def test_fail_next_only_hits_its_path_prefix(box: Sandbox) -> None:
    box.fail_next(1, 429, path_prefix="/api/v1/metadata")
    assert post_track(box, track_body()).status_code == 200
    rows = [{"visitorId": "u1", "values": {"plan": "pro"}}]
    assert post_rows(box, "visitor", rows, create=True).status_code == 429
    assert post_rows(box, "visitor", rows, create=True).status_code == 200
    assert box.visitors() == {"u1": {"plan": "pro"}}


def test_fail_next_rejects_nonsense() -> None:
    sandbox = Sandbox()
    with pytest.raises(ValueError):
        sandbox.fail_next(-1)
    with pytest.raises(ValueError):
        sandbox.fail_next(1, status=42)


def test_wait_for_wakes_on_the_request_that_satisfies_it(box: Sandbox) -> None:
    count = 25

    def send() -> None:
        with requests.Session() as session:
            for i in range(count):
                session.post(
                    f"{box.url}/data/track",
                    json=track_body(event=f"E{i}"),
                    headers={"x-pendo-integration-key": SECRET},
                )

    sender = threading.Thread(target=send)
    sender.start()
    assert box.wait_for(lambda s: len(s.track_events()) == count, timeout=30)
    woke_at = time.monotonic()
    sender.join()
    assert woke_at - box.request_log()[-1].at < 0.5  # woken by the request, not by a polling interval


def test_wait_for_times_out_with_false(box: Sandbox) -> None:
    started = time.monotonic()
    assert box.wait_for(lambda s: bool(s.track_events()), timeout=0.1) is False
    assert time.monotonic() - started >= 0.1


def test_reset_forgets_recordings_and_faults(box: Sandbox) -> None:
    post_track(box, track_body(properties={"1x": 1}))
    post_rows(box, "visitor", [{"visitorId": "u1", "values": {"plan": "pro"}}], create=True)
    box.fail_next(3)
    box.reset()
    assert box.track_events() == [] and box.visitors() == {} and box.violations() == []
    assert box.request_log() == [] and box.metadata_requests() == []
    assert post_track(box, track_body(visitorId="someone-else")).status_code == 200  # no fault left
    rows = [{"visitorId": "u1", "values": {"plan": "pro"}}]
    assert post_rows(box, "visitor", rows).json()["missing"] == ["u1"]  # u1 is forgotten


# ---------------------------------------------------------------- page and state


def test_state_snapshot_and_page(box: Sandbox) -> None:
    post_track(box, track_body(properties={"1x": 1}))
    post_rows(box, "account", [{"accountId": "a1", "values": {"tier": "gold"}}], create=True)
    state = requests.get(f"{box.url}/_sandbox/state", timeout=10).json()
    assert state["counts"]["track_events"] == 1 and state["counts"]["accounts"] == 1
    assert state["accounts"] == [{"id": "a1", "values": {"tier": "gold"}}]
    assert state["events"][0]["event"] == "Registered"
    assert state["violations"] == ["track property name '1x' starts with a digit"]
    page = requests.get(f"{box.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/_sandbox/state" in page.text
    assert "src=" not in page.text and "<link" not in page.text and "https://" not in page.text
    assert [r.path for r in box.request_log()] == ["/data/track", "/api/v1/metadata/account/custom/value"]


# ---------------------------------------------------------------- throughput smoke (not timed)


def test_many_concurrent_requests_with_latency_all_succeed() -> None:
    async def run(url: str) -> list[int]:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> int:
                if i % 4 == 0:
                    rows = [{"visitorId": f"v{i}", "values": {"n": i}}]
                    target = f"{url}/api/v1/metadata/visitor/custom/value?create=true"
                    async with session.post(target, json=rows) as response:
                        return response.status
                async with session.post(f"{url}/data/track", json=track_body(visitorId=f"v{i}")) as response:
                    return response.status

            return await asyncio.gather(*(one(i) for i in range(2000)))

    with Sandbox(latency=0.05) as sandbox:
        statuses = asyncio.run(run(sandbox.url))
        assert set(statuses) == {200}
        counts = sandbox.counts()
        assert (counts["track_events"], counts["visitors"], counts["requests"]) == (1500, 500, 2000)


# ---------------------------------------------------------------- command line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_main_sandbox_on_a_busy_port_returns_1(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    port = int(box.url.rsplit(":", 1)[1])
    assert main_sandbox(port, 0.0, None, None, None, live=False) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_main_sandbox_prints_live_counts_and_stops_on_sigint() -> None:
    port = _free_port()
    code = (  # Ctrl-C as a terminal delivers it, even when the test run itself ignores SIGINT (a & job)
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from pendo_plugin.sandbox import main_sandbox; "
        f"sys.exit(main_sandbox({port}, 0.0, {SECRET!r}, {KEY!r}, {API_KEY!r}, True))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or []:
            lines.put(line)
        lines.put("")  # end of output

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    def read_until(matches: Callable[[str], bool]) -> None:
        while not any(matches(line) for line in seen):
            line = lines.get(timeout=20)
            assert line, f"sandbox exited early: {''.join(seen)}"
            seen.append(line)

    try:
        read_until(lambda line: "listening on" in line)
        headers = {"x-pendo-integration-key": SECRET}
        response = requests.post(f"http://127.0.0.1:{port}/data/track", json=track_body(), headers=headers)
        assert response.status_code == 200
        read_until(lambda line: line.split() == ["track", "events", "1"])
        read_until(lambda line: f"page: http://127.0.0.1:{port}/" in line)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    while (line := lines.get(timeout=10)) != "":
        seen.append(line)
    output = "".join(seen)
    assert "Sandbox stopped" in output
    for secret in (SECRET, KEY, API_KEY):
        assert secret not in output
