"""Fleet simulation: N app processes sharing one Pendo rate budget (and one queue) through Redis.

    python bench/fleet.py                      # 6 processes x 250 (budget) / 2,000 (CPU) events
    python bench/fleet.py --processes 8 --events 400 --cpu-events 4000 --json

Four runs against the Pendo stand-in (``pendo_plugin.sandbox.Sandbox``), each with N real processes
using a real ``segment.analytics`` client:

1. ``budget, fleet mode``: Redis on, ``PENDO_RATE_LIMIT=80``, the stand-in answers 429 past 100
   requests/s per endpoint (like Pendo). Delivered events/s against the budget, the 429 ratio, Redis
   round trips per event.
2. ``budget, alone``: the same without Redis (each process keeps 80/s on its own).
3. ``no budget, fleet mode`` and 4. ``no budget, alone``: no limit anywhere, ``--cpu-events`` per
   process; track() latency and the CPU per event of each process (all its threads, from the end of its
   start-up to the end of its last flush), on against off.

5. ``no budget, WAIT 1 replica``: run 3 on a Redis with one replica and ``PENDO_REDIS_REPLICAS=1``
   (every append waits for the replica): the cost of durable writes per event, against run 3.
6. ``no budget, WAIT, no replica``: ``PENDO_REDIS_REPLICAS=1`` on the Redis without replica: appends are
   taken back out of the stream and each process delivers from its local spool (``requests`` = events).

Each process starts with one event and a flush (its start-up: the worker's lazy imports, redis-py's
among them, and the first connections), reported apart as ``startup_cpu_ms_per_process`` (without
Segment's upload thread); the events measured follow it once every process has started (else, in fleet
mode, a late process's start-up flush sends, from the shared stream, events the others measure), and the
CPU and Redis round trips per event count only theirs.

Needs ``redis-server`` on PATH (Debian's package) and the plugin installed with the ``redis`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import closed_port
from pendo_plugin.sandbox import Sandbox

TRACK_SECRET = "bench-track-secret"
LIMIT = 100
BUDGET = 80

APP = """
import json, os, statistics, threading, time
import pendo_plugin
from segment.analytics import Client
from segment.analytics.consumer import Consumer

def segment_cpu():
    # CPU of Segment's own upload threads (they poll their queue every upload_interval, plugin or not)
    total = 0.0
    for thread in threading.enumerate():
        if isinstance(thread, Consumer) and thread.native_id is not None:
            try:
                with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
    return total

client = Client("bench", host=os.environ["SEGMENT_HOST"], upload_interval=0.05, max_queue_size=100000)
latencies = []
count = int(os.environ["BENCH_EVENTS"])
started, segment_started = time.process_time(), segment_cpu()
# start-up: the first event through its flush (the worker's lazy imports, the first connections)
client.track(user_id=f"u{os.getpid()}", event="Fleet bench", properties={"n": -1})
client.flush()
pendo_plugin.flush(60)
startup = time.process_time() - started - (segment_cpu() - segment_started)
# every process ends its start-up before any measures: in fleet mode a start-up's flush would else send
# (and count as start-up) the events the first processes measure, which it reads from the shared stream
open(os.path.join(os.environ["BENCH_BARRIER"], str(os.getpid())), "w").close()
barrier_deadline = time.monotonic() + 120
while len(os.listdir(os.environ["BENCH_BARRIER"])) < int(os.environ["BENCH_PROCESSES"]):
    if time.monotonic() > barrier_deadline:
        raise SystemExit("the other processes did not start within 120 s")
    time.sleep(0.01)
cpu_before, segment_before = time.process_time(), segment_cpu()
startup_round_trips = pendo_plugin.stats().get("redis:round_trips", 0)
for n in range(count):
    began = time.perf_counter()
    client.track(user_id=f"u{os.getpid()}", event="Fleet bench", properties={"n": n})
    latencies.append(time.perf_counter() - began)
client.flush()
flushed = pendo_plugin.flush(300)
cpu, segment = time.process_time() - cpu_before, segment_cpu() - segment_before
latencies.sort()
print(json.dumps({
    "flushed": flushed,
    "cpu": cpu,
    "startup_cpu": startup,
    "round_trips": pendo_plugin.stats().get("redis:round_trips", 0) - startup_round_trips,
    "segment_cpu": segment,
    "median_us": statistics.median(latencies) * 1e6,
    "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    "stats": pendo_plugin.stats(),
}))
"""


class Redis:
    """A throwaway ``redis-server`` on a free loopback port, without persistence (``primary``: a
    replica of that server)."""

    def __init__(self, directory: Path, primary: Redis | None = None) -> None:
        self.port = closed_port()
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
        args += ["--replicaof", "127.0.0.1", str(primary.port)] if primary is not None else []
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.process = subprocess.Popen(
            [server, *args],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                if primary is None or client.info("replication")["master_link_status"] == "up":
                    break
                time.sleep(0.02)
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """CPU the server has used so far (user + system, all its threads)."""
        import redis

        info = redis.Redis(port=self.port).info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def run_fleet(
    processes: int,
    events: int,
    redis: Redis | None,
    budget: float | None,
    limit: int | None,
    workdir: Path,
    replicas: int = 0,
) -> dict[str, Any]:
    """Start ``processes`` apps at once; delivered rate, 429 ratio and the apps' own figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    barrier = Path(tempfile.mkdtemp(dir=workdir))  # each app writes a file here once started
    with Sandbox(track_secret=TRACK_SECRET, rate_limit=limit, log_limit=1_000_000) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PENDO_")}
        base.update(
            PENDO_TRACK_SECRET=TRACK_SECRET,
            PENDO_DATA_URL=box.url,
            PENDO_API_URL=box.url,
            PENDO_FLUSH_TIMEOUT="300",
            SEGMENT_HOST=box.url,
            BENCH_EVENTS=str(events),
            BENCH_PROCESSES=str(processes),
            BENCH_BARRIER=str(barrier),
        )
        if redis is not None:
            base.update(PENDO_REDIS_URL=redis.url, PENDO_REDIS_REPLICAS=str(replicas))
        redis_cpu = redis.cpu_seconds() if redis is not None else 0.0
        if budget:
            base["PENDO_RATE_LIMIT"] = str(budget)
        started = time.monotonic()
        apps = [
            subprocess.Popen(
                [sys.executable, "-c", APP],
                env={**base, "PENDO_SPOOL_DIR": str(workdir / f"spool-{n}")},
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(processes)
        ]
        results = [json.loads(app.communicate(timeout=600)[0].splitlines()[-1]) for app in apps]
        wall = time.monotonic() - started
        redis_cpu = redis.cpu_seconds() - redis_cpu if redis is not None else 0.0
        track = [entry for entry in box.request_log() if entry.path == "/data/track"]
        accepted = sorted(entry.at for entry in track if entry.status == 200)
        measured = (event for event in box.track_events() if event["properties"]["n"] >= 0)  # not start-up's
        delivered = len({(event["visitorId"], event["properties"]["n"]) for event in measured})
    total = processes * events
    stats = [result["stats"] for result in results]
    return {
        "processes": processes,
        "events": total,
        "delivered": delivered,
        "all_flushed": all(result["flushed"] for result in results),
        "seconds": round(wall, 2),
        "delivered_per_s": round((len(accepted) - 1) / (accepted[-1] - accepted[0]), 1)
        if len(accepted) > 1
        else 0,
        "requests": len(track),
        "answered_429": sum(entry.status == 429 for entry in track),
        "ratio_429": round(sum(entry.status == 429 for entry in track) / max(1, len(track)), 4),
        "redis_round_trips_per_event": round(sum(r["round_trips"] for r in results) / total, 3),
        "track_median_us": round(sorted(r["median_us"] for r in results)[processes // 2], 1),
        "track_p99_us": round(max(r["p99_us"] for r in results), 1),
        "startup_cpu_ms_per_process": round(sum(r["startup_cpu"] for r in results) / processes * 1e3, 1),
        "cpu_ms_per_1000_events": round(sum(r["cpu"] for r in results) / total * 1e6, 1),
        "cpu_ms_per_1000_events_but_segment": round(
            sum(r["cpu"] - r["segment_cpu"] for r in results) / total * 1e6, 1
        ),
        "redis_cpu_ms_per_1000_events": round(redis_cpu / total * 1e6, 1),
        "not_replicated": sum(s.get("redis:not_replicated", 0) for s in stats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=6, help="4 to 8 app processes (default 6)")
    parser.add_argument("--events", type=int, default=250, help="track events per process (default 250)")
    parser.add_argument("--cpu-events", type=int, default=2000, help="per process, no-budget runs (2000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pendo-fleet-bench-") as temp:
        workdir = Path(temp)
        redis = Redis(workdir)
        (workdir / "r").mkdir()
        (workdir / "p").mkdir()
        primary = Redis(workdir / "p")
        replica = Redis(workdir / "r", primary)
        try:
            runs = {
                "budget, fleet mode": run_fleet(
                    args.processes, args.events, redis, BUDGET, LIMIT, workdir
                ),
                "budget, alone": run_fleet(args.processes, args.events, None, BUDGET, LIMIT, workdir / "b"),
                "no budget, fleet mode": run_fleet(
                    args.processes, args.cpu_events, redis, None, None, workdir / "c"
                ),
                "no budget, alone": run_fleet(
                    args.processes, args.cpu_events, None, None, None, workdir / "d"
                ),
                "no budget, WAIT 1 replica": run_fleet(
                    args.processes, args.cpu_events, primary, None, None, workdir / "e", replicas=1
                ),
                "no budget, WAIT, no replica": run_fleet(
                    args.processes, args.cpu_events, redis, None, None, workdir / "f", replicas=1
                ),
            }
        finally:
            for server in (redis, replica, primary):
                server.stop()
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    names = list(next(iter(runs.values())))
    print(f"{'':32}" + "".join(f"{name:>28}" for name in runs))
    for key in names:
        print(f"{key:32}" + "".join(f"{run[key]!s:>28}" for run in runs.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
