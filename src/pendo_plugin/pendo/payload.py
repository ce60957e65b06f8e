"""A payload for Pendo as it is queued, spooled and sent: ``{"k": kind, "b": body, ...}``.

``k`` is ``track`` (``b``: a Track Event body), ``webhook`` (``b``: a Segment message for Pendo's
Segment webhook) or ``meta`` (``t``: ``visitor`` or ``account``; ``b``: one metadata row). The spool
stores these dicts as JSON lines, so their shape is the spool format.
"""

from __future__ import annotations

from typing import Any

Payload = dict[str, Any]


def payload_kind(payload: Payload) -> str:
    """``track``, ``webhook``, ``visitor`` or ``account``: what a payload is, for counters and logs."""
    return str(payload.get("t") if payload.get("k") == "meta" else payload.get("k"))
