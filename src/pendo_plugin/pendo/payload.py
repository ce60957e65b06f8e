"""A payload for Pendo as it is queued, spooled and sent, and its spool codec.

A :class:`Payload` is built once per translated event (the worker builds one per message, so it is a
``NamedTuple``: immutable and the cheapest immutable type to build). Its ``kind`` is ``track`` (body:
a Track Event), ``webhook`` (body: a Segment message for Pendo's Segment webhook), ``visitor`` or
``account`` (body: one metadata row's values, with ``row_id`` and the message's timestamp ``stamp``).
``data`` is the body encoded as compact JSON once, when the payload is built: it is the HTTP body of
a track event or webhook message and is spliced into the spool line, so neither encodes it again.

The spool line (:func:`encode`, :func:`decode`; also a fleet Redis entry) keeps the format of earlier
versions, so files written before this type load, and files written now load in earlier versions:
``{"k": "track"|"webhook", "b": body}`` or
``{"k": "meta", "t": "visitor"|"account", "id": row id, "v": values, "ts": epoch ms}``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from pendo_plugin import bounded, jsoncodec

EVENT_KINDS = ("track", "webhook")
METADATA_KINDS = ("visitor", "account")
UNSTAMPED = -math.inf
"""The stamp of a metadata payload without a usable timestamp: older than any that has one."""
MAX_STAMP = 2**53
"""The largest ``ts`` read back as a number (milliseconds: 285,000 years; a float holds every integer
up to it)."""
MAX_LINE_BYTES = 4 * 1024 * 1024
"""A spool line or Redis entry longer than this is not decoded."""


class Payload(NamedTuple):
    """One thing to send to Pendo; build it with :func:`event` or :func:`metadata`."""

    kind: str
    """``track``, ``webhook``, ``visitor`` or ``account``."""
    body: dict[str, Any]
    """The Track Event body, the Segment message, or the metadata row's values."""
    data: bytes
    """``body`` as compact JSON (encoded once)."""
    row_id: str = ""
    """Metadata: the visitor or account id."""
    stamp: float = UNSTAMPED
    """Metadata: the message's timestamp (epoch ms); the newest value of a field wins."""

    @property
    def route(self) -> str:
        """What the settings' checks name it: ``track``, ``webhook`` or ``meta``."""
        return "meta" if self.kind in METADATA_KINDS else self.kind

    def as_dict(self) -> dict[str, Any]:
        """The payload as the plain dict of its spool line (what ``on_error`` receives)."""
        if self.kind in EVENT_KINDS:
            return {"k": self.kind, "b": self.body}
        document: dict[str, Any] = {"k": "meta", "t": self.kind, "id": self.row_id, "v": self.body}
        if self.stamp != UNSTAMPED:
            document["ts"] = self.stamp
        return document


_new = tuple.__new__  # skips the NamedTuple's Python-level __new__: a third of the cost of building one
_PREFIX = {
    "track": b'{"k":"track","b":',
    "webhook": b'{"k":"webhook","b":',
    "visitor": b'{"k":"meta","t":"visitor","id":',
    "account": b'{"k":"meta","t":"account","id":',
}


def event(kind: str, body: dict[str, Any]) -> Payload:
    """A track event or webhook message; raises ValueError/TypeError if ``body`` is not JSON-safe."""
    return _new(Payload, (kind, body, jsoncodec.dumps(body), "", UNSTAMPED))


def metadata(kind: str, row_id: str, values: dict[str, Any], stamp: float = UNSTAMPED) -> Payload:
    """One visitor or account row; raises ValueError/TypeError if ``values`` are not JSON-safe."""
    return _new(Payload, (kind, values, jsoncodec.dumps(values), row_id, stamp))


def encode(payload: Payload) -> bytes:
    """The payload's spool line (no newline): its encoded body spliced in, not encoded again."""
    kind, _, data, row_id, stamp = payload
    if kind in EVENT_KINDS:
        return _PREFIX[kind] + data + b"}"
    ts = b"}" if stamp == UNSTAMPED else b',"ts":' + jsoncodec.dumps(stamp) + b"}"
    return _PREFIX[kind] + jsoncodec.dumps(row_id) + b',"v":' + data + ts


def _stamp(value: Any) -> float:
    """A line's ``ts`` read back: a finite number, else unstamped (an integer past the float range too:
    ``math.isfinite`` raises ``OverflowError`` on it)."""
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_STAMP:
        return value
    return UNSTAMPED


def from_document(document: Any) -> Payload | None:
    """The payload a parsed spool line describes, or None if it is not one this version can send."""
    if not isinstance(document, dict):
        return None
    kind, body = document.get("k"), document.get("b")
    try:
        if kind in EVENT_KINDS:
            return event(kind, body) if isinstance(body, dict) else None
        row_kind, row_id, values = document.get("t"), document.get("id"), document.get("v")
        if kind != "meta" or row_kind not in METADATA_KINDS or not isinstance(values, dict):
            return None
        if not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
            return None
        return metadata(row_kind, str(row_id), values, _stamp(document.get("ts")))
    except (ValueError, TypeError, ArithmeticError):  # not JSON-safe (a value Pendo's rules never produce)
        return None


def decode(line: bytes, max_bytes: int = MAX_LINE_BYTES) -> Payload | None:
    """The payload of one spool line or Redis entry (untrusted: bounded in size and nesting, checked in
    shape), or None if it is not one; never raises. The caller counts and logs what it drops."""
    if not isinstance(line, bytes) or len(line) > max_bytes:
        return None
    try:
        document = bounded.loads(line)
    except ValueError:
        return None
    return from_document(document)
