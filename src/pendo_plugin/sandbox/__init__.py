"""A local stand-in for Pendo's APIs (and Segment's ``/v1/batch``) on 127.0.0.1.

It answers like Pendo does (status codes and bodies from ``pendo-api.md``), checks every request against
Pendo's rules, records what it accepted, and can inject latency and failures. It runs on ``aiohttp.web`` in a
background thread with its own event loop, so one process sustains thousands of requests per second.

Endpoints: ``POST /data/track``, ``POST /api/v1/metadata/{visitor|account}/{agent|custom}/value``,
``GET /api/v1/metadata/schema/{visitor|account}``, ``GET /api/v1/token/verify``,
``POST /data/segmentio/{api_key}``, ``POST /v1/batch`` (Segment), ``GET /`` (live page) and
``GET /_sandbox/state`` (the page's JSON snapshot).
"""

from pendo_plugin.sandbox.command import main_sandbox
from pendo_plugin.sandbox.rules import (
    TRACK_OK,
    RecordedRequest,
    allowed_hosts,
    property_name_problem,
    request_problem,
)
from pendo_plugin.sandbox.server import Sandbox

__all__ = [
    "TRACK_OK",
    "RecordedRequest",
    "Sandbox",
    "allowed_hosts",
    "main_sandbox",
    "property_name_problem",
    "request_problem",
]
