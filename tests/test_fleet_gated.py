"""The rate gate's fast path in fleet mode without a budget (a send starts at once while the fleet's pause
was read a moment ago): a 429 holds this process's next send at once, not once a task ran. Real HTTP to
the stand-in as Pendo and a real redis-server."""

from __future__ import annotations

import asyncio

from pendo_plugin.delivery.client import HttpTransport
from pendo_plugin.delivery.fleet.gated import PAUSE_WITHOUT_RETRY_AFTER, GatedTransport
from pendo_plugin.delivery.fleet.link import RedisLink
from pendo_plugin.delivery.fleet.rate import RateGate
from pendo_plugin.delivery.fleet.slot_clock import SLOT_EARLY
from pendo_plugin.delivery.http import Request, Response
from pendo_plugin.sandbox import Sandbox
from tests.conftest import TRACK_SECRET
from tests.fleet_redis import RedisServer


async def _a_send_started_as_a_429_comes(box: Sandbox, redis_url: str) -> None:
    link = RedisLink(redis_url)
    transport = GatedTransport(HttpTransport(), RateGate(), lambda: (None, link))
    request = Request("POST", f"{box.url}/data/track", b"{}", {"x-pendo-integration-key": TRACK_SECRET})
    try:
        await transport.send(request)  # reads the fleet's pause: the sends that follow start at once
        box.fail_next(1, 429)  # no Retry-After: a pause of PAUSE_WITHOUT_RETRY_AFTER
        followers: list[asyncio.Future[Response]] = []
        refused = transport.start(request)
        # as the dispatcher does when a send ends and frees a slot: the next one starts at once
        refused.add_done_callback(lambda _: followers.append(transport.start(request)))
        assert (await refused).status == 429
        await asyncio.wait_for(followers[0], PAUSE_WITHOUT_RETRY_AFTER + 10)
    finally:
        await transport.close()
        await link.close()


def test_a_send_started_as_a_429_comes_waits_out_its_pause(redis_server: RedisServer) -> None:
    """The 429's pause was set by a task (the fast path's answer has none): a send started meanwhile, by
    the callbacks that ran before that task, went in the pause (answered 2 ms after the 429, of 1 s)."""
    with Sandbox(track_secret=TRACK_SECRET) as box:
        asyncio.run(_a_send_started_as_a_429_comes(box, redis_server.url))
        track = [e for e in box.request_log() if e.path == "/data/track"]
        assert [e.status for e in track][1] == 429, track
        refused_at, follower_at = track[1].at, track[2].at
        assert follower_at - refused_at >= PAUSE_WITHOUT_RETRY_AFTER - SLOT_EARLY - 0.01, (
            f"a send went {follower_at - refused_at:.3f} s into a pause of {PAUSE_WITHOUT_RETRY_AFTER} s"
        )
