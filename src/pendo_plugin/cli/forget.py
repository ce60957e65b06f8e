"""``pendo-plugin forget VISITOR... | @file``: remove every payload of those visitors that waits to be
sent, from every spool file and, in fleet mode, from the fleet's Redis stream (docs/privacy.md).

Spool files are claimed with the spool's own lock, one at a time; a file holding any of the visitors'
payloads is rewritten without them (a new file of the same age, written and renamed like any spool file)
and the old one deleted, so a crash in between resends, never loses, the other payloads. A file another
process holds is left and reported: run the command again. Stream entries are acknowledged and deleted
(``XACK``, ``XDEL``). ``--deny-file`` appends the ids to a file for ``PENDO_DENY_VISITORS=@PATH``. Nothing is
sent to Pendo: its own deletion request is separate.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pendo_plugin.cli._common import CommandError
from pendo_plugin.cli.replay import EXIT_FAILED, EXIT_OK, load_settings
from pendo_plugin.config import Settings, redacted_url
from pendo_plugin.config_values import read_list
from pendo_plugin.delivery.fleet.entries import GROUP, STREAM, decode
from pendo_plugin.delivery.fleet.reads import range_bounded
from pendo_plugin.delivery.spool import Claim, Spool
from pendo_plugin.delivery.spool_files import QUARANTINE, directory_problem, quarantined_files, temp_files
from pendo_plugin.pendo.payload import Payload
from pendo_plugin.pendo.translate import visitor_id_of

T = TypeVar("T")
REDIS_TIMEOUT = 5.0
STREAM_PAGE = 200  # entries read at once (at most 8 MB; a field over MAX_ENTRY_BYTES blanked in Redis)


def visitor_of(payload: Payload) -> str | None:
    """The visitor a payload is about: a track event's ``visitorId``, a visitor row's id, a webhook
    message's visitor (``userId``, else ``_PENDO_T_`` + ``anonymousId``); None for an account row."""
    if payload.kind == "track":
        visitor = payload.body.get("visitorId")
        return visitor if isinstance(visitor, str) else None
    if payload.kind == "visitor":
        return payload.row_id
    if payload.kind == "webhook":
        return visitor_id_of(payload.body)
    return None


def read_visitors(arguments: Sequence[str]) -> frozenset[str]:
    """The ids named on the command line (``a``, ``a,b`` or ``@file``, one id a line)."""
    visitors: set[str] = set()
    for argument in arguments:
        try:
            visitors |= read_list(argument)
        except OSError as exc:
            raise CommandError(f"cannot read {argument[1:]!r}: {exc.strerror}") from None
    if not visitors:
        raise CommandError("no visitor ids given")
    return frozenset(visitors)


@dataclass
class Found:
    """What waits for the visitors: per visitor, in the spool and in the stream."""

    spool: Counter[str] = field(default_factory=Counter)
    stream: Counter[str] = field(default_factory=Counter)
    claims: list[tuple[Claim, list[Payload]]] = field(default_factory=list)  # (file, payloads kept)
    entries: list[bytes] = field(default_factory=list)
    busy: int = 0


def _spool(settings: Settings) -> Spool | None:
    if settings.spool_dir is None:
        return None
    problem = directory_problem(settings.spool_dir)  # the plugin would fall back to another directory:
    if problem is not None:  # searching that one would report "0 payload(s)" while theirs still wait here
        raise CommandError(f"PENDO_SPOOL_DIR={settings.spool_dir} cannot be searched: {problem}; run forget "
                           "as the user the app runs as, on a directory only it can write")
    spool = Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024))
    if spool.refused is not None:
        raise CommandError(f"the spool directory is not safe to use: {spool.refused}")
    return spool


def scan_spool(spool: Spool, visitors: frozenset[str], found: Found) -> None:
    """Claim each spool file; keep the claims of files that hold the visitors' payloads. A crashed writer's
    complete temp file, which the next drain would send, is recovered first; a live writer's counts as
    busy."""
    spool.recover()
    found.busy += len(temp_files(spool.directory))
    for path in spool.files():
        claim = spool.claim(path)
        if claim is None:
            found.busy += path.exists()
            continue
        kept = []
        for item in claim.items:
            visitor = visitor_of(item)
            if visitor in visitors:
                found.spool[visitor] += 1
            else:
                kept.append(item)
        if len(kept) == len(claim.items):
            claim.release()
        else:
            found.claims.append((claim, kept))


def _redis(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise CommandError("PENDO_REDIS_URL is set but the redis extra is missing: "
                           "pip install 'segment-pendo-plugin[redis]'") from None
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)


def scan_stream(client: Any, visitors: frozenset[str], found: Found) -> None:
    """Page through the fleet's stream; note the entries of the visitors."""
    start: str | None = "-"
    while start is not None:
        start, page = range_bounded(client, STREAM, start, STREAM_PAGE)
        for entry_id, fields in page:
            item = decode(fields) if fields is not None else None
            visitor = visitor_of(item) if item is not None else None
            if visitor in visitors:
                found.stream[visitor] += 1
                found.entries.append(entry_id)


def remove_from_spool(spool: Spool, claims: Iterable[tuple[Claim, list[Payload]]]) -> tuple[int, int]:
    """Rewrite each claimed file without the visitors' payloads: (payloads removed, files that failed)."""
    removed = failed = 0
    for claim, kept in claims:
        if kept and spool.write(kept, name_prefix=claim.path.name.split("-", 1)[0]) is None:
            claim.release()  # the rewrite failed (logged): the file stays as it was
            failed += 1
            continue
        removed += len(claim.items) - len(kept)
        claim.done()
    return removed, failed


def remove_from_stream(client: Any, entries: Sequence[bytes]) -> int:
    """Acknowledge and delete the entries; how many were deleted."""
    deleted = 0
    for start in range(0, len(entries), STREAM_PAGE):
        chunk = entries[start:start + STREAM_PAGE]
        pipe = client.pipeline(transaction=False)
        pipe.xack(STREAM, GROUP, *chunk)
        pipe.xdel(STREAM, *chunk)
        deleted += int(pipe.execute()[1])
    return deleted


def append_deny_file(path: str, visitors: Iterable[str]) -> int:
    """Append the ids not yet in ``path`` (one a line, the file created owner-only); how many were added."""
    target = Path(path).expanduser()
    try:
        known = read_list(f"@{target}") if target.exists() else frozenset()
        new = sorted(set(visitors) - known)
        if new:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as file:
                file.write("".join(f"{visitor}\n" for visitor in new))
    except OSError as exc:
        raise CommandError(f"cannot write the deny file {target}: {exc.strerror}") from None
    return len(new)


def _confirm(question: str, stdin: TextIO) -> bool:
    if not stdin.isatty():
        raise CommandError("refusing to delete without confirmation: stdin is not a terminal (pass --yes)")
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run(arguments: Sequence[str], assume_yes: bool = False, deny_file: str | None = None,
        out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Find, show and (confirmed) remove what waits for the visitors; 0 when nothing of theirs is left."""
    out = out or sys.stdout
    visitors = read_visitors(arguments)
    settings = load_settings()
    found = Found()
    spool = _spool(settings)
    client = _redis(settings.redis_url) if settings.redis_url else None
    removed = failed = deleted = 0
    try:
        if spool is not None:
            scan_spool(spool, visitors, found)
        if client is not None:
            _with_redis(settings, lambda: scan_stream(client, visitors, found))
        _print_found(visitors, found, client is not None, out)
        total = sum(found.spool.values()) + sum(found.stream.values())
        question = f"Remove these {total:,} payload(s)?"
        if total and not assume_yes and not _confirm(question, stdin or sys.stdin):
            print("Nothing removed.", file=out)
            return EXIT_FAILED
        if spool is not None:
            claims, found.claims = found.claims, []
            removed, failed = remove_from_spool(spool, claims)
        if client is not None:
            deleted = _with_redis(settings, lambda: remove_from_stream(client, found.entries))
    finally:
        for claim, _ in found.claims:
            claim.release()
    if total:
        stream = f", {deleted:,} from the fleet's stream" if client is not None else ""
        print(f"Removed {removed:,} payload(s) from the spool{stream}.", file=out)
    if deny_file:
        added = append_deny_file(deny_file, visitors)
        print(f"Added {added:,} id(s) to {deny_file}: set PENDO_DENY_VISITORS=@{deny_file} to keep their "
              "later events out.", file=out)
    quarantined = quarantined_files(spool.directory) if spool is not None else 0
    if quarantined and spool is not None:
        print(f"{quarantined:,} file(s) in {spool.directory / QUARANTINE} failed the spool's checks: never "
              "sent, not searched, but they may hold these visitors' data; delete them if that matters.",
              file=out)
    if found.busy or failed:
        print(f"{found.busy + failed:,} spool file(s) were in use or could not be rewritten: run forget "
              "again.", file=out)
        return EXIT_FAILED
    return EXIT_OK


def _with_redis(settings: Settings, work: Callable[[], T]) -> T:
    """``work()``; a Redis that does not answer becomes one sentence for the operator."""
    import redis

    try:
        return work()
    except (redis.RedisError, OSError) as exc:
        raise CommandError(f"Redis at {redacted_url(settings.redis_url)} did not answer: "
                           f"{type(exc).__name__}; run forget again") from None


def _print_found(visitors: frozenset[str], found: Found, fleet: bool, out: TextIO) -> None:
    for visitor in sorted(visitors):
        stream = f", {found.stream[visitor]:,} in the fleet's stream" if fleet else ""
        print(f"{visitor}: {found.spool[visitor]:,} payload(s) in the spool{stream}", file=out)
