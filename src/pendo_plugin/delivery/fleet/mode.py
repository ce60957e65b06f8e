"""Fleet mode as the worker sees it: one object that owns the Redis link, the rate gate and the
shared queue.

The worker calls it from a few places only: :meth:`Fleet.update` with each settings snapshot,
:meth:`Fleet.wrap` on the transport it sends through, :meth:`Fleet.offer` with each routed slice
(False: write it ahead locally as without Redis), :meth:`Fleet.pump` from its loop,
:meth:`Fleet.apply_holds` as settings change, :meth:`Fleet.left` when flushing, :meth:`Fleet.kick`
for ``flush()``, and :meth:`Fleet.stop` / :meth:`Fleet.close` at shutdown. With ``PENDO_REDIS_URL``
unset it holds no link and no queue, and only ``PENDO_RATE_LIMIT`` (per process) acts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pendo_plugin import config
from pendo_plugin.config import Settings
from pendo_plugin.delivery.dispatch import Dispatcher, Held
from pendo_plugin.delivery.fleet.flags import POLL_INTERVAL, FlagPoller
from pendo_plugin.delivery.fleet.gated import GatedTransport
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.delivery.fleet.queue import Fallback, RedisQueue
from pendo_plugin.delivery.fleet.rate import RateGate
from pendo_plugin.delivery.holds import hold_reason
from pendo_plugin.delivery.http import Transport
from pendo_plugin.delivery.senders import Sender
from pendo_plugin.delivery.spool import Spool
from pendo_plugin.logs import log_once
from pendo_plugin.pendo.payload import Payload

FLAGS_STALE = POLL_INTERVAL * 2  # flags not confirmed for this long may have changed: hold (within 5 s)


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

    def __init__(self, fallback: Fallback, on_progress: Callable[[], None] | None = None) -> None:
        self.link: RedisLink | None = None
        self.queue: RedisQueue | None = None
        self.gate = RateGate()
        self._on_progress = on_progress  # called as a send of the shared queue or one of its cycles ends
        self.flags = FlagPoller()
        self._flag_task: asyncio.Task[Any] | None = None
        self._fallback = fallback
        self._retired: list[RedisLink] = []
        self._checked: tuple[Settings, bool] | None = None  # the settings and hold last applied

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
        link = self.link
        self.queue = RedisQueue(link, self._fallback, self._on_progress) if link is not None else None

    def holding(self) -> bool:
        """Fleet mode without flags in force: never read, or not confirmed for :data:`FLAGS_STALE` seconds
        (Redis cannot be asked). The fleet's kill switch may be on: send nothing, write ahead and wait.
        A URL redis-py cannot use turns fleet mode off: nothing to wait for."""
        if self.link is None or self.link.unusable:
            return False
        read_at = self.flags.read_at
        return read_at is None or time.monotonic() - read_at > FLAGS_STALE

    def reachable(self) -> bool:
        """Whether Redis is to be tried now (it answered last, or its retry pause has passed)."""
        return self.link is not None and self.link.available()

    def held(self, settings: Settings) -> Held:
        """The check of what may be sent now (``fleet_flags``: everything, while :meth:`holding`)."""
        if self.holding():
            return _held_by_unknown_flags
        return partial(_held_by_settings, settings=settings)

    def apply_holds(self, settings: Settings, sends: Dispatcher) -> bool:
        """When the settings or the fleet's flags changed (or Redis stopped confirming them), hold what
        waits in memory that may no longer be sent (:meth:`Dispatcher.recheck`, for ``sends`` and the
        shared queue's reader: it stays in the spool or goes back to the stream); True if a hold ended."""
        holding = self.holding()
        checked = self._checked
        if checked is not None and checked[0] is settings and checked[1] == holding:
            return False
        self._checked = (settings, holding)
        held = self.held(settings)
        sends.recheck(held)
        if self.queue is not None:
            self.queue.recheck(held)
        return checked is not None and checked[1] and not holding

    def wrap(self, transport: Transport) -> Transport:
        """``transport`` behind the rate gate (a no-op without a budget and without Redis)."""
        return GatedTransport(transport, self.gate, self._rate_and_link)

    def _rate_and_link(self) -> tuple[float | None, RedisLink | None]:
        return config.current().rate_limit, self.link

    def offer(self, payloads: list[Payload]) -> bool:
        """Hand ``payloads`` to the shared queue; False: no Redis now, write them ahead locally."""
        return self.queue is not None and self.queue.offer(payloads)

    def pump(self, sender: Sender | None, settings: Settings, spool: Spool | None) -> bool:
        """Read the fleet's live flags and run the shared queue's next I/O cycle, if due; True if the
        queue had work (nothing is read from it while :meth:`holding`)."""
        polling = self._flag_task is not None and not self._flag_task.done()
        if self.link is not None and self.link.available() and self.flags.due() and not polling:
            self._flag_task = asyncio.ensure_future(self.flags.poll(self.link))
        if self.queue is None or sender is None:
            return False
        return self.queue.pump(sender, settings, spool, holding=self.holding())

    def left(self, deadline: float) -> str:
        """What of this process's waits in fleet mode before ``deadline`` (``none``, ``busy``, ``stuck``:
        :meth:`RedisQueue.left`); while :meth:`holding`, ``busy`` as long as Redis may answer."""
        if self.holding():
            return "busy" if self.reachable() else "stuck"
        if self.queue is None or (self.link is not None and self.link.unusable):  # fleet mode off
            return "none"
        return self.queue.left(deadline)

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


def share_budget(sender: Sender, settings: Settings) -> RedisLink | None:
    """Put a command's ``sender`` (``replay``, ``spool drain``) behind ``PENDO_RATE_LIMIT``, the fleet's
    through Redis when ``PENDO_REDIS_URL`` is set, as a backfill: it takes only the slots live traffic
    leaves free, and honours the fleet's 429 pauses. Returns the link to close when done (None: no Redis)."""
    url = settings.redis_url
    link = RedisLink(url) if url and _redis_installed() else None
    rate = settings.rate_limit
    sender.transport = GatedTransport(sender.transport, RateGate(), lambda: (rate, link), backfill=True)
    return link


def _held_by_unknown_flags(_: Payload) -> str:
    return "fleet_flags"


def _held_by_settings(payload: Payload, settings: Settings) -> str | None:
    return hold_reason(payload, settings)
