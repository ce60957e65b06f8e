"""Small helpers shared by the benchmark's processes: JSON lines, memory, machine facts, statistics."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO


def send_line(document: Any, out: TextIO | None = None) -> None:
    """Write one JSON document as one line and flush (the processes talk in JSON lines)."""
    stream = out or sys.stdout
    stream.write(json.dumps(document, separators=(",", ":")) + "\n")
    stream.flush()


def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS`` now, ``VmHWM`` the peak)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def directory_bytes(path: Path) -> tuple[int, int]:
    """Total size and number of regular files below ``path``."""
    size = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                size += os.stat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                continue
    return size, files


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list (``share`` 0.5 for the median)."""
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[rank]


def summary_ns(samples: Iterable[int]) -> dict[str, float]:
    """Median, p90, p99, p99.9, max and mean of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    scale = 1000.0
    return {
        "count": len(ordered),
        "median_us": percentile(ordered, 0.5) / scale,
        "p90_us": percentile(ordered, 0.9) / scale,
        "p99_us": percentile(ordered, 0.99) / scale,
        "p999_us": percentile(ordered, 0.999) / scale,
        "max_us": ordered[-1] / scale,
        "mean_us": sum(ordered) / len(ordered) / scale,
    }


def machine() -> dict[str, Any]:
    """CPU count, CPU model, memory, kernel and Python version of this machine."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
