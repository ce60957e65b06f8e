"""Fleet mode on Redis: one rate budget, one durable queue and live flags shared by every process
(docs/fleet.md). The worker talks to :class:`pendo_plugin.delivery.fleet.mode.Fleet` only."""
