"""``pendo-plugin spool dead list|retry|purge``: the fleet's dead stream, where an entry goes after it
failed :data:`~pendo_plugin.delivery.fleet.entries.DEAD_AFTER` times in any processes (docs/fleet.md);
without fleet mode, the local spool's dead letters (:mod:`.dead_letters_local`).

Entries are read a page at a time, a field over 1 MB blanked in Redis
(:func:`~pendo_plugin.delivery.fleet.reads.range_bounded`).
``list`` shows each entry bounded (its id, failures, kind and who it is about; never a whole body),
``retry`` appends every entry to the live stream again with its failures reset, ``purge`` deletes them
(asks first unless ``--yes``). What is read back from Redis is untrusted: an entry that is not a payload
is shown as such and left alone by ``retry``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from pendo_plugin.cli._common import CommandError
from pendo_plugin.cli.dead_letters_local import LIST_LIMIT, describe, local_dead_letters
from pendo_plugin.cli.fleet_status import _client, _errors, _text
from pendo_plugin.cli.replay import EXIT_FAILED, EXIT_OK, load_settings
from pendo_plugin.cli.spool import _confirm
from pendo_plugin.config import redacted_url
from pendo_plugin.delivery.fleet.entries import DEAD_STREAM, STREAM, decode, failures_of
from pendo_plugin.delivery.fleet.reads import range_bounded

BATCH = 100


def dead_letters(action: str, assume_yes: bool = False, out: TextIO | None = None,
                 stdin: TextIO | None = None) -> int:
    """Run ``list``, ``retry`` or ``purge`` on the fleet's dead stream."""
    out = out or sys.stdout
    settings = load_settings()
    if not settings.redis_url:  # the local spool's dead letters
        return local_dead_letters(settings, action, assume_yes, out, stdin or sys.stdin)
    try:
        client = _client(settings.redis_url)
        if action == "list":
            return _list(client, out)
        if action == "retry":
            return _retry(client, out)
        return _purge(client, out, assume_yes, stdin or sys.stdin)
    except ImportError:
        raise CommandError("the redis extra is missing: pip install 'segment-pendo-plugin[redis]'") from None
    except _errors() as exc:
        raise CommandError(f"Redis at {redacted_url(settings.redis_url)} does not answer: "
                           f"{type(exc).__name__}") from None


def _list(client: Any, out: TextIO) -> int:
    total = int(client.xlen(DEAD_STREAM))
    print(f"{total:,} entr{'y' if total == 1 else 'ies'} in {DEAD_STREAM}", file=out)
    start: str | None = "-"
    shown = 0
    while start is not None and shown < LIST_LIMIT:
        start, entries = range_bounded(client, DEAD_STREAM, start, LIST_LIMIT - shown)
        for entry_id, fields in entries:
            failures = failures_of(fields)
            print(f"  {_text(entry_id)}  failed {failures}x  {describe(decode(fields))}", file=out)
        shown += len(entries)
    if total > LIST_LIMIT:
        print(f"  ... and {total - LIST_LIMIT:,} more", file=out)
    return EXIT_OK


def _retry(client: Any, out: TextIO) -> int:
    moved = 0
    start: str | None = "-"
    while start is not None:
        start, entries = range_bounded(client, DEAD_STREAM, start, BATCH)
        pipe = client.pipeline(transaction=True)
        for entry_id, fields in entries:
            if fields is not None and decode(fields) is not None:
                pipe.xadd(STREAM, {"p": fields[b"p"]})
                pipe.xdel(DEAD_STREAM, entry_id)
                moved += 1
        pipe.execute()
    print(f"{moved:,} entr{'y' if moved == 1 else 'ies'} moved back to {STREAM} to be sent again", file=out)
    return EXIT_OK


def _purge(client: Any, out: TextIO, assume_yes: bool, stdin: TextIO) -> int:
    total = int(client.xlen(DEAD_STREAM))
    if not total:
        print(f"{DEAD_STREAM} is empty; nothing to purge.", file=out)
        return EXIT_OK
    if not assume_yes and not _confirm(f"Delete the {total:,} entries in {DEAD_STREAM}?", stdin):
        print("Nothing deleted.", file=out)
        return EXIT_FAILED
    client.delete(DEAD_STREAM)
    print(f"Purged {total:,} entries from {DEAD_STREAM}.", file=out)
    return EXIT_OK
