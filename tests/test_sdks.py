"""Every Segment-compatible SDK, each in a venv of its own built from this repository's wheel, its real
client uploading to the sandbox that stands in for both the app's backend (``/v1/batch``) and Pendo:
dual-write end to end, exit and fork delivery, ``send=False``/``sync_mode``, the ``integrations`` switch
and ``doctor``. The venvs come from the session fixture ``sdk_pythons`` (conftest).

The SDKs' own test suites with the plugin active are in ``test_sdk_suites.py``.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import STACKS_ON_SIGUSR1, communicate, pendo_env
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.sdk_envs import SDKS

# how an app imports each SDK and points its module-level client at its backend
IMPORTS = {
    "segment": "import segment.analytics as analytics\nanalytics.host = BACKEND",
    "legacy": "import analytics\nanalytics.host = BACKEND",
    "rudder": "import rudderstack.analytics as analytics\nanalytics.dataPlaneUrl = BACKEND",
}

PREAMBLE = """
import json, os, sys, time
BACKEND = os.environ["APP_BACKEND"]
{sdk_import}
analytics.write_key = "test-write-key"


def client(**options):
    return analytics.Client("test-write-key", host=BACKEND, upload_interval=0.05, **options)


def report(**extra):
    import pendo_plugin
    print(json.dumps({{"stats": pendo_plugin.stats(), **extra}}), flush=True)
"""

TRACKS = 20


@pytest.fixture(params=sorted(SDKS))
def sdk(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(python: Path, sdk: str, body: str, sandbox: Sandbox, tmp_path: Path, **env: str) -> dict:
    """Run ``body`` after the SDK's preamble in ``python``; the last JSON line it printed."""
    script = STACKS_ON_SIGUSR1 + PREAMBLE.format(sdk_import=IMPORTS[sdk]) + textwrap.dedent(body)
    environment = pendo_env(
        sandbox.url, TRACK_SECRET, INTEGRATION_KEY, APP_BACKEND=sandbox.url, PENDO_SPOOL_DIR="off", **env
    )
    process = subprocess.Popen(
        [str(python), "-c", script], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path,
    )
    stdout, stderr = communicate(process, timeout=60)
    assert process.returncode == 0, f"exit {process.returncode}\n{stdout}\n{stderr}"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def test_dual_write_end_to_end(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    report = run(
        sdk_pythons[sdk],
        sdk,
        f"""
        analytics.identify("u1", {{"plan": "pro", "seats": 3}})
        analytics.group("u1", "acme", {{"name": "Acme"}})
        for n in range({TRACKS}):
            analytics.track("u1", "Report Run", {{"n": n}})
        analytics.page("u1", name="Home")
        analytics.flush()
        patched = sys.modules["{SDKS[sdk].client_module}"].Client._pendo_plugin_patched
        report(patched=patched)
        """,
        sandbox,
        tmp_path,
    )

    assert report["patched"] is True
    assert len(sandbox.segment_messages()) == TRACKS + 3  # the app's own backend got everything
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(TRACKS))
    assert {event["accountId"] for event in sandbox.track_events()} == {"acme"}
    assert sandbox.visitors() == {"u1": {"plan": "pro", "seats": 3}}
    assert sandbox.accounts() == {"acme": {"name": "Acme"}}
    assert report["stats"]["skipped:call:page"] == 1
    assert sandbox.violations() == []


def test_exit_delivers_without_a_flush(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    run(
        sdk_pythons[sdk],
        sdk,
        f"""
        app = client()
        for n in range({TRACKS}):
            app.track("exit-user", "Exit", {{"n": n}})
        """,  # and leave: the SDK's atexit join and the plugin's own exit hook run
        sandbox,
        tmp_path,
    )

    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == list(range(TRACKS))


def test_forked_child_delivers_its_own_events_once(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_latency(0.3)  # the parent's events are still queued or in flight at the fork
    report = run(
        sdk_pythons[sdk],
        sdk,
        """
        parent = client()
        for n in range(10):
            parent.track("P", "Forked", {"n": n})
        parent.queue.join()  # the SDK's own uploader idle at the fork: it shares its HTTP session
        pid = os.fork()
        if pid == 0:
            child = client()
            for n in range(5):
                child.track("C", "Forked", {"n": n})
            child.queue.join()  # the SDK's queue only: Pendo is left to the exit hook
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        parent.flush()
        report(child_status=status)
        """,
        sandbox,
        tmp_path,
    )

    assert report["child_status"] == 0
    seen = sorted((event["visitorId"], event["properties"]["n"]) for event in sandbox.track_events())
    assert seen == sorted([("C", n) for n in range(5)] + [("P", n) for n in range(10)])


def test_send_false_and_sync_mode(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    run(
        sdk_pythons[sdk],
        sdk,
        """
        quiet = client(send=False)
        quiet.track("u1", "Not Sent", {})
        now = client(sync_mode=True)
        for n in range(3):
            now.track("u1", "Sent Now", {"n": n})
        os._exit(0)  # no flush, no atexit: only what was delivered before track() returned counts
        """,
        sandbox,
        tmp_path,
    )

    assert [event["event"] for event in sandbox.track_events()] == ["Sent Now"] * 3
    assert [message["event"] for message in sandbox.segment_messages()] == ["Sent Now"] * 3


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_a_client_that_sends_starts_the_worker_before_its_first_message(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path, enabled: str
) -> None:
    report = run(
        sdk_pythons[sdk],
        sdk,
        """
        import threading

        def workers():
            return sum(thread.name == "pendo-plugin-worker" for thread in threading.enumerate())

        client(send=False)
        quiet = workers()
        client()
        report(quiet=quiet, sending=workers())
        """,
        sandbox,
        tmp_path,
        PENDO_ENABLED=enabled,
    )

    assert report["quiet"] == 0
    assert report["sending"] == (1 if enabled == "true" else 0)  # the plugin off starts nothing
    assert sandbox.track_events() == []


def test_integrations_switch(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    report = run(
        sdk_pythons[sdk],
        sdk,
        """
        switches = {
            "default": None,
            "pendo off": {"Pendo": False},
            "all off": {"All": False},
            "all off, lowercase": {"all": False},
            "all off, pendo on": {"All": False, "Pendo": True},
            "others off": {"Mixpanel": False},
        }
        for name, integrations in switches.items():
            analytics.track("u1", name, {}, integrations=integrations)
        analytics.flush()
        report()
        """,
        sandbox,
        tmp_path,
    )

    assert sorted(event["event"] for event in sandbox.track_events()) == [
        "all off, pendo on",
        "default",
        "others off",
    ]
    assert len(sandbox.segment_messages()) == 6  # Segment's own delivery is the SDK's business
    assert report["stats"]["seen"] == 6


def test_doctor_names_the_sdks_found_and_patched(
    sdk_pythons: dict[str, Path], sdk: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    environment = pendo_env(sandbox.url, TRACK_SECRET, INTEGRATION_KEY)
    done = subprocess.run(
        [str(sdk_pythons[sdk]), "-m", "pendo_plugin.cli", "doctor"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    section = done.stdout.split("SDKs found and patched:\n", 1)[1].split("\n\n", 1)[0]
    lines = {line.strip().split(" ", 1)[0].rstrip(":"): line.strip() for line in section.splitlines()}
    assert set(lines) == {"segment-analytics-python", "analytics-python", "rudder-sdk-python"}, done.stdout
    assert lines["segment-analytics-python"].endswith("found and patched")  # the plugin's own dependency
    mine = SDKS[sdk].distribution
    assert lines[mine] == f"{mine} {SDKS[sdk].version}: found and patched"
    others = {"analytics-python", "rudder-sdk-python"} - {mine}
    assert all(lines[name] == f"{name}: not installed" for name in others), section
