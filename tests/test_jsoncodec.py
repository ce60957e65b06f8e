"""The JSON encoder for bodies and spool lines gives the same documents with orjson and without it."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from pendo_plugin import jsoncodec

DOCUMENT = {"k": "track", "b": {"event": "Zürich ✓", "n": [1, 2.5, None, True], "nested": {"x": "\n\""}}}


@pytest.fixture(params=["orjson", "json"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(jsoncodec, "orjson", None)
    elif jsoncodec.orjson is None:
        if sys.implementation.name == "cpython":  # a dependency there: its absence is a packaging bug
            pytest.fail("orjson is not installed")
        pytest.skip("orjson is not installed (not a dependency outside CPython)")
    return str(request.param)


def test_compact_utf8_and_the_same_document(backend: str) -> None:
    encoded = jsoncodec.dumps(DOCUMENT)
    assert json.loads(encoded) == DOCUMENT
    assert b", " not in encoded and b": " not in encoded
    assert "Zürich ✓".encode() in encoded


def test_integers_beyond_64_bits_are_written(backend: str) -> None:
    encoded = jsoncodec.dumps({"n": 2**70, "m": -(2**64)})
    assert encoded == b'{"n":1180591620717411303424,"m":-18446744073709551616}'


@pytest.mark.parametrize("value", [{1, 2}, object(), {("a",): 1}])
def test_unsupported_values_raise_type_error(backend: str, value: Any) -> None:
    with pytest.raises(TypeError):
        jsoncodec.dumps({"v": value})


def test_the_standard_library_path_refuses_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsoncodec, "orjson", None)
    with pytest.raises(ValueError):
        jsoncodec.dumps({"v": float("nan")})


def test_an_encoded_document_holds_no_more_memory_than_its_bytes(backend: str) -> None:
    """Payloads wait in memory by the thousand during an outage: each encoded body must own only its bytes
    (orjson's own result keeps its whole working buffer, several KiB, allocated)."""
    import tracemalloc

    document = {"type": "track", "event": "Report Exported", "visitorId": "user-1", "properties": {"n": 1}}
    size = len(jsoncodec.dumps(document))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [jsoncodec.dumps(document) for _ in range(2000)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 2000
    assert held / 2000 < size + 256, f"{held / 2000:.0f} bytes held per {size}-byte document"
