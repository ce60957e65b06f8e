"""The measured app: a real ``segment.analytics`` client calling ``track()``, one scenario per run.

``bench/run.py`` starts it as a subprocess with the Python of the environment the plugin is
installed in, so the plugin activates the way it does for users (the ``.pth`` bootstrap). Each
scenario prints its results as JSON lines on stdout:

- ``hot``: blocks of ``track()`` calls, the plugin on, kill-switched and (for reference) absent,
  interleaved round by round in one process against the same stand-ins; per-call times;
- ``pace``: N ``track()`` calls as fast as the app can make them, then waits for ``done`` on stdin
  (the parent learns from the stand-in when everything arrived) and reports its CPU time;
- ``memory``: N ``track()`` calls while Pendo is unreachable; resident memory and the spool;
- ``cpu``: rounds of N ``track()`` calls then ``flush()``, plugin on and kill-switched alternately in
  one process; process CPU (all threads) per delivered event;
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

from common import directory_bytes, proc_status_kib, send_line, summary_ns

WRITE_KEY = "bench-write-key"
EVENT = "Report Exported"
CONTEXT = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (bench)", "page": {"url": "https://app.example/r"}}


def properties(i: int) -> dict[str, Any]:
    """A small, typical set of track properties."""
    return {"format": "csv", "rows": i, "plan": "pro", "source": "dashboard"}


def user(i: int) -> str:
    return f"user-{i % 5000}"


def make_client(host: str, max_queue_size: int = 10_000) -> Any:
    """A real Segment client installed as ``segment.analytics``'s default one."""
    import segment.analytics as analytics
    from segment.analytics.client import Client

    client = Client(WRITE_KEY, host=host, max_queue_size=max_queue_size)
    analytics.write_key = WRITE_KEY
    analytics.host = host
    analytics.default_client = client
    return client


def segment_flush_only(client: Any) -> None:
    """Wait for Segment's own queue to drain, without asking the plugin to flush."""
    original = getattr(type(client).flush, "__wrapped__", None)
    if original is not None:
        original(client)
    else:
        client.queue.join()


def pendo_internals() -> dict[str, float]:
    """A peek at the delivery runtime for diagnostics: intake backlog, tasks, limiter (private API)."""
    try:
        from pendo_plugin import destination
    except ImportError:
        return {}
    runtime = getattr(destination, "_runtime", None)
    if runtime is None:
        return {}
    seen: dict[str, float] = {}
    intake = getattr(getattr(runtime, "intake", None), "live", None)
    if intake is not None:
        seen["intake"] = len(intake)
    worker = getattr(runtime, "_worker", None) or runtime  # the worker's state moved into its own object
    tasks = getattr(worker, "_tasks", None)
    if tasks is not None:
        seen["tasks"] = len(tasks)
    backlog = getattr(worker, "backlog_size", None)
    if callable(backlog):
        seen["backlog"] = backlog()
    limiter = getattr(getattr(worker, "_sender", None), "limiter", None)
    if limiter is not None:
        seen["limit"] = float(getattr(limiter, "limit", 0))
        seen["in_flight"] = float(getattr(limiter, "in_flight", 0))
    return seen


class Sampler:
    """Samples the plugin's internals, Segment's queue and resident memory every ``interval`` seconds."""

    def __init__(self, client: Any, interval: float, t0: float | None = None) -> None:
        self.client = client
        self.interval = interval
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            row = {"t": round(time.monotonic() - self.t0, 3), "rss_kib": proc_status_kib("VmRSS")}
            row["segment_queue"] = self.client.queue.qsize()
            row.update(pendo_internals())
            self.rows.append(row)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        peaks: dict[str, float] = {}
        for row in self.rows:
            for key, value in row.items():
                if key != "t":
                    peaks[key] = max(peaks.get(key, 0), value)
        return {"peaks": peaks, "series": self.rows}


def wait_line() -> str:
    return sys.stdin.readline().strip()


# ----------------------------------------------------------------- hot path


def hot(args: argparse.Namespace) -> None:
    """Interleaved blocks of ``track()`` with the plugin on, kill-switched and absent."""
    import segment.analytics as analytics

    import pendo_plugin

    client = make_client(args.url)
    original_enqueue = getattr(type(client)._enqueue, "__wrapped__", None)
    modes = ["on", "off"] + (["absent"] if original_enqueue is not None else [])

    def set_mode(mode: str) -> None:
        client.__dict__.pop("_enqueue", None)
        if mode == "absent":
            client._enqueue = types.MethodType(original_enqueue, client)
        pendo_plugin.configure(enabled=mode == "on")

    samples: dict[str, list[int]] = {mode: [] for mode in modes}
    round_medians: dict[str, list[float]] = {mode: [] for mode in modes}
    track = analytics.track
    clock = time.perf_counter_ns
    first_call: dict[str, int] = {}
    for number in range(args.warmup + args.rounds):
        shift = number % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            set_mode(mode)
            arguments = [(user(i), properties(i)) for i in range(args.block)]
            block: list[int] = []
            gc.collect()
            for user_id, props in arguments:
                started = clock()
                track(user_id, EVENT, props, CONTEXT)
                block.append(clock() - started)
            if number == 0:
                first_call[mode] = block[0]
            analytics.flush()
            if number >= args.warmup:
                samples[mode].extend(block)
                block.sort()
                round_medians[mode].append(block[len(block) // 2] / 1000)
    set_mode("on")
    result = {
        "modes": {mode: summary_ns(values) for mode, values in samples.items()},
        "round_medians_us": round_medians,
        "first_call_us": {mode: value / 1000 for mode, value in first_call.items()},
        "stats": pendo_plugin.stats(),
    }
    send_line(result)
    client.shutdown()


# ----------------------------------------------------------------- pace and CPU


def pace(args: argparse.Namespace) -> None:
    """N ``track()`` calls as fast as possible; CPU time until the parent says everything arrived."""
    import segment.analytics as analytics

    import pendo_plugin

    client = make_client(args.url, max_queue_size=max(10_000, args.n + 1000))
    arguments = [(user(i), properties(i)) for i in range(args.n)]
    gc.collect()
    send_line({"ready": True})
    if wait_line() != "go":
        return
    track = analytics.track
    clock = time.perf_counter_ns
    t0 = time.monotonic()
    cpu0 = time.process_time()
    sampler = Sampler(client, args.sample_interval, t0)
    first = clock()
    track(arguments[0][0], EVENT, arguments[0][1], CONTEXT)
    first_call_us = (clock() - first) / 1000
    for user_id, props in arguments[1:]:
        track(user_id, EVENT, props, CONTEXT)
    sent = time.monotonic()
    send_line({"t0": t0, "sent": sent, "first_call_us": first_call_us})
    wait_line()  # "done": the stand-in holds everything it was waiting for
    cpu = time.process_time() - cpu0
    samples = sampler.stop()
    send_line(
        {"cpu_s": cpu, "wall_s": time.monotonic() - t0, "samples": samples, "stats": pendo_plugin.stats()}
    )
    client.shutdown()


# ----------------------------------------------------------------- the first track()


def first(args: argparse.Namespace) -> None:
    """The first ``track()`` of a fresh process, after its client was created: wall time and the app
    thread's CPU (``time.thread_time_ns``), then the second call for comparison."""
    import segment.analytics as analytics

    client = make_client(args.url)
    send_line({"ready": True})
    if wait_line() != "go":
        return
    clock, thread_clock = time.perf_counter_ns, time.thread_time_ns
    calls = []
    for i in range(2):
        started, cpu0 = clock(), thread_clock()
        analytics.track(user(i), EVENT, properties(i), CONTEXT)
        calls.append(((clock() - started) / 1000, (thread_clock() - cpu0) / 1000))
    send_line({"first_call_us": calls[0][0], "first_call_cpu_us": calls[0][1], "second_call_us": calls[1][0]})
    client.shutdown()


# ----------------------------------------------------------------- CPU per delivered event


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each live thread of this process, by role (from ``/proc/self/task``), and
    the Pendo worker's kernel (system) share."""
    roles = {"MainThread": "app", "pendo-plugin-worker": "pendo worker"}
    found: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        role = roles.get(thread.name, "segment consumer" if "Thread-" in thread.name else "other")
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[role] = found.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        if role == "pendo worker":  # its share spent in the kernel (syscalls: socket I/O, fsync, epoll)
            found["pendo worker, kernel"] = found.get("pendo worker, kernel", 0.0) + int(fields[12]) / ticks
    return found


def cpu(args: argparse.Namespace) -> None:
    """Process CPU per delivered event: N calls then ``flush()``, plugin on and off alternately."""
    import segment.analytics as analytics

    import pendo_plugin

    client = make_client(args.url, max_queue_size=max(10_000, args.n + 1000))
    if args.transport != "plugin":  # another HTTP client under the same plugin (bench/clients.py)
        from transports import make

        pendo_plugin.configure(transport=make(args.transport, pendo_plugin.config.current().max_concurrency))
    per_event: dict[str, list[float]] = {"on": [], "off": []}
    by_thread: dict[str, dict[str, float]] = {"on": {}, "off": {}}
    sent_before = 0
    for number in range(args.warmup + args.rounds):
        for mode in ("on", "off") if number % 2 == 0 else ("off", "on"):
            pendo_plugin.configure(enabled=mode == "on")
            arguments = [(user(i), properties(i)) for i in range(args.n)]
            gc.collect()
            threads0 = thread_cpu()
            cpu0 = time.process_time()
            for user_id, props in arguments:
                analytics.track(user_id, EVENT, props, CONTEXT)
            analytics.flush()
            spent = time.process_time() - cpu0
            threads = thread_cpu()
            sent = pendo_plugin.stats().get("sent:track", 0)
            if mode == "on" and sent - sent_before != args.n:
                raise SystemExit(f"plugin on: {sent - sent_before} of {args.n} events delivered to Pendo")
            sent_before = sent
            if number >= args.warmup:
                per_event[mode].append(spent / args.n * 1e6)
                for name, seconds in threads.items():
                    share = (seconds - threads0.get(name, 0.0)) / args.n * 1e6 / args.rounds
                    by_thread[mode][name] = by_thread[mode].get(name, 0.0) + share
    result = {"n": args.n, "cpu_us_per_event": per_event, "by_thread_us": by_thread}
    send_line({**result, "stats": pendo_plugin.stats()})
    client.shutdown()


# ----------------------------------------------------------------- memory under an outage


def memory(args: argparse.Namespace) -> None:
    """N ``track()`` calls while Pendo is unreachable; memory growth and what ends up in the spool."""
    import segment.analytics as analytics

    import pendo_plugin

    client = make_client(args.url)
    track = analytics.track
    high_water = client.queue.maxsize * 8 // 10
    warm = 1000
    for i in range(warm):
        track(user(i), EVENT, properties(i), CONTEXT)
    segment_flush_only(client)
    gc.collect()
    baseline_kib = proc_status_kib("VmRSS")
    t0 = time.monotonic()
    cpu0 = time.process_time()
    sampler = Sampler(client, 0.25, t0)
    queue = client.queue
    waited = 0
    for i in range(args.n):
        if i % 100 == 0:
            while queue.qsize() > high_water:  # never outrun Segment: its full queue would drop
                time.sleep(0.001)
                waited += 1
        track(user(i), EVENT, properties(i), CONTEXT)
    sent = time.monotonic()
    segment_flush_only(client)
    delivered_segment = time.monotonic()
    end_kib = proc_status_kib("VmRSS")
    peak_kib = proc_status_kib("VmHWM")
    samples = sampler.stop()
    cpu_run = time.process_time() - cpu0
    stats_before = pendo_plugin.stats()
    shutdown_started = time.monotonic()
    client.join()  # Segment stops; the plugin drains what it can and spools the rest (bounded)
    shutdown_s = time.monotonic() - shutdown_started
    spool = Path(args.spool_dir)
    spool_bytes, spool_files = directory_bytes(spool) if spool.exists() else (0, 0)
    send_line(
        {
            "n": args.n,
            "baseline_kib": baseline_kib,
            "end_kib": end_kib,
            "peak_kib": peak_kib,
            "growth_peak_kib": peak_kib - baseline_kib,
            "growth_end_kib": end_kib - baseline_kib,
            "send_s": sent - t0,
            "segment_done_s": delivered_segment - t0,
            "backpressure_sleeps": waited,
            "cpu_s": cpu_run,
            "shutdown_s": shutdown_s,
            "spool_bytes": spool_bytes,
            "spool_files": spool_files,
            "stats_before_shutdown": stats_before,
            "stats": pendo_plugin.stats(),
            "peaks": samples["peaks"],
            "rss_series": [
                (row["t"], row["rss_kib"], row.get("intake", 0)) for row in samples["series"][::4]
            ],
        }
    )
    os._exit(0)  # the atexit shutdown already ran through join(); skip a second bounded wait


def main() -> int:
    parser = argparse.ArgumentParser(description="The app side of the pendo_plugin benchmarks.")
    commands = parser.add_subparsers(dest="scenario", required=True)
    hot_parser = commands.add_parser("hot")
    hot_parser.add_argument("--url", required=True)
    hot_parser.add_argument("--rounds", type=int, default=30)
    hot_parser.add_argument("--warmup", type=int, default=3)
    hot_parser.add_argument("--block", type=int, default=1000)
    pace_parser = commands.add_parser("pace")
    pace_parser.add_argument("--url", required=True)
    pace_parser.add_argument("--n", type=int, default=5000)
    pace_parser.add_argument("--sample-interval", type=float, default=0.05)
    memory_parser = commands.add_parser("memory")
    memory_parser.add_argument("--url", required=True)
    memory_parser.add_argument("--n", type=int, default=1_000_000)
    memory_parser.add_argument("--spool-dir", required=True)
    first_parser = commands.add_parser("first")
    first_parser.add_argument("--url", required=True)
    cpu_parser = commands.add_parser("cpu")
    cpu_parser.add_argument("--url", required=True)
    cpu_parser.add_argument("--n", type=int, default=3000)
    cpu_parser.add_argument("--rounds", type=int, default=5)
    cpu_parser.add_argument("--warmup", type=int, default=1)
    cpu_parser.add_argument("--transport", choices=("plugin", "aiohttp", "pycurl"), default="plugin")
    args = parser.parse_args()
    scenarios = {"hot": hot, "pace": pace, "first": first, "cpu": cpu, "memory": memory}
    scenarios[args.scenario](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
