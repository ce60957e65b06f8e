"""Compact JSON as UTF-8 bytes for request bodies and spool lines: ``orjson`` when it is installed
(the ``fast`` extra), else the standard library.

Every document encoded here is a translated payload, already made JSON-safe by
:mod:`pendo_plugin.sanitize` (no NaN or infinity, string keys, plain types). Unsupported values
raise ``TypeError`` (orjson's ``JSONEncodeError`` is one) or ``ValueError`` either way.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # the standard library: the same output, a few times the CPU
    orjson = None  # type: ignore[assignment]

BACKEND = "orjson" if orjson is not None else "json"


def dumps(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON; raises ValueError for NaN/infinity, TypeError for other types."""
    if orjson is not None:
        return orjson.dumps(document)
    return json.dumps(document, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")
