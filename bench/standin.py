"""Loopback stand-ins for Segment and Pendo, run in a process of their own so their CPU never
competes with the measured app for its GIL.

``--kind sandbox`` serves :class:`pendo_plugin.sandbox.Sandbox` (validates and records everything);
``--kind sink`` serves a count-only aiohttp server with the same two endpoints (``/v1/batch`` and
``/data/track``) for the long memory runs, where recording a million messages would only measure
the stand-in.

Protocol on stdout/stdin, one JSON document per line. Once listening it prints ``{"url": ...}``;
then it answers:

- ``{"cmd": "counts"}`` -> ``{"counts": {...}}``
- ``{"cmd": "watch", "targets": {"segment_messages": N, "track_events": N}}`` -> ``{"ok": true}`` and
  starts noting the ``time.monotonic()`` (system-wide on Linux) at which each count first reaches
  its target;
- ``{"cmd": "result", "timeout": T}`` -> ``{"reached": {name: time or null}, "counts": {...}}``
  once every target is reached or ``T`` seconds passed;
- ``{"cmd": "reset"}`` -> ``{"ok": true}``.

End of input stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from common import send_line

POLL = 0.002  # how often the watcher looks at the counts (seconds)


class Sink:
    """Counts Segment messages and Pendo track events after a simulated round trip; records nothing."""

    def __init__(self, latency: float, segment_latency: float) -> None:
        self.latency = latency
        self.segment_latency = segment_latency
        self._counts = {"segment_messages": 0, "track_events": 0, "requests": 0}
        self._ready = threading.Event()
        self._port = 0
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("sink did not start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def reset(self) -> None:
        for key in self._counts:
            self._counts[key] = 0

    def _run(self) -> None:
        from aiohttp import web

        async def batch(request: web.Request) -> web.Response:
            if self.segment_latency:
                await asyncio.sleep(self.segment_latency)
            body = json.loads(await request.read())
            self._counts["segment_messages"] += len(body.get("batch") or ())
            self._counts["requests"] += 1
            return web.json_response({})

        async def track(request: web.Request) -> web.Response:
            if self.latency:
                await asyncio.sleep(self.latency)
            await request.read()
            self._counts["track_events"] += 1
            self._counts["requests"] += 1
            return web.Response(text="Track event was sent as requested")

        async def serve() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/batch", batch)
            app.router.add_post("/data/track", track)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
            await site.start()
            self._port = int(runner.addresses[0][1])
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(serve())


class Watcher:
    """Notes when each count first reaches its target, polling every :data:`POLL` seconds."""

    def __init__(self, counts: Callable[[], dict[str, int]], targets: dict[str, int]) -> None:
        self.counts = counts
        self.targets = targets
        self.reached: dict[str, float | None] = dict.fromkeys(targets)
        self.done = threading.Event()
        self.stopped = threading.Event()
        threading.Thread(target=self._run, name="watcher", daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            now = time.monotonic()
            counts = self.counts()
            for name, target in self.targets.items():
                if self.reached[name] is None and counts.get(name, 0) >= target:
                    self.reached[name] = now
            if all(value is not None for value in self.reached.values()):
                break
            time.sleep(POLL)
        self.done.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("sandbox", "sink"), default="sandbox")
    parser.add_argument("--latency", type=float, default=0.0, help="Pendo's simulated round trip (s)")
    parser.add_argument("--segment-latency", type=float, default=0.0, help="Segment's (s)")
    parser.add_argument("--track-secret", default=None)
    parser.add_argument("--integration-key", default=None)
    args = parser.parse_args()

    server: Any
    if args.kind == "sandbox":
        from pendo_plugin.sandbox import Sandbox

        server = Sandbox(
            track_secret=args.track_secret,
            integration_key=args.integration_key,
            latency=args.latency,
            segment_latency=args.segment_latency,
        ).start()
    else:
        server = Sink(args.latency, args.segment_latency).start()
    send_line({"url": server.url, "kind": args.kind})

    watcher: Watcher | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        name = command.get("cmd")
        if name == "counts":
            send_line({"counts": server.counts()})
        elif name == "watch":
            if watcher is not None:
                watcher.stopped.set()
            watcher = Watcher(server.counts, {key: int(value) for key, value in command["targets"].items()})
            send_line({"ok": True})
        elif name == "result":
            if watcher is not None:
                watcher.done.wait(float(command.get("timeout", 60)))
                watcher.stopped.set()
            send_line({"reached": watcher.reached if watcher else {}, "counts": server.counts()})
        elif name == "reset":
            if watcher is not None:
                watcher.stopped.set()
                watcher = None
            server.reset()
            send_line({"ok": True})
        else:
            send_line({"error": f"unknown command {name!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
