"""Fleet mode as the worker sees it: one object that owns the Redis link and the rate gate.

The worker calls it from a few places only: :meth:`Fleet.update` with each settings snapshot,
:meth:`Fleet.wrap` on the transport it sends through, and :meth:`Fleet.close` at shutdown.
With ``PENDO_REDIS_URL`` unset it holds no link, and only ``PENDO_RATE_LIMIT`` (per process) acts.
"""

from __future__ import annotations

from pendo_plugin import config
from pendo_plugin.config import Settings
from pendo_plugin.delivery.http import Transport
from pendo_plugin.delivery.redis_link import RedisLink
from pendo_plugin.delivery.redis_rate import GatedTransport, RateGate


class Fleet:
    """The worker's fleet-mode parts; touched only from the worker's loop."""

    def __init__(self) -> None:
        self.link: RedisLink | None = None
        self.gate = RateGate()
        self._retired: list[RedisLink] = []

    def update(self, settings: Settings) -> None:
        """Follow ``PENDO_REDIS_URL`` (a changed URL gets a new link; the old one is closed later)."""
        url = settings.redis_url
        if (self.link.url if self.link is not None else None) == url:
            return
        if self.link is not None:
            self._retired.append(self.link)
        self.link = RedisLink(url) if url else None

    def wrap(self, transport: Transport) -> Transport:
        """``transport`` behind the rate gate (a no-op without a budget and without Redis)."""
        return GatedTransport(transport, self.gate, self._rate_and_link)

    def _rate_and_link(self) -> tuple[float | None, RedisLink | None]:
        return config.current().rate_limit, self.link

    async def close(self) -> None:
        """Close every Redis connection (at shutdown)."""
        links = [*self._retired, *([self.link] if self.link is not None else [])]
        self._retired = []
        for link in links:
            await link.close()
