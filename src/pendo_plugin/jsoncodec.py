"""Compact JSON as UTF-8 bytes for request bodies and spool lines: ``orjson`` when it is installed
(a dependency on CPython), else the standard library.

Every document encoded here is a translated payload, already made JSON-safe by
:mod:`pendo_plugin.pendo.sanitize` (no NaN or infinity, string keys, plain types). Unsupported values
raise ``TypeError`` or ``ValueError`` either way.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

try:
    import orjson
except ImportError:  # the standard library: the same output, a few times the CPU
    orjson = None  # type: ignore[assignment]

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
"""The fallback's options (and ``default``) in one object: ``json.dumps`` with options builds one per call."""
_C_ENCODE: Any = (
    c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)
"""The C encoder ``_ENCODER.encode`` builds for every call (about 2 of its 9 us per track body), built
once; without the circular-reference check, which a translated payload (a fresh copy, depth-bounded)
never needs."""


def dumps(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON; raises ValueError for NaN/infinity, TypeError for other types.

    What orjson refuses (integers beyond 64 bits, which Python's ``json`` writes) goes to the standard
    library, so both accept exactly the same documents.
    """
    if orjson is not None:
        try:
            # a copy of the exact size: orjson's own result keeps its whole working buffer allocated (10,000
            # track bodies held 41 MB against 2 MB copied), and payloads may wait in memory by the thousand
            return bytes(memoryview(orjson.dumps(document)))
        except TypeError:
            pass
    if _C_ENCODE is None:
        return _ENCODER.encode(document).encode("utf-8")
    try:
        return "".join(_C_ENCODE(document, 0)).encode("utf-8")
    except RecursionError as exc:
        raise ValueError("a document nested too deep (or circular)") from exc
