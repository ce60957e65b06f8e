"""The hand-off between the app thread and the worker: what :class:`~.intake.Runtime` fills and
:class:`~.worker.Worker` drains, so neither module needs the other's class."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pendo_plugin.destination.route import Router


@dataclass
class Intake:
    """Messages the app handed over (``live``, bounded by ``queue_size``; past it ``overflow``, which
    goes to the spool), and the router that turns them into payloads (created by the worker if none)."""

    live: deque[Mapping[str, Any]] = field(default_factory=deque)
    overflow: deque[Mapping[str, Any]] = field(default_factory=deque)
    router: Router | None = None
