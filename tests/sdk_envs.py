"""One throwaway venv per Segment-compatible SDK: the plugin from this repository's wheel, the SDK at the
version tested, and ``mock`` (the SDKs' own test suites import it).

The plugin's own dependencies come from the test run's site-packages (a plain path: no ``.pth`` of it runs
and what the venv installs itself wins). The SDKs not in the test extra and ``mock`` come from the package
index through pip (its cache makes this fast); when pip cannot get them the fixture fails, it never skips.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tests.venvs import make_venv, pip_install

ROOT = Path(__file__).resolve().parent.parent
MOCK = "mock>=5"


@dataclass(frozen=True)
class SdkUnderTest:
    """One SDK as the tests use it: its pip requirement, its import, and where its own tests are."""

    key: str
    distribution: str
    requirement: str | None  # None: the version the test run has (the plugin's own dependency)
    client_module: str
    tests_in: str  # "wheel": inside the installed package; "sdist": the PyPI source archive

    @property
    def version(self) -> str:
        """The version the venv gets."""
        if self.requirement is None:
            return metadata.version(self.distribution)
        return self.requirement.split("==", 1)[1]


SDKS = {
    "segment": SdkUnderTest("segment", "segment-analytics-python", None, "segment.analytics.client", "wheel"),
    "legacy": SdkUnderTest(
        "legacy", "analytics-python", "analytics-python==1.4.0", "analytics.client", "wheel"
    ),
    "rudder": SdkUnderTest(
        "rudder", "rudder-sdk-python", "rudder-sdk-python==2.1.9", "rudderstack.analytics.client", "sdist"
    ),
}


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def build_wheel(directory: Path) -> Path:
    """This repository's wheel, built offline with the test run's hatchling."""
    _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(directory), str(ROOT))
    [wheel] = directory.glob("segment_pendo_plugin-*.whl")
    return wheel


def sdk_venv(base: Path, sdk: SdkUnderTest, wheel: Path) -> Path:
    """A venv at ``base`` with the plugin's wheel and ``sdk``; returns its python."""
    python = make_venv(base, share_site=False)
    pip_install(base, str(wheel))
    wanted = [MOCK] + ([sdk.requirement] if sdk.requirement else [])
    _pip("install", "--quiet", "--ignore-installed", "--prefix", str(base), *wanted)
    return python


def sdk_sources(directory: Path, sdk: SdkUnderTest) -> Path:
    """The SDK's source archive from the package index, unpacked under ``directory``; returns its root."""
    assert sdk.requirement is not None
    _pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", str(directory), sdk.requirement)
    [archive] = directory.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    [root] = (path for path in directory.iterdir() if path.is_dir())
    return root
