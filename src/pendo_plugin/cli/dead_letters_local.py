"""``pendo-plugin spool dead list|retry|purge`` without fleet mode: the local dead letters, ``dead-*`` files
in the spool's ``quarantine/`` (:mod:`pendo_plugin.delivery.dead_letters`). ``retry`` writes their payloads
back into the spool with their failures reset, ``purge`` deletes them. Each file is checked as the spool
checks its own (owner, type, size, lines): one that fails is left alone and named."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

from pendo_plugin.cli.fleet_status import _text
from pendo_plugin.cli.replay import EXIT_FAILED, EXIT_OK
from pendo_plugin.cli.spool import _confirm, _spool
from pendo_plugin.config import Settings
from pendo_plugin.delivery import spool_files
from pendo_plugin.delivery.dead_letters import dead_files, failures_in
from pendo_plugin.pendo.payload import Payload

LIST_LIMIT = 100


def describe(payload: Payload | None) -> str:
    if payload is None:
        return "not a payload (left alone by retry; purge removes it)"
    if payload.kind in ("visitor", "account"):
        return f"{payload.kind} row {_text(payload.row_id, 60)}"
    who = payload.body.get("visitorId") or payload.body.get("userId") or payload.body.get("anonymousId")
    return f"{payload.kind} {_text(payload.body.get('event'), 60)!r} of {_text(who, 60)}"


def _read(path: Path) -> tuple[list[Payload | None], list[object]] | None:
    """A dead file's payloads and raw failure counts, or None if it fails a check."""
    failures: list[object] = []
    try:
        fd = os.open(path, spool_files.OPEN_FLAGS)
    except OSError:
        return None
    try:
        spool_files.check_open_file(fd)
        return spool_files.read_items(fd, failures=failures), failures
    except (OSError, spool_files.Unreadable):
        return None
    finally:
        os.close(fd)


def local_dead_letters(settings: Settings, action: str, assume_yes: bool, out: TextIO, stdin: TextIO) -> int:
    """Run ``list``, ``retry`` or ``purge`` on the local spool's dead letters."""
    spool = _spool(settings)
    files = dead_files(spool.directory)
    if action == "list":
        shown = 0
        print(f"{len(files):,} dead-letter file(s) in {spool.directory / spool_files.QUARANTINE}", file=out)
        for path in files:
            read = _read(path)
            if read is None:
                print(f"  {path.name}: fails a check (left alone)", file=out)
                continue
            for payload, raw in zip(*read, strict=True):
                if shown < LIST_LIMIT:
                    print(f"  {path.name}  failed {failures_in({'f': raw})}x  {describe(payload)}", file=out)
                shown += 1
        if shown > LIST_LIMIT:
            print(f"  ... and {shown - LIST_LIMIT:,} more", file=out)
        return EXIT_OK
    if action == "retry":
        moved = 0
        for path in files:
            read = _read(path)
            items = [item for item in read[0] if item is not None] if read is not None else []
            if items and spool.write(items) is not None:  # failures reset: the line carries none
                moved += len(items)
                with contextlib.suppress(OSError):
                    path.unlink()
        print(f"{moved:,} payload(s) moved back to {spool.directory} to be sent again", file=out)
        return EXIT_OK
    if not files:
        print("No dead letters; nothing to purge.", file=out)
        return EXIT_OK
    if not assume_yes and not _confirm(f"Delete the {len(files):,} dead-letter file(s)?", stdin):
        print("Nothing deleted.", file=out)
        return EXIT_FAILED
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    print(f"Purged {len(files):,} dead-letter file(s).", file=out)
    return EXIT_OK
