"""The typed payload and its spool codec: lines written by earlier versions load, what is written now
is the same format, the body is encoded once, and untrusted lines are checked, never raised on."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pendo_plugin import counters
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import UNSTAMPED, Payload, decode, encode

AN_HOUR_AGO_MS = int(time.time() * 1000) - 3_600_000
# Lines exactly as the spool wrote them before payloads were typed (timed an hour ago).
OLD_LINES = [
    b'{"k":"track","b":{"type":"track","event":"Signed Up","visitorId":"u1","accountId":"acme",'
    b'"timestamp":%d,"properties":{"plan":"pro"},"context":{}}}' % AN_HOUR_AGO_MS,
    b'{"k":"webhook","b":{"type":"identify","userId":"u1","traits":{"plan":"pro"}}}',
    b'{"k":"meta","t":"visitor","id":"u1","v":{"plan":"pro","seats":5},"ts":%d}' % AN_HOUR_AGO_MS,
    b'{"k":"meta","t":"account","id":"acme","v":{"tier":"gold"}}',
]


def test_lines_written_by_the_earlier_version_load() -> None:
    track, webhook, visitor, account = (decode(line) for line in OLD_LINES)
    assert track is not None and track.kind == "track" and track.body["event"] == "Signed Up"
    assert webhook is not None and webhook.kind == "webhook" and webhook.body["userId"] == "u1"
    assert visitor == Payload("visitor", {"plan": "pro", "seats": 5}, b'{"plan":"pro","seats":5}', "u1",
                              AN_HOUR_AGO_MS)
    assert account is not None and account.kind == "account" and account.stamp == UNSTAMPED
    assert [encode(item) for item in (track, webhook, visitor, account) if item] == OLD_LINES, (
        "what is written now is the same format, so an earlier version reads it too")


def test_an_old_spool_file_is_claimed_and_its_payloads_are_typed(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    path = directory / f"00000000000000000001-1-abcd1234-n{len(OLD_LINES)}.jsonl"
    path.write_bytes(b"\n".join(OLD_LINES) + b"\n")
    os.chmod(path, 0o600)
    claim = Spool(directory, 1 << 30).claim(path)
    assert claim is not None
    assert [item.kind for item in claim.items] == ["track", "webhook", "visitor", "account"]
    claim.release()


def test_the_body_is_encoded_once_and_spliced_into_the_spool_line_and_the_request() -> None:
    body = {"type": "track", "event": "Zürich ✓", "properties": {"n": [1, 2.5, None, True]}}
    item = payload.event("track", body)
    assert json.loads(item.data) == body, "data is the request body"
    line = encode(item)
    assert item.data in line and json.loads(line) == {"k": "track", "b": body}
    assert decode(line) == item


def test_lines_that_are_no_payload_decode_to_none_never_raise() -> None:
    bad = [
        b"", b"not json", b"[1]", b'"text"', b"\xff\xfe", b'{"k":"track","b":"a string"}',
        b'{"k":"meta","t":"group","id":"u1","v":{}}', b'{"k":"meta","t":"visitor","id":true,"v":{}}',
        b'{"k":"meta","t":"visitor","id":"u1","v":[1]}', b'{"k":"other","b":{}}',
        b'{"k":"track","b":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"k":"track","b":{"x":"' + b"y" * payload.MAX_LINE_BYTES + b'"}}',
    ]
    assert [decode(line) for line in bad] == [None] * len(bad)


def test_a_hostile_timestamp_counts_as_older_than_any() -> None:
    for stamp in (b'"2026"', b"true", b"NaN", b"[1]", b"1e999"):
        item = decode(b'{"k":"meta","t":"visitor","id":"u1","v":{"a":1},"ts":' + stamp + b"}")
        assert item is not None and item.stamp == UNSTAMPED, stamp


def test_a_spool_line_that_is_no_payload_is_dropped_counted_and_acknowledged(tmp_path: Path) -> None:
    counters.reset()
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    path = directory / "00000000000000000001-1-abcd1234-n2.jsonl"
    path.write_bytes(OLD_LINES[0] + b"\n" + b'{"k":"future_kind","b":{}}\n')
    os.chmod(path, 0o600)
    spool = Spool(directory, 1 << 30)
    claim = spool.claim(path)
    assert claim is not None and [item.kind for item in claim.items] == ["track"]
    claim.release()
    again = spool.claim(path)
    assert again is not None and len(again.items) == 1
    again.release()
    assert counters.snapshot()["dropped:unknown_payload"] == 1, "counted once: it was acknowledged"
    counters.reset()


def test_on_error_items_keep_the_spool_line_shape() -> None:
    item = payload.metadata("visitor", "u1", {"plan": "pro"}, 5)
    assert item.as_dict() == {"k": "meta", "t": "visitor", "id": "u1", "v": {"plan": "pro"}, "ts": 5}
    assert payload.event("webhook", {"a": 1}).as_dict() == {"k": "webhook", "b": {"a": 1}}
