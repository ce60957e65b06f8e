"""Throwaway virtual environments for install-only tests, built offline from this test run's own packages."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path


def site_packages(prefix: Path) -> Path:
    """The site-packages directory of a venv at ``prefix`` (same Python as the tests)."""
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return prefix / relative


def make_venv(prefix: Path, *, share_site: bool) -> Path:
    """A venv whose dependencies come from the test run's site-packages.

    ``share_site=True`` adds the test run's site-packages as a *site dir*, so its ``.pth`` files run
    too (the plugin as installed for the tests is active). ``share_site=False`` adds it as a plain
    path: its packages import, but no ``.pth`` of it runs and whatever the venv installs itself wins.
    Returns the venv's python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    target = site_packages(prefix)
    shared = [path for path in site.getsitepackages() if Path(path).is_dir()]
    lines = [f"import site; site.addsitedir({path!r})" for path in shared] if share_site else shared
    (target / "_test_shared_site.pth").write_text("\n".join(lines) + "\n")
    return prefix / "bin" / "python"


def pip_install(prefix: Path, *requirements: str) -> None:
    """``pip install`` into the venv at ``prefix``, offline, with the test run's build backends."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            *requirements,
        ],
        check=True,
    )
