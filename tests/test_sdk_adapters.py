"""The per-SDK adapters and the bootstrap's list of client modules, in process (the real SDKs run in
``test_sdks.py``)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from pendo_plugin import _autoload, bridge, counters, plugins, sdks
from pendo_plugin.hookspecs import hookimpl


def test_the_bootstrap_watches_every_supported_client_module() -> None:
    assert set(_autoload.TARGETS) == set(sdks.BY_MODULE)
    assert [sdk.distribution for sdk in sdks.SDKS] == [
        "segment-analytics-python",
        "analytics-python",
        "rudder-sdk-python",
    ]


def test_rudder_identify_gets_its_traits_at_the_top_and_its_own_library_name() -> None:
    message = {
        "type": "identify",
        "userId": "u1",
        "context": {"traits": {"plan": "pro"}, "library": {"name": "analytics-python", "version": "2.1.9"}},
    }
    adapted = sdks.BY_MODULE["rudderstack.analytics.client"].to_segment(message)

    assert adapted["traits"] == {"plan": "pro"}
    assert adapted["context"]["library"] == {"name": "rudder-sdk-python", "version": "2.1.9"}
    assert "traits" not in message  # the SDK's own message (what its backend gets) is untouched
    assert message["context"]["library"]["name"] == "analytics-python"


def test_rudder_adapter_keeps_what_it_does_not_recognise() -> None:
    rudder = sdks.BY_MODULE["rudderstack.analytics.client"].to_segment
    no_context = {"type": "identify", "userId": "u1"}
    assert rudder(no_context) is no_context
    track = {"type": "track", "event": "E", "context": {"traits": {"a": 1}}}
    assert "traits" not in rudder(track)  # only identify carries traits


@pytest.mark.parametrize("module", ["segment.analytics.client", "analytics.client"])
def test_segment_shaped_sdks_pass_their_message_on_as_is(module: str) -> None:
    message = {"type": "identify", "traits": {"a": 1}, "context": {"library": {"name": "analytics-python"}}}
    assert sdks.BY_MODULE[module].to_segment(message) is message


def make_client_class(module: str, answer: object, **methods: object) -> type:
    """A class standing in for an SDK's ``Client`` whose ``_enqueue`` answers ``answer``."""
    namespace: dict[str, object] = {
        "__module__": module,
        "send": True,
        "_enqueue": lambda self, msg: answer,
        "flush": lambda self: None,
        "join": lambda self: None,
    }
    namespace.update(methods)
    return type("Client", (), namespace)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    @hookimpl
    def segment_message(self, message: dict) -> None:
        self.messages.append(message)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    counters.reset()
    recorder = Recorder()
    plugins.register_plugin(recorder, name="sdk-adapter-recorder")
    try:
        yield recorder
    finally:
        plugins.unregister_plugin(name="sdk-adapter-recorder")
        counters.reset()


def test_a_class_outside_the_supported_client_modules_is_left_alone() -> None:
    cls = make_client_class("myapp.analytics.client", (True, {"type": "track"}))
    assert bridge.patch_client_class(cls) is False
    assert not hasattr(cls, bridge.PATCHED)


def test_an_unrelated_analytics_client_module_is_not_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app's own ``analytics`` package may have a ``client`` module whose ``Client`` is something else."""
    module = types.ModuleType("analytics.client")
    module.Client = type("Client", (), {"__module__": "analytics.client", "get": lambda self: None})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "analytics.client", module)

    _autoload.watch()

    assert not hasattr(module.Client, bridge.PATCHED)  # type: ignore[attr-defined]


def test_an_answer_of_another_shape_is_counted_and_the_sdk_result_returned(recorder: Recorder) -> None:
    cls = make_client_class("analytics.client", None)
    assert bridge.patch_client_class(cls) is True

    assert cls()._enqueue({"type": "track"}) is None  # type: ignore[attr-defined]

    assert recorder.messages == []
    assert counters.snapshot()["skipped:sdk_answer"] == 1


def test_the_adapter_shapes_what_plugins_get(recorder: Recorder) -> None:
    sent = {
        "type": "identify",
        "context": {"traits": {"plan": "pro"}, "library": {"name": "analytics-python"}},
    }
    cls = make_client_class("rudderstack.analytics.client", (True, sent))
    bridge.patch_client_class(cls)

    assert cls()._enqueue({}) == (True, sent)  # type: ignore[attr-defined]

    assert recorder.messages == [
        {
            **sent,
            "traits": {"plan": "pro"},
            "context": {**sent["context"], "library": {"name": "rudder-sdk-python"}},
        }
    ]
