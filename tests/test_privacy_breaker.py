"""Privacy controls attacked from outside (issue 24b), each test failing on the first version: transforms
that edit the message, crash with the value in their text or cannot be imported; forget against a crashed
writer's temp file, a quarantine, a directory it cannot trust and an id holding "#"; property rules against
names Pendo cleans; the hash key as bytes or @file; an empty consent list; doctor --traits. Real parts: the
real Segment SDK, the sandbox, real spool files and the real ``pendo-plugin`` command in a subprocess."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pendo_plugin
from pendo_plugin import config
from pendo_plugin.cli.forget import visitor_of
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins
from pendo_plugin.segment.hookspecs import hookimpl
from tests.apps import app_env, app_script, pendo_env, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.sending import track_event


class MessageMutator:
    """A transform written like an Insert Function that edits the event it was handed in place."""

    @hookimpl
    def pendo_transform(self, kind: str, payload: dict[str, Any], message: Any) -> None:
        message["properties"].pop("email", None)
        message["properties"]["added_by_transform"] = True
        message["context"]["traits"] = {"leaked": "into Segment"}


def test_a_transform_that_edits_the_message_leaves_segments_upload_alone(plugin: Sandbox) -> None:
    from segment.analytics import Client

    plugins.register_plugin(MessageMutator(), name="message-mutator")
    # Segment's upload waits for more events, so the Pendo worker sees the message before Segment sends it
    client = Client("test-write-key", host=plugin.url, upload_interval=2.0, upload_size=1000)
    try:
        client.track("alice", "Signed Up", {"email": "alice@example.com", "plan": "pro"})
        assert pendo_plugin.flush(10)
        client.flush()
    finally:
        plugins.unregister_plugin(name="message-mutator")
        client.join()

    [uploaded] = plugin.segment_messages()
    assert uploaded["properties"] == {"email": "alice@example.com", "plan": "pro"}
    assert "traits" not in uploaded["context"]
    [event] = plugin.track_events()
    assert event["properties"]["email"] == "alice@example.com"  # the transform kept the payload as it was


# ----- forget: a real spool, the real command --------------------------------------------------------


def forget(spool: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pendo-plugin forget ... --yes`` in a subprocess on ``spool``."""
    environment = {**os.environ, "PENDO_SPOOL_DIR": str(spool), **env}
    environment.pop("PENDO_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pendo_plugin.cli", "forget", *arguments, "--yes"],
        env=environment, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def waiting_visitors(spool: Spool) -> list[str]:
    """The visitors of every payload the next drain would send (dead writers' temp files recovered)."""
    visitors = []
    for claim in spool.claims():
        visitors += [str(visitor_of(item)) for item in claim.items]
        claim.release()
    return sorted(visitors)


def test_forget_reaches_the_temp_file_a_crashed_writer_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    spool.write([track_event("Seen", "bob")])
    written = spool.write([track_event("Paid", "alice"), track_event("Paid", "carol")])
    assert written is not None
    # a writer killed between writing its temp file and renaming it: the next drain recovers the file
    temp = written.with_name(f".{written.name}.tmp")
    written.rename(temp)
    an_hour_ago = time.time() - 3600
    os.utime(temp, (an_hour_ago, an_hour_ago))

    done = forget(spool.directory, "alice")

    assert done.returncode == 0, done.stderr
    assert "alice: 1 payload(s) in the spool" in done.stdout
    assert waiting_visitors(spool) == ["bob", "carol"]


def test_forget_reports_a_temp_file_still_being_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    written = spool.write([track_event("Paid", "alice")])
    assert written is not None
    temp = written.with_name(f".{written.name}.tmp")
    written.rename(temp)
    with temp.open("rb") as held:  # a live writer holds its temp file's lock until the rename
        fcntl.flock(held, fcntl.LOCK_EX)
        done = forget(spool.directory, "alice")

    assert done.returncode == 1
    assert "in use" in done.stdout


def test_the_deny_file_forget_writes_keeps_out_an_id_holding_a_hash_sign(
    tmp_path: Path, plugin: Sandbox, segment_client: Any
) -> None:
    deny_file = tmp_path / "forgotten.txt"
    done = forget(tmp_path / "spool", "user#42", "--deny-file", str(deny_file))
    assert done.returncode == 0, done.stderr

    pendo_plugin.configure(deny_visitors=f"@{deny_file}")
    segment_client.track("user#42", "Still Here")  # the visitor who asked to be forgotten
    segment_client.track("user", "Still Here")  # somebody else
    segment_client.flush()
    assert pendo_plugin.flush(10)

    assert [event["visitorId"] for event in plugin.track_events()] == ["user"]
    assert pendo_plugin.stats()["rollout:off_deny_visitor"] == 1


# ----- hashing: the key as the app holds it ---------------------------------------------------------


def test_a_bytes_hash_key_is_the_hmac_key_itself(plugin: Sandbox, segment_client: Any) -> None:
    key = bytes(range(256))[::7] + b"\xff\x00 "  # raw key bytes, not UTF-8 text, ending in a space
    pendo_plugin.configure(hash_properties="email", hash_key=key)
    segment_client.identify("alice", {"email": "alice@example.com", "plan": "pro"})
    segment_client.flush()
    assert pendo_plugin.flush(10)

    expected = hmac.new(key, b"alice@example.com", hashlib.sha256).hexdigest()  # what the warehouse joins on
    assert plugin.visitors()["alice"]["email"] == expected
    shown = config.current().describe()["hash_key"]
    assert shown.startswith("****") and "alice" not in shown


# ----- doctor: the traits file seen through the property rules -------------------------------------


def test_doctor_asks_for_no_pendo_field_for_a_trait_the_rules_keep_out(tmp_path: Path) -> None:
    traits = tmp_path / "traits.jsonl"
    traits.write_text("\n".join(json.dumps(message) for message in [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "ssn": "078-05-1120",
                                                        "address": {"street": "1 Main St"}}},
        {"type": "group", "groupId": "acme", "traits": {"name": "Acme", "tax_id": "12-345"}},
    ]))
    schema = {"visitor": {"plan": "string"}, "account": {"name": "string"}}
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, schema=schema) as box:
        env = pendo_env(box.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_DENY_PROPERTIES="ssn,address,tax_id")
        done = subprocess.run([sys.executable, "-m", "pendo_plugin.cli", "doctor", "--traits", str(traits)],
                              env=env, capture_output=True, text=True, timeout=60)

    assert "FAIL" not in done.stdout, done.stdout
    assert "OK    visitor traits: all 1 have a field in Pendo" in done.stdout
    assert "078-05-1120" not in done.stdout + done.stderr
    assert done.returncode == 0


# ----- property rules: names as Pendo shows them -------------------------------------------------------


def test_a_stray_space_or_invisible_character_does_not_slip_a_value_past_the_rules(
    plugin: Sandbox, segment_client: Any
) -> None:
    pendo_plugin.configure(deny_properties="ssn,address.street", hash_properties="email", hash_key="k")
    segment_client.track("alice", "Paid", {"ssn ": "078-05-1120", "email\u200b": "alice@example.com",
                                           "address": {"street\t": "1 Main St"}, "plan": "pro"})
    segment_client.identify("alice", {"ssn\u200b": "078-05-1120", "plan": "pro"})
    segment_client.flush()
    assert pendo_plugin.flush(10)

    [event] = plugin.track_events()
    assert event["properties"] == {"email": hmac.new(b"k", b"alice@example.com", hashlib.sha256).hexdigest(),
                                   "plan": "pro"}
    assert plugin.visitors()["alice"] == {"plan": "pro"}
    assert plugin.segment_messages()[0]["properties"]["ssn "] == "078-05-1120"  # Segment gets it as sent


class CrashingRedactor:
    """A redacting transform with a bug: the value it meant to hide ends up in its exception's text."""

    @hookimpl
    def pendo_transform(self, kind: str, payload: dict[str, Any], message: Any) -> dict[str, Any]:
        payload["properties"]["ssn"] = int(payload["properties"]["ssn"]) % 10_000  # ValueError naming it
        return payload


def test_a_crashing_transform_does_not_leak_the_value_through_the_log(
    plugin: Sandbox, segment_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plugins.register_plugin(CrashingRedactor(), name="crashing-redactor")
    try:
        with caplog.at_level(logging.INFO, logger="pendo_plugin"):
            segment_client.track("alice", "Paid", {"ssn": "078-05-1120"})
            segment_client.flush()
            assert pendo_plugin.flush(10)
    finally:
        plugins.unregister_plugin(name="crashing-redactor")

    assert plugin.track_events() == []
    assert pendo_plugin.stats()["dropped:transform_error:track"] == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "'crashing-redactor' raised in pendo_transform: ValueError" in logged
    assert "078-05-1120" not in logged


def test_a_hash_key_in_a_file_is_read_from_the_file(
    tmp_path: Path, plugin: Sandbox, segment_client: Any
) -> None:
    key_file = tmp_path / "hash_key"
    key_file.write_text("s3cret-from-a-mounted-file\n")
    pendo_plugin.configure(hash_properties="email", hash_key=f"@{key_file}")
    segment_client.identify("alice", {"email": "alice@example.com"})
    segment_client.flush()
    assert pendo_plugin.flush(10)

    expected = hmac.new(b"s3cret-from-a-mounted-file", b"alice@example.com", hashlib.sha256).hexdigest()
    assert plugin.visitors()["alice"]["email"] == expected  # not keyed with the public text "@/path"


def test_an_unreadable_hash_key_file_keeps_everything_out(
    tmp_path: Path, plugin: Sandbox, segment_client: Any
) -> None:
    pendo_plugin.configure(hash_properties="email", hash_key=f"@{tmp_path / 'missing'}")
    segment_client.identify("alice", {"email": "alice@example.com"})
    segment_client.flush()
    assert pendo_plugin.flush(10)

    assert plugin.visitors() == {}
    assert len(plugin.segment_messages()) == 1
    assert any("PENDO_HASH_KEY: cannot read" in problem for problem in config.current().problems)


# ----- consent: a categories file that came up empty -------------------------------------------------


def test_an_empty_consent_categories_file_does_not_switch_consent_off(
    tmp_path: Path, plugin: Sandbox, segment_client: Any
) -> None:
    categories = tmp_path / "categories.txt"
    categories.write_text("# the categories Pendo is mapped to (the deploy did not fill this in)\n")
    pendo_plugin.configure(consent_categories=f"@{categories}")
    segment_client.track("alice", "Paid", context={"consent": {"categoryPreferences": {"Analytics": False}}})
    segment_client.flush()
    assert pendo_plugin.flush(10)

    assert plugin.track_events() == []  # the user refused: nothing reaches Pendo
    assert len(plugin.segment_messages()) == 1
    assert any("PENDO_CONSENT_CATEGORIES" in problem for problem in config.current().problems)


def test_forget_refuses_a_spool_directory_it_cannot_use_instead_of_searching_another(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    spool.write([track_event("Paid", "alice")])
    spool.directory.chmod(0o770)  # e.g. a deploy script's chmod -R g+w: the plugin no longer trusts it

    done = forget(spool.directory, "alice", XDG_STATE_HOME=str(tmp_path / "state"))

    assert done.returncode == 2, done.stdout  # not "alice: 0 payload(s)" from the fallback directory
    assert f"PENDO_SPOOL_DIR={spool.directory}" in done.stderr
    assert "writable by group or others" in done.stderr
    spool.directory.chmod(0o700)
    assert waiting_visitors(spool) == ["alice"]


def test_forget_points_at_quarantined_files_that_may_hold_the_visitors_data(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    written = spool.write([track_event("Paid", "alice")])
    assert written is not None
    with written.open("ab") as file:
        file.write(b"not a payload\n")  # a damaged file: quarantined when claimed, never sent

    done = forget(spool.directory, "alice")

    assert done.returncode == 0, done.stderr
    assert f"1 file(s) in {spool.directory / 'quarantine'} failed the spool's checks" in done.stdout


# ----- a redacting transform that cannot be imported --------------------------------------------------

REDACTOR = '''
import phonenumbers_not_installed  # a dependency the deploy forgot: the plugin cannot be imported

from pendo_plugin import hookimpl

@hookimpl
def pendo_transform(kind, payload, message):
    return {**payload, "properties": {}}
'''


def test_a_transform_plugin_that_fails_to_load_keeps_payloads_out(tmp_path: Path, sandbox: Sandbox) -> None:
    site = tmp_path / "site"
    info = site / "my_redactor-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-redactor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[segment_analytics]\nredactor = my_redactor\n")
    (site / "my_redactor.py").write_text(REDACTOR)
    env = app_env(sandbox.url, tmp_path / "spool", sandbox.url)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])

    run = run_app(app_script("""
        client = make_client()
        client.track("alice", "Paid", {"ssn": "078-05-1120"})
        client.flush()
        pendo_plugin.flush(10)
        report()
    """), env)

    assert run.returncode == 0, run.describe()
    assert sandbox.track_events() == []  # what the redactor would have removed never reaches Pendo
    assert len(sandbox.segment_messages()) == 1
    stats = run.reports()[-1]["stats"]
    assert stats["plugin_error:load"] == 1
    assert stats["dropped:transform_error:track"] == 1
    assert "'redactor' failed to load" in run.stderr
