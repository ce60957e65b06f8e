"""``doctor --send-test-event`` in ``PENDO_MODE=webhook``: one Segment track message to Pendo's webhook.

Like the API mode's test event, it is the only way to verify the key (Pendo has no endpoint that checks
it without writing): the message ``pendo_plugin_doctor`` for the user ``pendo-plugin-doctor`` goes to
``/data/segmentio/<PENDO_API_KEY>`` exactly as the plugin sends live messages. The URL, which holds the
key, is never printed.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from pendo_plugin.cli._common import Check, fail, ok
from pendo_plugin.config import Settings
from pendo_plugin.delivery.http import Request

TEST_EVENT = "pendo_plugin_doctor"
TEST_USER = "pendo-plugin-doctor"


def test_message() -> dict[str, Any]:
    """A Segment track message as the SDK would have normalised it."""
    return {
        "type": "track", "event": TEST_EVENT, "userId": TEST_USER, "messageId": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat(), "properties": {"source": TEST_EVENT},
        "context": {"library": {"name": "pendo-plugin-doctor", "version": "1"}},
    }


async def send_test_webhook(transport: Any, settings: Settings) -> Check:
    """POST the test message to the webhook; OK on 2xx, a FAIL naming PENDO_API_KEY on 401/403/404."""
    request = Request("POST", f"{settings.webhook_url}/data/segmentio/{settings.api_key}",
                      json.dumps(test_message()).encode(), {"Content-Type": "application/json"},
                      settings.request_timeout)
    started = time.monotonic()
    try:
        response = await transport.send(request)
    except Exception:
        return fail(f"the test message could not be sent: {transport.why()}")
    if response.status in (401, 403, 404):
        return fail(f"PENDO_API_KEY is not valid (HTTP {response.status} from /data/segmentio/<key>)")
    if not 200 <= response.status < 300:
        return fail(f"the test message was refused: the webhook answered HTTP {response.status}")
    took = (time.monotonic() - started) * 1000
    return ok(f"PENDO_API_KEY accepted: sent track message {TEST_EVENT} for user {TEST_USER} through the "
              f"webhook ({took:.0f} ms)")
