"""Sustained overload: what goes past the queue is spooled in files of hundreds of payloads, not a handful,
so the spool directory stays small. A real app process, the real Segment client, a Pendo stand-in that
answers 429 past 100 requests/s."""

from __future__ import annotations

from pathlib import Path

from pendo_plugin.sandbox import Sandbox
from tests.apps import app_env, app_script, run_app
from tests.conftest import INTEGRATION_KEY, TRACK_SECRET

OVERLOAD_APP = """
from pathlib import Path
from pendo_plugin.delivery.spool import Spool
client = make_client()
for step in range(4000):  # a steady flow of some thousands a second for a few seconds
    send(client, 4, user="flood", start=step * 4)
    time.sleep(0.001)
status = Spool(Path(os.environ["PENDO_SPOOL_DIR"]), 1 << 40).status()
report(files=status.files, items=status.items)
"""


def test_overflow_is_spooled_in_files_of_hundreds(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, rate_limit=100) as box:
        env = app_env(box.url, spool_dir, box.url, queue_size=1000, shutdown_timeout=1)
        run = run_app(app_script(OVERLOAD_APP), env, timeout=120)
    assert run.returncode == 0, run.describe()
    report = run.reports()[-1]
    assert report["stats"].get("overflowed", 0) >= 2000, run.describe()  # the queue overflowed for real
    files, items = report["files"], report["items"]  # while the overload lasted, before the exit
    # 146 payloads a file measured (15.5 before: 14,832 payloads in 956 files)
    assert items / files >= 60, f"{items} payloads in {files} spool files"
