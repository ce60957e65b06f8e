"""The Pendo stand-in's ceiling: requests per second it answers with N keep-alive connections, driven
by a plain aiohttp client or by the plugin's own HTTP client (``delivery/client.py``), with no plugin
logic and no Segment. ``bench/run.py --only ceiling`` runs it; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import send_line
from workload import EVENT, properties

Send = Callable[[], Awaitable[int]]  # one request; its status


def track_body() -> bytes:
    """The body of one track event, as the plugin would send it."""
    event = {
        "type": "track",
        "event": EVENT,
        "visitorId": "user-1",
        "accountId": "acct-1",
        "timestamp": int(time.time() * 1000),
        "properties": properties(1),
        "context": {"ip": "203.0.113.7"},
    }
    return json.dumps(event).encode()


async def drive(send: Send, n: int, concurrency: int) -> dict[str, Any]:
    """``n`` requests through ``send``, ``concurrency`` at a time: wall and CPU time, statuses."""
    remaining = n
    statuses: dict[int, int] = {}

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await send()
            statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "requests": n,
        "concurrency": concurrency,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "client_cpu_s": time.process_time() - cpu0,
        "statuses": statuses,
    }


async def with_aiohttp(args: argparse.Namespace, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> int:
            async with session.post(f"{args.url}/data/track", data=body, headers=headers) as answer:
                await answer.read()
                return answer.status

        return await drive(send, args.n, args.concurrency)


async def with_plugin_client(
    args: argparse.Namespace, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    from pendo_plugin.delivery.client import HttpTransport
    from pendo_plugin.delivery.http import Request

    transport = HttpTransport(pool_size=args.concurrency)
    request = Request("POST", f"{args.url}/data/track", body, headers, 10.0)

    async def send() -> int:
        return (await transport.send(request)).status

    try:
        return {"client": "plugin", **await drive(send, args.n, args.concurrency)}
    finally:
        await transport.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--secret", default="")
    parser.add_argument("--client", choices=("aiohttp", "plugin"), default="aiohttp")
    args = parser.parse_args()
    headers = {"Content-Type": "application/json", "x-pendo-integration-key": args.secret}
    if args.client == "plugin":  # on the worker's own loop (uvloop's where it is installed)
        from pendo_plugin import config
        from pendo_plugin.destination.loop import new_loop

        loop = new_loop(config.current().event_loop)
        run = with_plugin_client
    else:
        loop = asyncio.new_event_loop()
        run = with_aiohttp
    try:
        send_line(loop.run_until_complete(run(args, track_body(), headers)))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
