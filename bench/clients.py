"""Which HTTP client under the plugin: process CPU per delivered event with the plugin's own client
(``delivery/client.py``), aiohttp tuned and pycurl's multi interface (``transports.py``), side by side
in one run against the same sandbox stand-in.

    python bench/clients.py                 # 3 cycles of 3 rounds of 1,500 events per client
    python bench/clients.py --n 3000 --cycles 5

Each cycle runs ``workload.py cpu`` once per client (the order rotates each cycle), with the plugin on
and kill-switched alternately in the same process, so "off" is each run's own baseline. Printed: the
median process CPU per delivered event per client, the plugin's share (on minus off), and the saving
of the plugin's client against the best well-kept one. The rule (docs/design.md): a well-kept client
unless the plugin's own saves more than 25 % of the process CPU per event.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path

from processes import HERE, app_env, run_to_end, standin

CLIENTS = ("plugin", "aiohttp", "pycurl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500, help="track() calls per round, then flush()")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode in each run")
    parser.add_argument("--cycles", type=int, default=3, help="runs per client, interleaved")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    if importlib.util.find_spec("pycurl") is None:
        parser.error("pycurl is not installed: pip install -e '.[bench]'")
    on: dict[str, list[float]] = {name: [] for name in CLIENTS}
    off: dict[str, list[float]] = {name: [] for name in CLIENTS}
    work = Path(tempfile.mkdtemp(prefix="pendo-clients-"))
    with standin("sandbox", 0.0, 0.0) as (_, url):
        for cycle in range(opts.cycles):
            for name in CLIENTS[cycle % 3 :] + CLIENTS[: cycle % 3]:
                argv = [str(HERE / "workload.py"), "cpu", "--url", url, "--n", str(opts.n)]
                argv += ["--rounds", str(opts.rounds), "--transport", name]
                result = run_to_end(argv, app_env(url, work / f"spool-{name}", True), 600)
                on[name] += result["cpu_us_per_event"]["on"]
                off[name] += result["cpu_us_per_event"]["off"]
    rows = {
        name: {
            "on_us": statistics.median(on[name]),
            "off_us": statistics.median(off[name]),
            "plugin_us": statistics.median(on[name]) - statistics.median(off[name]),
            "ratio": statistics.median(on[name]) / statistics.median(off[name]),
            "rounds": len(on[name]),
        }
        for name in CLIENTS
    }
    best = min(rows[name]["on_us"] for name in CLIENTS if name != "plugin")
    saving = 1 - rows["plugin"]["on_us"] / best
    if opts.json:
        json.dump({"clients": rows, "saving_vs_best_kept": saving}, sys.stdout, indent=1)
        return 0
    print(f"{'client':10} {'on us/event':>12} {'off us/event':>13} {'plugin us':>10} {'on/off':>7}")
    for name, row in rows.items():
        figures = f"{row['on_us']:12.0f} {row['off_us']:13.0f} {row['plugin_us']:10.0f} {row['ratio']:7.2f}"
        print(f"{name:10} {figures}")
    verdict = "keep the plugin's client" if saving > 0.25 else "take the best well-kept client"
    print(f"plugin's client saves {saving:.0%} of process CPU per event "
          f"against the best well-kept one: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
