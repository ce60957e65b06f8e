"""``pendo-plugin spool drain`` in fleet mode: deliver what waits in the shared Redis stream too.

It runs the plugin's own delivery runtime in this process for one ``flush()`` (the stream read to its
end, abandoned entries taken over, every entry settled exactly as a live process settles it), then
shuts it down, handing back to the stream what it could not deliver. So the command and the fleet's
processes share one send path and one set of rules (rate budget, holds, acknowledgements).
"""

from __future__ import annotations

from typing import Any, TextIO

from pendo_plugin.cli.fleet_status import _client, _errors
from pendo_plugin.config import Settings, redacted_url
from pendo_plugin.delivery.fleet.entries import STREAM


def stream_length(url: str) -> int | None:
    """Entries waiting in the stream, or None when Redis does not answer."""
    try:
        return int(_client(url).xlen(STREAM))
    except _errors():
        return None


def drain_stream(settings: Settings, out: TextIO) -> bool:
    """Deliver what waits in the stream (within ``PENDO_FLUSH_TIMEOUT``); True once it is empty."""
    url = str(settings.redis_url)
    waiting = stream_length(url)
    shown = redacted_url(url)
    if waiting is None:
        print(f"Redis stream {STREAM} at {shown}: Redis does not answer; nothing sent from it", file=out)
        return False
    print(f"Draining the Redis stream {STREAM} at {shown} (fleet mode): {waiting:,} entr(y/ies)", file=out)
    if waiting:
        runtime: Any = _runtime()
        try:
            runtime.flush(settings.flush_timeout)
        finally:
            runtime.shutdown(settings.shutdown_timeout)
    left = stream_length(url)
    print(f"  left      {'unknown' if left is None else f'{left:,}'} entr(y/ies) in the stream", file=out)
    return left == 0


def _runtime() -> Any:
    from pendo_plugin.destination import runtime

    return runtime()
