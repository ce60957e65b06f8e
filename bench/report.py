"""Turns the benchmark's results into the headline figures (with verdicts) and the printed table."""

from __future__ import annotations

from typing import Any

# figure -> (target, hard limit); lower is better for all of them
TARGETS: dict[str, tuple[float, float]] = {
    "hot_median_ratio": (1.05, 1.10),
    "hot_p99_ratio": (1.05, 1.10),
    "pace_ratio": (1.0, 2.0),
    "memory_growth_mb": (50.0, 50.0),
    "cpu_per_event_ratio": (2.0, 2.0),
    "first_track_ms": (1.0, 1.0),
}
TARGET_TEXT = {
    "hot_median_ratio": "<=1.05 (1.10)",
    "hot_p99_ratio": "<=1.05 (1.10)",
    "pace_ratio": "<=1.0 (2.0)",
    "memory_growth_mb": "<=50 MB",
    "cpu_per_event_ratio": "<=2.0",
    "first_track_ms": "<=1 ms",
}
WIDTHS = (46, 13, 13, 11, 15)
CLIENTS = {"aiohttp": "plain aiohttp client", "plugin": "the plugin's client.py"}


def verdict(name: str, value: float | None) -> str:
    """PASS, MISS (within the hard limit) or MISS (over it)."""
    target, limit = TARGETS[name]
    if value is None:
        return "MISS (no value)"
    if value <= target:
        return "PASS"
    return "MISS (within limit)" if value <= limit else "MISS (over limit)"


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers with their targets and verdicts."""
    found: dict[str, Any] = {}

    def add(name: str, value: float | None, **extra: Any) -> None:
        found[name] = {"value": value, "target": TARGETS[name], "result": verdict(name, value), **extra}

    hot = results.get("hot")
    if hot:
        add("hot_median_ratio", hot["median_ratio"])
        add("hot_p99_ratio", hot["p99_ratio"])
    pace = results.get("pace")
    if pace:
        add("pace_ratio", pace["ratio"], pendo_s=pace["pendo_s"], segment_s=pace["segment_s"])
        found["cpu_per_1k_s"] = {
            "on": pace["cpu_per_1k_on_s"],
            "off": pace["cpu_per_1k_off_s"],
            "ratio": pace["cpu_ratio"],
        }
        add("first_track_ms", pace["runs"]["on"][0]["first_call_us"] / 1000)
    first = results.get("first")
    if first:  # fresh processes of their own, medians: preferred to the pace run's single process
        add("first_track_ms", first["on_first_call_us"] / 1000, off_ms=first["off_first_call_us"] / 1000)
    cpu = results.get("cpu")
    if cpu:
        add("cpu_per_event_ratio", cpu["ratio"], on_us=cpu["on_us"], off_us=cpu["off_us"])
    memory = results.get("memory")
    if memory:
        add("memory_growth_mb", memory["growth_mb"], spool_bytes=memory["on"]["spool_bytes"])
    return found


def table(results: dict[str, Any]) -> str:
    """The report: machine, one row per figure (plugin on, plugin off, ratio, target, verdict), details."""
    info = results["machine"]
    lines = [
        f"pendo_plugin benchmarks ({results['elapsed_s']:.0f} s)",
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['memory_gib']} GiB RAM, "
        f"Linux {info['kernel']}, {info['implementation']} {info['python']}",
        "",
    ]
    heading = ("figure", "plugin on", "plugin off", "on/off", "target")
    lines.append(_cells(heading, "result"))
    lines.append("-" * (sum(WIDTHS) + 20))
    for cells, result in _rows(results):
        lines.append(_cells(cells, result))
    for name, error in (results.get("errors") or {}).items():
        lines.append(f"{name}: FAILED: {error.strip().splitlines()[-1] if error.strip() else error}")
    details = _details(results)
    if details:
        lines += ["", "details", *details]
    return "\n".join(lines) + "\n"


def _cells(cells: tuple[str, ...], result: str) -> str:
    first, *rest = cells
    text = f"{first:<{WIDTHS[0]}}"
    for cell, width in zip(rest, WIDTHS[1:], strict=True):
        text += f"{cell:>{width}}" if width != WIDTHS[-1] else f"  {cell:<{width}}"
    return f"{text}{result}".rstrip()


Row = tuple[tuple[str, ...], str]


def _row(
    label: str,
    on: str,
    off: str,
    ratio: str,
    figure: str | None = None,
    value: float | None = None,
    note: str = "",
) -> Row:
    """One table row; with ``figure`` its target and the verdict on ``value`` are filled in."""
    if figure is None:
        return (label, on, off, ratio, ""), note
    return (label, on, off, ratio, TARGET_TEXT[figure]), (verdict(figure, value) + note).strip()


def _rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    hot, pace, memory = results.get("hot"), results.get("pace"), results.get("memory")
    if hot:
        on, off = hot["modes"]["on"], hot["modes"]["off"]
        rows.append(
            _row(
                f"1 track() median, {on['count']:,} calls each",
                fmt(on["median_us"], ".1f", " us"),
                fmt(off["median_us"], ".1f", " us"),
                fmt(hot["median_ratio"], ".3f"),
                "hot_median_ratio",
                hot["median_ratio"],
            )
        )
        rows.append(
            _row(
                "  track() p99",
                fmt(on["p99_us"], ".1f", " us"),
                fmt(off["p99_us"], ".1f", " us"),
                fmt(hot["p99_ratio"], ".3f"),
                "hot_p99_ratio",
                hot["p99_ratio"],
            )
        )
        absent = hot["modes"].get("absent")
        if absent:
            rows.append(
                _row(
                    "  plugin not installed (reference)",
                    "",
                    fmt(absent["median_us"], ".1f", " us"),
                    fmt(hot.get("median_ratio_vs_absent"), ".3f"),
                    note="median, on/not installed",
                )
            )
    if pace:
        rows.append(
            _row(
                f"2 pace: {pace['n']:,} events, {pace['rtt_s'] * 1000:.0f} ms RTT",
                "Pendo " + fmt(pace["pendo_s"], ".2f", " s"),
                "Seg. " + fmt(pace["segment_s"], ".2f", " s"),
                fmt(pace["ratio"], ".2f"),
                "pace_ratio",
                pace["ratio"],
                " (Pendo/Segment)",
            )
        )
        rows.append(
            _row(
                "  Segment's own time, plugin on vs off",
                fmt(pace["segment_s"], ".2f", " s"),
                fmt(pace["segment_s_plugin_off"], ".2f", " s"),
                fmt(_ratio(pace["segment_s"], pace["segment_s_plugin_off"]), ".2f"),
                note="(info)",
            )
        )
    if memory:
        on, off = memory["on"], memory["off"]
        rows.append(
            _row(
                f"3 memory growth, {memory['n']:,} events, Pendo down",
                fmt(on["growth_peak_kib"] / 1024, ".1f", " MB"),
                fmt(off["growth_peak_kib"] / 1024, ".1f", " MB"),
                fmt(memory["growth_mb"], "+.1f", " MB"),
                "memory_growth_mb",
                memory["growth_mb"],
            )
        )
        rows.append(
            _row(
                "  spool on disk after shutdown",
                fmt(on["spool_bytes"] / 1e6, ".1f", " MB"),
                fmt(off["spool_bytes"] / 1e6, ".1f", " MB"),
                "",
                note=f"{on['spool_files']:,} files",
            )
        )
    if pace:
        rows.append(
            _row(
                "4 CPU per 1,000 events delivered",
                fmt(pace["cpu_per_1k_on_s"] * 1000, ".0f", " ms"),
                fmt(pace["cpu_per_1k_off_s"] * 1000, ".0f", " ms"),
                fmt(pace["cpu_ratio"], ".2f"),
                note="(info; no target)",
            )
        )
    cpu = results.get("cpu")
    if cpu:
        rows.append(
            _row(
                f"  CPU per delivered event, {cpu['n']:,} calls + flush",
                fmt(cpu["on_us"], ".0f", " us"),
                fmt(cpu["off_us"], ".0f", " us"),
                fmt(cpu["ratio"], ".2f"),
                "cpu_per_event_ratio",
                cpu["ratio"],
                note=" (same process, interleaved)",
            )
        )
    if memory:
        per_k = memory["n"] / 1000
        on_cpu, off_cpu = memory["on"]["cpu_s"] / per_k, memory["off"]["cpu_s"] / per_k
        rows.append(
            _row(
                "  CPU per 1,000 events, Pendo down",
                fmt(on_cpu * 1000, ".0f", " ms"),
                fmt(off_cpu * 1000, ".0f", " ms"),
                fmt(_ratio(on_cpu, off_cpu), ".2f"),
                note="(info)",
            )
        )
    startup = results.get("startup")
    if startup:
        rows.append(
            _row(
                "5 start-up: `import segment.analytics`",
                fmt(startup["import_sdk_on_ms"], ".1f", " ms"),
                fmt(startup["import_sdk_off_ms"], ".1f", " ms"),
                fmt(_ratio(startup["import_sdk_on_ms"], startup["import_sdk_off_ms"]), ".2f"),
                note="(info) off = PENDO_AUTOLOAD=0",
            )
        )
        rows.append(
            _row(
                "  bootstrap import in every `python -c pass`",
                fmt(startup["bootstrap_import_ms"], ".1f", " ms"),
                "",
                "",
                note=f"(info) of {startup['python_pass_ms']:.0f} ms interpreter start",
            )
        )
    first = results.get("first")
    if first:
        rows.append(
            _row(
                f"5b first track(), median of {first['runs']} fresh processes",
                fmt(first["on_first_call_us"] / 1000, ".2f", " ms"),
                fmt(first["off_first_call_us"] / 1000, ".2f", " ms"),
                fmt(_ratio(first["on_first_call_us"], first["off_first_call_us"]), ".2f"),
                "first_track_ms",
                first["on_first_call_us"] / 1000,
            )
        )
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _details(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    hot = results.get("hot")
    if hot:
        on, off = hot["modes"]["on"], hot["modes"]["off"]
        lines.append(
            f"  hot path: p90 on/off {on['p90_us']:.1f}/{off['p90_us']:.1f} us, p99.9 {on['p999_us']:.0f}/"
            f"{off['p999_us']:.0f} us, mean {on['mean_us']:.1f}/{off['mean_us']:.1f} us; median of the "
            f"per-round ratios {hot['round_ratio_median']:.3f}"
        )
    first = results.get("first")
    if first:
        lines.append(
            f"  first track(), medians: app thread CPU on {first['on_first_call_cpu_us'] / 1000:.2f} ms, "
            f"off {first['off_first_call_cpu_us'] / 1000:.2f} ms; second call on "
            f"{first['on_second_call_us']:.0f} us, off {first['off_second_call_us']:.0f} us"
        )
    pace = results.get("pace")
    if pace:
        on_runs, off_runs = pace["runs"]["on"], pace["runs"]["off"]
        run = on_runs[0]
        peaks = run["peaks"]
        first_ms = run["first_call_us"] / 1000
        lines.append(
            f"  first track() in a fresh process: plugin on {first_ms:.2f} ms "
            f"({verdict('first_track_ms', first_ms)}, target <=1 ms), "
            f"off {off_runs[0]['first_call_us'] / 1000:.2f} ms"
        )
        rate = f"{run['n'] / run['pendo_s']:,.0f} requests/s" if run["pendo_s"] else "n/a"
        lines.append(
            f"  pace, plugin on: app enqueued {run['n']:,} in {run['enqueue_s']:.2f} s; Pendo {rate}; "
            f"peak intake {peaks.get('intake', 0):,.0f}, tasks {peaks.get('tasks', 0):.0f}, "
            f"limiter {peaks.get('limit', 0):.0f} (in flight {peaks.get('in_flight', 0):.0f})"
        )
        step = max(1, len(run["series"]) // 12)
        timeline = " ".join(f"{row['t']:.1f}s:{row.get('limit', 0):.0f}" for row in run["series"][::step])
        lines.append(f"  limiter over time: {timeline}")
        if len(on_runs) > 1:
            ratios = [r["pendo_s"] / r["segment_s"] for r in on_runs if r["pendo_s"] and r["segment_s"]]
            lines.append("  pace ratio per run: " + ", ".join(f"{value:.2f}" for value in ratios))
    memory = results.get("memory")
    if memory:
        for key in ("off", "on"):
            run = memory[key]
            stats = ", ".join(
                f"{name}={value:,}"
                for name, value in run["stats"].items()
                if name.startswith(("spooled", "dropped", "overflowed", "retries_exhausted", "sent"))
            )
            lines.append(
                f"  memory, plugin {key}: RSS {run['baseline_kib'] / 1024:.0f} -> peak "
                f"{run['peak_kib'] / 1024:.0f} MB; sent in {run['send_s']:.0f} s, shutdown "
                f"{run['shutdown_s']:.1f} s, peak intake {run['peaks'].get('intake', 0):,.0f}"
                + (f"; {stats}" if stats else "")
            )
    for row in results.get("ceiling") or ():
        cpu_us = row["client_cpu_s"] / row["requests"] * 1e6
        lines.append(
            f"  stand-in ceiling, {row['latency_s'] * 1000:.0f} ms, {row['concurrency']} connections: "
            f"{row['per_second']:,.0f} requests/s ({CLIENTS[row.get('client', 'aiohttp')]}: "
            f"{cpu_us:.0f} us CPU per request)"
        )
    cpu = results.get("cpu")
    if cpu:
        rounds = cpu["cpu_us_per_event"]
        lines.append(
            f"  CPU per delivered event by round (us), on {', '.join(f'{v:.0f}' for v in rounds['on'])}; "
            f"off {', '.join(f'{v:.0f}' for v in rounds['off'])}; median of the per-round ratios "
            f"{cpu['round_ratio_median']:.2f}"
        )
        threads = cpu.get("by_thread_us", {})
        for mode in ("on", "off"):
            parts = ", ".join(f"{name} {us:.0f}" for name, us in sorted(threads.get(mode, {}).items()))
            lines.append(f"  CPU per delivered event by thread, plugin {mode} (us, mean): {parts}")
    return lines
