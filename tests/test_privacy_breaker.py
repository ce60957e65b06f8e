"""Privacy controls attacked from outside (issue 24b): a transform that changes the message it was given,
and ``forget`` against what a crashed writer or a hand-kept deny file leaves behind. Real parts: the real
Segment SDK, the sandbox, real spool files and the real ``pendo-plugin`` command in a subprocess."""

from __future__ import annotations

from typing import Any

import pendo_plugin
from pendo_plugin.sandbox import Sandbox
from pendo_plugin.segment import plugins
from pendo_plugin.segment.hookspecs import hookimpl


class MessageMutator:
    """A transform written like an Insert Function that edits the event it was handed in place."""

    @hookimpl
    def pendo_transform(self, kind: str, payload: dict[str, Any], message: Any) -> None:
        message["properties"].pop("email", None)
        message["properties"]["added_by_transform"] = True
        message["context"]["traits"] = {"leaked": "into Segment"}


def test_a_transform_that_edits_the_message_leaves_segments_upload_alone(plugin: Sandbox) -> None:
    from segment.analytics import Client

    plugins.register_plugin(MessageMutator(), name="message-mutator")
    # Segment's upload waits for more events, so the Pendo worker sees the message before Segment sends it
    client = Client("test-write-key", host=plugin.url, upload_interval=2.0, upload_size=1000)
    try:
        client.track("alice", "Signed Up", {"email": "alice@example.com", "plan": "pro"})
        assert pendo_plugin.flush(10)
        client.flush()
    finally:
        plugins.unregister_plugin(name="message-mutator")
        client.join()

    [uploaded] = plugin.segment_messages()
    assert uploaded["properties"] == {"email": "alice@example.com", "plan": "pro"}
    assert "traits" not in uploaded["context"]
    [event] = plugin.track_events()
    assert event["properties"]["email"] == "alice@example.com"  # the transform kept the payload as it was
