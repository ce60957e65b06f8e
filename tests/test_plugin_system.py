"""The ``segment_analytics`` plugin system as a third party sees it: a package with an entry point,
installed with plain ``pip install``, called by an app that imports only ``segment.analytics``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pendo_plugin.sandbox import Sandbox
from tests.apps import pendo_env
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET
from tests.venvs import make_venv, pip_install

ROOT = Path(__file__).resolve().parent.parent

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "recorder-plugin"
version = "1.0"

[project.entry-points.segment_analytics]
recorder = "recorder_plugin"
boom = "recorder_plugin.boom"

[tool.hatch.build.targets.wheel]
packages = ["recorder_plugin"]
"""

RECORDER = """
import json, os
import pluggy

hookimpl = pluggy.HookimplMarker("segment_analytics")

@hookimpl
def segment_message(message):
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps({"type": message["type"], "n": message.get("properties", {}).get("n")}) + "\\n")

@hookimpl
def segment_flush(client, timeout):
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps({"type": "flush", "timeout": timeout}) + "\\n")
"""

BOOM = """
import pluggy

hookimpl = pluggy.HookimplMarker("segment_analytics")

@hookimpl(tryfirst=True)
def segment_message(client, message):
    raise RuntimeError("boom")
"""

APP = """
import json, sys
import segment.analytics as analytics

analytics.write_key = "test-write-key"
analytics.host = sys.argv[1]
analytics.identify("u1", {"plan": "pro"})
for n in range(3):
    analytics.track("u1", "Step", {"n": n})
analytics.page("u1", name="Home")
analytics.flush()
import pendo_plugin  # only to report the counters
print(json.dumps(pendo_plugin.stats()))
"""


@pytest.fixture(scope="module")
def recorder_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv sharing the test run's packages, with the recorder plugin pip-installed into it."""
    base = tmp_path_factory.mktemp("recorder")
    source = base / "src"
    (source / "recorder_plugin").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "recorder_plugin" / "__init__.py").write_text(RECORDER)
    (source / "recorder_plugin" / "boom.py").write_text(BOOM)
    python = make_venv(base / "venv", share_site=True)
    pip_install(base / "venv", str(source))
    return python


def run_app(
    python: Path, sandbox: Sandbox, tmp_path: Path, app_prefix: str = "", **env: str
) -> tuple[list[dict], dict[str, int]]:
    record = tmp_path / "record.jsonl"
    app = tmp_path / "app.py"
    app.write_text(app_prefix + APP)
    environment = {
        **os.environ,
        "RECORDER_FILE": str(record),
        "PENDO_TRACK_SECRET": TRACK_SECRET,
        "PENDO_INTEGRATION_KEY": INTEGRATION_KEY,
        "PENDO_DATA_URL": sandbox.url,
        "PENDO_API_URL": sandbox.url,
        "PENDO_SPOOL_DIR": str(tmp_path / "spool"),
        **env,
    }
    done = subprocess.run(
        [str(python), str(app), sandbox.url], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = record.read_text().splitlines() if record.exists() else []
    return [json.loads(line) for line in lines], json.loads(done.stdout.strip().splitlines()[-1])


def test_entry_point_plugin_is_called_once_per_message_in_order(
    recorder_venv: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    records, stats = run_app(recorder_venv, sandbox, tmp_path)

    messages = [record for record in records if record["type"] != "flush"]
    assert [(m["type"], m["n"]) for m in messages] == [
        ("identify", None),
        ("track", 0),
        ("track", 1),
        ("track", 2),
        ("page", None),
    ]
    assert {"type": "flush", "timeout": 30.0} in records
    # the raising plugin was isolated: counted, and Pendo and Segment still got everything
    assert stats["plugin_error:segment_message"] == 5
    assert sorted(event["properties"]["n"] for event in sandbox.track_events()) == [0, 1, 2]
    assert len(sandbox.segment_messages()) == 5


def test_registering_an_installed_plugin_by_hand_keeps_it_once(
    recorder_venv: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """hooks.md's register_plugin() beside a pip-installed entry point: no ValueError into the app, and
    each message still reaches the plugin once."""
    registering = (
        "import recorder_plugin\n"
        "from pendo_plugin.segment.bridge import register_plugin\n"
        "assert register_plugin(recorder_plugin, name='recorder') == 'recorder'\n"
    )
    records, _ = run_app(recorder_venv, sandbox, tmp_path, app_prefix=registering)

    messages = [record for record in records if record["type"] != "flush"]
    assert [(m["type"], m["n"]) for m in messages] == [
        ("identify", None), ("track", 0), ("track", 1), ("track", 2), ("page", None)
    ]


def test_disabled_plugins_are_not_loaded(recorder_venv: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    records, stats = run_app(recorder_venv, sandbox, tmp_path, SEGMENT_ANALYTICS_PLUGINS_DISABLED="boom")

    assert len([r for r in records if r["type"] != "flush"]) == 5
    assert not any(name.startswith("plugin_error:") for name in stats)


def test_allow_list_loads_only_named_plugins(recorder_venv: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    records, stats = run_app(recorder_venv, sandbox, tmp_path, SEGMENT_ANALYTICS_PLUGINS="recorder")

    assert len([r for r in records if r["type"] != "flush"]) == 5
    assert sandbox.track_events() == []  # the Pendo destination ("pendo") was not in the allow-list
    assert "seen" not in stats


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv where the plugin comes only from a wheel built from this repository."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(base),
            str(ROOT),
        ],
        check=True,
    )
    [wheel] = base.glob("segment_pendo_plugin-*.whl")
    python = make_venv(base / "venv", share_site=False)
    pip_install(base / "venv", str(wheel))
    return python


INSTALL_ONLY_APP = """
import sys
import segment.analytics as analytics

analytics.write_key = "test-write-key"
analytics.host = sys.argv[1]
analytics.identify("w1", {"plan": "team"})
analytics.group("w1", "wa1", {"name": "Wheel Co"})
analytics.track("w1", "Installed From Wheel", {"ok": True})
analytics.flush()
module = sys.modules.get("pendo_plugin")
print(module is not None, module.__file__ if module else "")
"""


def run_install_only_app(python: Path, server: Sandbox, tmp_path: Path, **env: str) -> str:
    """Run the app that imports only ``segment.analytics`` with the plugin pointed at ``server``."""
    app = tmp_path / "app.py"
    app.write_text(INSTALL_ONLY_APP)
    environment = pendo_env(
        server.url, TRACK_SECRET, INTEGRATION_KEY, PENDO_SPOOL_DIR=str(tmp_path / "spool"), **env
    )
    done = subprocess.run(
        [str(python), str(app), server.url], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_install_only_path_from_a_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        loaded, location = run_install_only_app(wheel_venv, server, tmp_path).split()

        assert loaded == "True"
        assert str(wheel_venv.parent.parent) in location  # the wheel's copy, not the test run's
        assert [event["event"] for event in server.track_events()] == ["Installed From Wheel"]
        assert server.visitors() == {"w1": {"plan": "team"}}
        assert server.accounts() == {"wa1": {"name": "Wheel Co"}}
        assert server.track_events()[0]["accountId"] == "wa1"


def test_autoload_off_leaves_the_sdk_alone(wheel_venv: Path, tmp_path: Path) -> None:
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY) as server:
        run_install_only_app(wheel_venv, server, tmp_path, PENDO_AUTOLOAD="0")

        assert server.track_events() == []
        assert len(server.segment_messages()) == 3


def test_bootstrap_imports_nothing_heavy(wheel_venv: Path) -> None:
    prefixes = ("pendo", "segment", "pluggy", "aiohttp")
    probe = f"import sys; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    done = subprocess.run([str(wheel_venv), "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['pendo_plugin', 'pendo_plugin._autoload']"
