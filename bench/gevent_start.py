"""First requests of a gunicorn ``-k gevent`` worker, plugin on vs off.

    python bench/gevent_start.py              # 5 rounds
    python bench/gevent_start.py --rounds 10

Each round starts gunicorn with one gevent worker serving an app that sends one event while it is
imported and one per request, waits until the worker has imported the app (a file it writes; no
request before the measured ones), times the first ``--requests`` requests one after another, and
stops the server.
Rounds alternate plugin off (``PENDO_AUTOLOAD=0``) and on, against a loopback Pendo/Segment stand-in.

A second figure isolates the hub: a ``monkey.patch_all()`` process with a greenlet that sleeps 1 ms
in a loop sends its first ``track()`` (which starts the plugin's worker and its imports); the longest
gap between two ticks in the next 1.5 s is how long the hub was blocked.

Prints one JSON line: per mode, the median and maximum of the first request and of the later ones,
and the median and maximum of the longest hub gap (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from pendo_plugin.sandbox import Sandbox

APP = """
import os
import segment.analytics as analytics

analytics.write_key = "bench-write-key"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.track("boot", "Imported", {"pid": os.getpid()})
open(os.environ["READY_FILE"], "w").close()  # the worker has imported the app


def application(environ, start_response):
    analytics.track("web", "Request", {"q": environ["QUERY_STRING"]})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

HUB_PROBE = """
from gevent import monkey; monkey.patch_all()
import os, time
import gevent
from segment.analytics import Client

client = Client("bench-write-key", host=os.environ["SEGMENT_HOST"])
gaps, done = [], []


def ticker():
    last = time.perf_counter()
    while not done:
        gevent.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


probe = gevent.spawn(ticker)
gevent.sleep(0.05)
client.track("u", "First")
gevent.sleep(1.5)
done.append(True)
probe.join()
print(max(gaps) * 1000)
"""

SECRET, KEY = "bench-track-secret", "bench-integration-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def environment(box: Sandbox, work: Path, plugin: bool, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENDO_")}
    env.update(
        PENDO_AUTOLOAD="1" if plugin else "0",
        PENDO_TRACK_SECRET=SECRET,
        PENDO_INTEGRATION_KEY=KEY,
        PENDO_DATA_URL=box.url,
        PENDO_API_URL=box.url,
        PENDO_SPOOL_DIR=str(work / "spool"),
        SEGMENT_HOST=box.url,
        READY_FILE=str(work / f"ready-{port}"),
    )
    return env


def hub_gap(box: Sandbox, work: Path, plugin: bool) -> float:
    """The longest time (ms) the hub was blocked around the first ``track()``."""
    env = environment(box, work, plugin, 0)
    command = [sys.executable, "-c", HUB_PROBE]
    probe = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    return float(probe.stdout.strip().splitlines()[-1])


def one_round(box: Sandbox, work: Path, plugin: bool, count: int) -> list[float]:
    """Milliseconds for each of the first ``count`` requests of a fresh gevent worker."""
    port = free_port()
    env = environment(box, work, plugin, port)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(work)]
    command.append("app:application")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (accepting(port) and (work / f"ready-{port}").exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.01)
        times = []
        for n in range(count):
            started = time.perf_counter()
            requests.get(f"http://127.0.0.1:{port}/?{n}", timeout=10).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5)
    opts = parser.parse_args()
    results: dict[str, list[list[float]]] = {"off": [], "on": []}
    gaps: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp, Sandbox(track_secret=SECRET, integration_key=KEY) as box:
        work = Path(tmp)
        (work / "app.py").write_text(APP)
        for _ in range(opts.rounds):
            for mode in ("off", "on"):
                results[mode].append(one_round(box, work, mode == "on", opts.requests))
                gaps[mode].append(hub_gap(box, work, mode == "on"))
    summary = {
        mode: {
            "first_ms_median": round(statistics.median(r[0] for r in runs), 1),
            "first_ms_max": round(max(r[0] for r in runs), 1),
            "later_ms_median": round(statistics.median(t for r in runs for t in r[1:]), 1),
            "later_ms_max": round(max(t for r in runs for t in r[1:]), 1),
            "hub_gap_ms_median": round(statistics.median(gaps[mode]), 1),
            "hub_gap_ms_max": round(max(gaps[mode]), 1),
        }
        for mode, runs in results.items()
    }
    print(json.dumps({"rounds": opts.rounds, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
