"""What the spool trusts and what it checks: its directory must be this user's and private; every
file in it is untrusted input, opened without following symlinks, read only if it is a regular file
of this user within size bounds, and parsed with bounded lines and nesting. A file that fails any
check is moved to ``quarantine/`` inside the spool (counted, logged once per reason), never sent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from pendo_plugin import bounded, counters, shown
from pendo_plugin.logs import log_once
from pendo_plugin.pendo import payload
from pendo_plugin.pendo.payload import Payload, from_document

MAX_LINE_BYTES = payload.MAX_LINE_BYTES
"""A spool line (one payload) longer than this is refused: by the writer, and by the reader (quarantine)."""
MAX_FILE_BYTES = 32 * 1024 * 1024
"""A spool file larger than this is never loaded."""
MAX_FILE_ITEMS = 10_000
"""A spool file with more payloads than this is never loaded (the plugin writes at most a few thousand)."""
QUARANTINE = "quarantine"
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: opening a FIFO must not hang


class Unreadable(Exception):
    """A spool file that fails a check; ``reason`` is short and names no content."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be trusted as a spool directory, or None (a missing one is created private)."""
    try:
        info = os.stat(path)  # follows a symlink: the directory it names is what counts
    except FileNotFoundError:
        return "it is a symlink to nowhere" if os.path.islink(path) else None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.geteuid():
        return f"it is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & 0o022:
        return f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` and each missing parent with mode ``0700``, whatever the umask
    (``Path.mkdir(parents=True)`` gives the parents the umask's mode: world-writable under umask 000).
    A folder another process creates meanwhile is left as it is (and checked by :func:`directory_problem`)."""
    missing = []
    path = directory
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # the umask may have taken bits off 0700 too (umask 0277: 0500)


def check_open_file(fd: int) -> os.stat_result:
    """The file's stat if it may be read; raises :class:`Unreadable` otherwise."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("not a regular file", "not_regular")
    if info.st_uid != os.geteuid():
        raise Unreadable(f"owned by uid {info.st_uid}, not by this user", "foreign_owner")
    if info.st_size > MAX_FILE_BYTES:
        raise Unreadable(f"{info.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte bound", "too_large")
    return info


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_items(
    fd: int, *, torn_tail: bool = False, failures: list[object] | None = None
) -> list[Payload | None]:
    """Every payload of an open, checked spool file, None for a JSON object that is not one this version
    can send; raises :class:`Unreadable` at the first line that is not a JSON object, and for an
    incomplete last line unless ``torn_tail`` (a dead writer's temp file: that line is left out).
    ``failures``: gets each line's raw failure count (``"f"``, unchecked; None when absent)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = _read_at_most(fd, MAX_FILE_BYTES)
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"over the {MAX_FILE_BYTES:,}-byte bound", "too_large")
    if data and not data.endswith(b"\n"):
        if not torn_tail:
            raise Unreadable("its last line is incomplete", "torn")
        data = data[: data.rfind(b"\n") + 1]
    lines = data.split(b"\n")[:-1]
    if len(lines) > MAX_FILE_ITEMS:
        raise Unreadable(f"{len(lines):,} lines, over the {MAX_FILE_ITEMS:,}-line bound", "too_many_lines")
    items: list[Payload | None] = []
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_BYTES:
            raise Unreadable(f"line {number} is over the {MAX_LINE_BYTES:,}-byte bound", "line_too_long")
        try:
            item = bounded.loads(line)
        except ValueError as exc:  # UnicodeDecodeError and too deep nesting included
            kind = "too_deep" if "nested" in str(exc) else "not_json"
            what = kind.replace("_", " ")
            raise Unreadable(f"line {number} is not a spool payload ({what})", kind) from None
        if not isinstance(item, dict):
            raise Unreadable(f"line {number} is not a JSON object", "not_object")
        items.append(from_document(item))
        if failures is not None:
            failures.append(item.get("f"))
    return items


def check_lines(lines: list[bytes]) -> None:
    """Raise ValueError if payload lines (UTF-8 JSON) would break the reader's bounds."""
    if len(lines) > MAX_FILE_ITEMS:
        raise ValueError(f"{len(lines):,} payloads, over the {MAX_FILE_ITEMS:,}-line bound of a spool file")
    if max(map(len, lines), default=0) > MAX_LINE_BYTES:
        raise ValueError(f"a payload over the {MAX_LINE_BYTES:,}-byte bound of a spool line")
    if sum(map(len, lines)) > MAX_FILE_BYTES:
        raise ValueError(f"over the {MAX_FILE_BYTES:,}-byte bound of a spool file")


def quarantine(directory: Path, path: Path, reason: str, kind: str) -> None:
    """Move ``path`` (the entry itself, never a symlink's target) to ``quarantine/``; counted, logged once
    per kind. If it cannot be moved it is deleted, so it is never read again."""
    counters.record("spool_quarantined", kind)
    place = directory / QUARANTINE
    try:
        make_private_directory(place)
        os.rename(path, place / path.name)
        where = f"moved to {place}"
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        where = "deleted (it could not be moved)"
    log_once(
        f"spool-quarantine:{kind}",
        logging.ERROR,
        "pendo_plugin: spool file %s was not loaded: %s; %s. Further files like it are only counted "
        "(spool_quarantined:%s)",
        shown.escape(path.name),
        reason,
        where,
        kind,
    )


def open_problem(exc: OSError) -> tuple[str, str]:
    """(reason, kind) for an ``os.open`` failure of a spool entry."""
    if exc.errno == errno.ELOOP:
        return "it is a symlink", "symlink"
    return f"it cannot be opened ({exc.strerror})", "unopenable"


def quarantined_files(directory: Path) -> int:
    """How many entries wait in ``quarantine/``."""
    try:
        with os.scandir(directory / QUARANTINE) as entries:
            return sum(1 for _ in entries)
    except OSError:
        return 0


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"
TEMP_GRACE = 2.0
"""An empty temp file younger than this (seconds) may be one a writer has created but not locked yet (it
writes only once it holds the lock, so a temp file with data and no lock is a dead writer's)."""


def temp_files(directory: Path) -> list[Path]:
    """Temp files of the spool (``.<name>.jsonl.tmp``): written by a process that may have died before
    renaming them into place."""
    try:
        with os.scandir(directory) as entries:
            return sorted(
                Path(entry.path)
                for entry in entries
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(".jsonl" + TEMP_SUFFIX)
            )
    except OSError:
        return []


def _expected_items(name: str) -> int:
    try:
        return int(name.rsplit("-n", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return -1


def recover_temp(directory: Path, now: float) -> None:
    """Rename complete temp files of dead writers into place; drop torn ones (``dropped:spool_torn``).

    A live writer holds its temp file's lock from before its first byte to the rename, so an unlocked temp
    file with data is a dead writer's, however young: it is recovered at once (only an empty one younger
    than :data:`TEMP_GRACE` is left alone). Complete means: as many payload lines as the name says; a torn
    one gives up its complete lines, and only the torn rest is counted as dropped.
    """
    for temp in temp_files(directory):
        try:
            fd = os.open(temp, OPEN_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as exc:
            quarantine(directory, temp, *open_problem(exc))
            continue
        try:
            _recover_one(directory, temp, fd, now)
        finally:
            os.close(fd)


def _recover_one(directory: Path, temp: Path, fd: int, now: float) -> None:
    expected = _expected_items(temp.name)
    try:
        info = check_open_file(fd)
        if info.st_size == 0 and now - info.st_mtime < TEMP_GRACE:
            return  # a writer may have created it and not locked it yet: it writes only once locked
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer holds it from before its first byte
        if os.fstat(fd).st_ino != os.stat(temp, follow_symlinks=False).st_ino:
            return
        items = read_items(fd, torn_tail=True)
        if len(items) > expected:
            raise Unreadable(f"{len(items)} payloads, its name says {expected}", "torn")
        if len(items) < expected:  # torn: keep its complete lines, in a file named for them
            _cut_to(temp, os.fstat(fd).st_ino, _complete_length(fd))
    except (BlockingIOError, FileNotFoundError):
        return  # a live writer, or gone already
    except Unreadable as problem:
        if problem.kind != "torn":
            quarantine(directory, temp, problem.reason, problem.kind)
        else:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        return
    except OSError:
        return
    _into_place(directory, temp, items, expected)


def _complete_length(fd: int) -> int:
    """How many bytes of the open file are complete lines."""
    os.lseek(fd, 0, os.SEEK_SET)
    return _read_at_most(fd, MAX_FILE_BYTES).rfind(b"\n") + 1


def _cut_to(path: Path, inode: int, length: int) -> None:
    """Truncate ``path`` (the same file as the one read: ``inode``, never through a symlink) to ``length``."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if os.fstat(fd).st_ino != inode:
            raise FileNotFoundError(path)
        os.ftruncate(fd, length)
    finally:
        os.close(fd)


def _into_place(directory: Path, temp: Path, items: list[Payload | None], expected: int) -> None:
    """Rename a dead writer's temp file into place (named for the payloads it holds); its torn tail, if
    any, counted as ``dropped:spool_torn``."""
    name = temp.name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)]
    if len(items) < expected:
        name = f"{name.rsplit('-n', 1)[0]}-n{len(items)}.jsonl"
        counters.record("dropped", "spool_torn", amount=expected - len(items))
        log_once(
            "spool-torn",
            logging.WARNING,
            "pendo_plugin: a spool file left half-written by a process that ended while writing it (%s): "
            "its %d complete payload(s) kept, the torn rest counted as dropped:spool_torn",
            shown.escape(temp.name),
            len(items),
        )
    if not items:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return
    with contextlib.suppress(OSError):
        os.rename(temp, directory / name)
        counters.record("spool_recovered", amount=len(items))
