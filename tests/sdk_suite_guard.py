"""A pytest plugin loaded (``-p sdk_suite_guard``) into an SDK's own test suite, run in that SDK's venv.

It keeps the suite offline: a connection to anything but loopback is refused, and the SDKs' hosted
endpoints (the suites post to them with test keys) are rewritten to ``SDK_SUITE_BACKEND``, the sandbox
standing in for the SDK's backend. On SIGUSR1 it writes every thread's stack to ``SDK_SUITE_STACKS`` (the
harness asks for it when a run does not exit after its last test). Nothing here touches the SDK itself.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
from typing import Any

import requests.sessions

LOOPBACK = ("127.0.0.1", "::1", "localhost")
HOSTED = ("https://api.segment.io", "https://hosted.rudderlabs.com", "https://api.rudderstack.com")

_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo
_request = requests.sessions.Session.request


def _offline_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
        raise ConnectionRefusedError(f"offline test run: {address[0]} refused")
    _connect(self, address)


def _offline_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in LOOPBACK:
        raise socket.gaierror(socket.EAI_NONAME, f"offline test run: {name} not resolved")
    return _getaddrinfo(host, *args, **kwargs)


def _to_backend(self: requests.sessions.Session, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(url, str):
        for hosted in HOSTED:
            if url.startswith(hosted):
                url = os.environ["SDK_SUITE_BACKEND"] + url[len(hosted) :]
    return _request(self, method, url, *args, **kwargs)


_stacks = open(os.environ["SDK_SUITE_STACKS"], "w")  # noqa: SIM115 (open for the process's life)
faulthandler.register(signal.SIGUSR1, file=_stacks, all_threads=True)

socket.socket.connect = _offline_connect  # type: ignore[method-assign]
socket.getaddrinfo = _offline_getaddrinfo
requests.sessions.Session.request = _to_backend  # type: ignore[method-assign]


def pytest_sessionfinish() -> None:
    """Write which SDK client classes were patched by the plugin to ``SDK_SUITE_REPORT``."""
    import json
    import sys

    patched = {
        name: bool(getattr(getattr(module, "Client", None), "_pendo_plugin_patched", False))
        for name, module in list(sys.modules.items())
        if name.endswith("analytics.client")
    }
    with open(os.environ["SDK_SUITE_REPORT"], "w") as out:
        json.dump(patched, out)
