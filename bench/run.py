"""pendo_plugin benchmarks: each figure measured side by side with Segment's own uploader, in one run.

    python bench/run.py            # default sizes, a few minutes on 2 cores
    python bench/run.py --quick    # smaller sizes (memory run with 100,000 events)
    python bench/run.py --json     # JSON on stdout, the table on stderr

1. hot path: ``analytics.track()`` median and p99, plugin on vs off (kill switch), interleaved blocks
   in one process against the same loopback stand-ins; target ratio <= 1.05 (must be <= 1.10).
2. pace: N track events with Segment and Pendo each answering after 50 ms; time until Pendo holds
   all N over the time until Segment does; target <= 1.0 (must be <= 2.0).
3. memory: N events while Pendo is unreachable (a closed loopback port); resident memory growth of
   the app over the same run with the plugin off, and the spool's size; target <= 50 MB.
4. CPU: process CPU seconds (all threads) per thousand events delivered, plugin on vs off; and process
   CPU per delivered event, rounds of N calls then ``flush()`` with the plugin on and kill-switched
   alternately in one process; target on/off <= 2.
5. start-up: the ``.pth`` bootstrap's import time in every interpreter, and what activation adds to
   ``import segment.analytics`` (against ``PENDO_AUTOLOAD=0``).

The stand-ins run in their own process (``standin.py``), the app in another (``workload.py``),
started with this Python, which must be the environment the plugin is installed in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import closed_port, machine
from processes import (
    EXTRA_ENV,
    HERE,
    TRACK_SECRET,
    BenchError,
    Child,
    app_env,
    clean_env,
    run_to_end,
    standin,
)
from report import figures, table

WORKLOAD = HERE / "workload.py"
CEILING = HERE / "ceiling.py"
RTT = 0.05


# ----------------------------------------------------------------- 1. hot path


def bench_hot(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    with standin("sandbox", 0.0, 0.0) as (_, url):
        argv = [str(WORKLOAD), "hot", "--url", url, "--rounds", str(opts.hot_rounds)]
        argv += ["--block", str(opts.hot_block)]
        result = run_to_end(argv, app_env(url, work / "spool-hot", True), 600)
    modes = result["modes"]
    on, off = modes["on"], modes["off"]
    result["median_ratio"] = on["median_us"] / off["median_us"]
    result["p99_ratio"] = on["p99_us"] / off["p99_us"]
    rounds = result["round_medians_us"]
    result["round_ratio_median"] = median([a / b for a, b in zip(rounds["on"], rounds["off"], strict=True)])
    if "absent" in modes:
        result["median_ratio_vs_absent"] = on["median_us"] / modes["absent"]["median_us"]
        result["p99_ratio_vs_absent"] = on["p99_us"] / modes["absent"]["p99_us"]
    return result


# ----------------------------------------------------------------- 2. pace (and 4. CPU)


def pace_once(sandbox: Child, url: str, n: int, enabled: bool, work: Path) -> dict[str, Any]:
    sandbox.ask({"cmd": "reset"})
    app = Child(
        [str(WORKLOAD), "pace", "--url", url, "--n", str(n)], app_env(url, work / "spool-pace", enabled)
    )
    try:
        app.read()  # ready: imports done, arguments built
        targets = {"segment_messages": n}
        if enabled:
            targets["track_events"] = n
        sandbox.ask({"cmd": "watch", "targets": targets})
        app.write("go")
        started = app.read()
        reached = sandbox.ask({"cmd": "result", "timeout": max(60.0, n / 50)})
        app.write("done")
        finished = app.read()
    finally:
        app.close(30)
    t0 = started["t0"]

    def elapsed(name: str) -> float | None:
        moment = reached["reached"].get(name)
        return None if moment is None else moment - t0

    return {
        "plugin": "on" if enabled else "off",
        "n": n,
        "enqueue_s": started["sent"] - t0,
        "first_call_us": started["first_call_us"],
        "segment_s": elapsed("segment_messages"),
        "pendo_s": elapsed("track_events"),
        "counts": reached["counts"],
        "cpu_s": finished["cpu_s"],
        "wall_s": finished["wall_s"],
        "peaks": finished["samples"]["peaks"],
        "series": finished["samples"]["series"],
        "stats": finished["stats"],
    }


def bench_pace(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with standin("sandbox", RTT, RTT) as (sandbox, url):
        for _ in range(opts.pace_repeat):
            for enabled in (True, False):
                run = pace_once(sandbox, url, opts.pace_n, enabled, work)
                runs[run["plugin"]].append(run)
    on, off = runs["on"], runs["off"]
    pendo = [run["pendo_s"] for run in on]
    segment = [run["segment_s"] for run in on]
    missing = None in pendo or None in segment
    ratio = None if missing else median([p / s for p, s in zip(pendo, segment, strict=True)])
    per_k = 1000 / opts.pace_n
    cpu_on = median([run["cpu_s"] for run in on]) * per_k
    cpu_off = median([run["cpu_s"] for run in off]) * per_k
    return {
        "n": opts.pace_n,
        "rtt_s": RTT,
        "ratio": ratio,
        "pendo_s": None if None in pendo else median(pendo),
        "segment_s": None if None in segment else median(segment),
        "segment_s_plugin_off": median_or_none([run["segment_s"] for run in off]),
        "cpu_per_1k_on_s": cpu_on,
        "cpu_per_1k_off_s": cpu_off,
        "cpu_ratio": cpu_on / cpu_off if cpu_off else None,
        "runs": runs,
    }


def bench_first(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The first ``track()`` in fresh processes, plugin on and off alternately; medians."""
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with standin("sandbox", 0.0, 0.0) as (_, url):
        for number in range(opts.first_runs):
            for enabled in (True, False) if number % 2 == 0 else (False, True):
                env = app_env(url, work / "spool-first", enabled)
                app = Child([str(WORKLOAD), "first", "--url", url], env)
                try:
                    app.read()  # ready: the client exists
                    app.write("go")
                    runs["on" if enabled else "off"].append(app.read())
                finally:
                    app.close(30)
    summary: dict[str, Any] = {"runs": opts.first_runs, "by_run": runs}
    for mode, found in runs.items():
        for key in ("first_call_us", "first_call_cpu_us", "second_call_us"):
            summary[f"{mode}_{key}"] = median([run[key] for run in found])
    return summary


def bench_cpu(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Process CPU per delivered event, plugin on vs off, in the same process and run."""
    with standin("sandbox", 0.0, 0.0) as (_, url):
        argv = [str(WORKLOAD), "cpu", "--url", url, "--n", str(opts.cpu_n), "--rounds", str(opts.cpu_rounds)]
        result = run_to_end(argv, app_env(url, work / "spool-cpu", True), 600)
    per_event = result["cpu_us_per_event"]
    on, off = per_event["on"], per_event["off"]
    result["on_us"] = median(on)
    result["off_us"] = median(off)
    result["ratio"] = result["on_us"] / result["off_us"]
    result["round_ratio_median"] = median([a / b for a, b in zip(on, off, strict=True)])
    return result


# ----------------------------------------------------------------- 3. memory under an outage


def bench_memory(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with standin("sink", 0.0, 0.0) as (_, url):
        for enabled in (False, True):
            spool = work / f"spool-memory-{'on' if enabled else 'off'}"
            down = f"http://127.0.0.1:{closed_port()}"
            argv = [str(WORKLOAD), "memory", "--url", url, "--n", str(opts.memory_n)]
            argv += ["--spool-dir", str(spool)]
            results["on" if enabled else "off"] = run_to_end(argv, app_env(down, spool, enabled), 600)
    on, off = results["on"], results["off"]
    results["growth_mb"] = (on["growth_peak_kib"] - off["growth_peak_kib"]) / 1024
    results["n"] = opts.memory_n
    return results


# ----------------------------------------------------------------- start-up: the .pth bootstrap's cost


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _bootstrap_import_us(env: dict[str, str]) -> float:
    """Cumulative import time of the bootstrap (``pendo_plugin._autoload``) in ``python -c pass``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "pendo_plugin._autoload":
            return float(parts[1])
    return float("nan")


def bench_startup(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    """What the bootstrap costs every interpreter, and what activation adds to importing the SDK."""
    env = clean_env()
    off = {**env, "PENDO_AUTOLOAD": "0"}
    runs = opts.startup_runs
    imports = sorted(_bootstrap_import_us(env) for _ in range(runs))
    bare = sorted(_wall(["-c", "pass"], env) for _ in range(runs))
    sdk_on: list[float] = []
    sdk_off: list[float] = []
    for _ in range(runs):  # interleaved, like the hot path
        sdk_on.append(_wall(["-c", "import segment.analytics"], env))
        sdk_off.append(_wall(["-c", "import segment.analytics"], off))
    return {
        "runs": runs,
        "bootstrap_import_ms": median(imports) / 1000,
        "python_pass_ms": median(bare) * 1000,
        "import_sdk_on_ms": median(sdk_on) * 1000,
        "import_sdk_off_ms": median(sdk_off) * 1000,
    }


# ----------------------------------------------------------------- diagnostics: the stand-in's ceiling


def bench_ceiling(opts: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for latency, concurrency in ((0.0, 64), (RTT, 64), (RTT, 256)):
        for client in ("aiohttp", "plugin"):
            with standin("sandbox", latency, latency) as (_, url):
                argv = [str(CEILING), "--url", url, "--n", str(opts.ceiling_n)]
                argv += ["--concurrency", str(concurrency), "--secret", TRACK_SECRET, "--client", client]
                row = run_to_end(argv, clean_env(), 300)
                row["latency_s"] = latency
                row["client"] = client
                rows.append(row)
    return rows


# ----------------------------------------------------------------- report


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def median_or_none(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return median(known) if len(known) == len(values) and known else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="pendo_plugin benchmarks, side by side with Segment's uploader."
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (memory N=100,000)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    parser.add_argument(
        "--only",
        action="append",
        choices=("hot", "pace", "first", "cpu", "memory", "startup", "ceiling"),
        help="run only these parts (repeatable); CPU comes with pace",
    )
    parser.add_argument("--hot-rounds", type=int, help="interleaved rounds per mode (default 30, quick 10)")
    parser.add_argument("--hot-block", type=int, default=1000, help="track() calls per block")
    parser.add_argument("--pace-n", type=int, default=5000, help="events in the pace run")
    parser.add_argument("--pace-repeat", type=int, help="pace runs per mode, median taken (default 1)")
    parser.add_argument(
        "--first-runs", type=int, default=7, help="fresh processes per mode for the first track()"
    )
    parser.add_argument("--cpu-n", type=int, default=3000, help="track() calls per CPU round, then flush()")
    parser.add_argument(
        "--cpu-rounds", type=int, help="CPU rounds per mode, median taken (default 9, quick 3)"
    )
    parser.add_argument("--memory-n", type=int, help="events in the outage run (default 1,000,000)")
    parser.add_argument("--startup-runs", type=int, default=15, help="interpreter starts per start-up figure")
    parser.add_argument("--ceiling-n", type=int, default=5000, help="requests per stand-in ceiling run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PENDO_NAME=VALUE",
        help="a plugin setting for the app processes, e.g. PENDO_MAX_CONCURRENCY=128",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (spools) for inspection")
    opts = parser.parse_args(argv)
    opts.hot_rounds = opts.hot_rounds or (10 if opts.quick else 30)
    opts.pace_repeat = opts.pace_repeat or 1
    opts.cpu_rounds = opts.cpu_rounds or (3 if opts.quick else 9)
    opts.memory_n = opts.memory_n or (100_000 if opts.quick else 1_000_000)
    opts.only = set(opts.only or ("hot", "pace", "first", "cpu", "memory", "startup", "ceiling"))
    for setting in opts.set:
        name, _, value = setting.partition("=")
        if not name.startswith("PENDO_") or not _:
            parser.error(f"--set {setting!r}: use PENDO_NAME=VALUE")
        EXTRA_ENV[name] = value
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine(),
        "options": {
            key: sorted(value) if isinstance(value, set) else value for key, value in vars(opts).items()
        },
    }
    progress = sys.stderr
    work = Path(tempfile.mkdtemp(prefix="pendo-bench-"))
    steps = [("hot", bench_hot), ("pace", bench_pace), ("first", bench_first), ("cpu", bench_cpu)]
    steps.append(("memory", bench_memory))
    steps.append(("startup", bench_startup))
    try:
        for name, step in steps:
            if name in opts.only:
                progress.write(f"running {name} ...\n")
                progress.flush()
                try:
                    results[name] = step(opts, work)
                except BenchError as exc:
                    results.setdefault("errors", {})[name] = str(exc)
                    progress.write(f"{name} failed: {exc}\n")
        if "ceiling" in opts.only:
            progress.write("running ceiling ...\n")
            results["ceiling"] = bench_ceiling(opts)
    finally:
        if not opts.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    results["elapsed_s"] = time.monotonic() - started
    results["figures"] = figures(results)
    (sys.stderr if opts.json else sys.stdout).write(table(results))
    if opts.json:
        json.dump(results, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
