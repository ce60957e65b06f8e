"""Fleet mode as the worker sees it: one object that owns the Redis link, the rate gate and the
shared queue.

The worker calls it from a few places only: :meth:`Fleet.update` with each settings snapshot,
:meth:`Fleet.wrap` on the transport it sends through, :meth:`Fleet.offer` with each routed slice
(False: write it ahead locally as without Redis), :meth:`Fleet.pump` from its loop,
:meth:`Fleet.idle` when flushing, :meth:`Fleet.kick` for ``flush()``, and :meth:`Fleet.stop` /
:meth:`Fleet.close` at shutdown. With ``PENDO_REDIS_URL`` unset it holds no link and no queue,
and only ``PENDO_RATE_LIMIT`` (per process) acts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pendo_plugin import config
from pendo_plugin.config import Settings
from pendo_plugin.delivery.fleet.flags import FlagPoller
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.delivery.fleet.queue import Fallback, RedisQueue
from pendo_plugin.delivery.fleet.rate import GatedTransport, RateGate
from pendo_plugin.delivery.http import Transport
from pendo_plugin.delivery.senders import Payload, Sender
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.logs import log_once


def _redis_installed() -> bool:
    try:
        import redis  # noqa: F401
    except ImportError:
        log_once(
            "redis-missing",
            logging.ERROR,
            "pendo_plugin: PENDO_REDIS_URL is set but the redis package is missing "
            "(pip install 'segment-pendo-plugin[redis]'); each process works alone",
        )
        return False
    return True


class Fleet:
    """The worker's fleet-mode parts; touched only from the worker's loop."""

    def __init__(self, fallback: Fallback) -> None:
        self.link: RedisLink | None = None
        self.queue: RedisQueue | None = None
        self.gate = RateGate()
        self.flags = FlagPoller()
        self._flag_task: asyncio.Task[Any] | None = None
        self._fallback = fallback
        self._retired: list[RedisLink] = []

    def update(self, settings: Settings) -> None:
        """Follow ``PENDO_REDIS_URL`` (a changed URL gets a new link; the old one is closed later)."""
        url = settings.redis_url
        if (self.link.url if self.link is not None else None) == url:
            return
        if self.link is not None:
            self._retired.append(self.link)
        if self.queue is not None:
            self.queue.hand_back(settings)
        self.link = RedisLink(url) if url and _redis_installed() else None
        self.queue = RedisQueue(self.link, self._fallback) if self.link is not None else None

    def wrap(self, transport: Transport) -> Transport:
        """``transport`` behind the rate gate (a no-op without a budget and without Redis)."""
        return GatedTransport(transport, self.gate, self._rate_and_link)

    def _rate_and_link(self) -> tuple[float | None, RedisLink | None]:
        return config.current().rate_limit, self.link

    def offer(self, payloads: list[Payload]) -> bool:
        """Hand ``payloads`` to the shared queue; False: no Redis now, write them ahead locally."""
        return self.queue is not None and self.queue.offer(payloads)

    def flags_known(self) -> bool:
        """Whether new events may be routed: without Redis, or once the fleet's flags were read (or
        Redis did not answer), so a fleet-wide kill switch holds a new process's first events too."""
        if self.link is None or self.flags.tried or not self.link.available():
            return True
        self._poll_flags()
        return False

    def _poll_flags(self) -> None:
        polling = self._flag_task is not None and not self._flag_task.done()
        if self.link is not None and self.link.available() and self.flags.due() and not polling:
            self._flag_task = asyncio.ensure_future(self.flags.poll(self.link))

    def pump(self, sender: Sender | None, settings: Settings, spool: Spool | None) -> bool:
        """Read the fleet's live flags and run the shared queue's next I/O cycle, if due; True if the
        queue had work."""
        self._poll_flags()
        return self.queue is not None and sender is not None and self.queue.pump(sender, settings, spool)

    def idle(self) -> bool:
        """Whether nothing of this process's waits in fleet-mode memory."""
        return self.queue is None or self.queue.idle()

    def kick(self) -> None:
        """``flush()``: read the shared queue, and take over abandoned entries, now."""
        if self.queue is not None:
            self.queue.kick()

    async def stop(self, grace: float) -> None:
        """Stop sending from the shared queue; settle and append what is left (or write it locally)."""
        if self._flag_task is not None:
            self._flag_task.cancel()
        if self.queue is not None:
            await self.queue.stop(grace)

    async def close(self) -> None:
        """Close every Redis connection (at shutdown)."""
        links = [*self._retired, *([self.link] if self.link is not None else [])]
        self._retired = []
        for link in links:
            await link.close()
