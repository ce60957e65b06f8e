"""The durable spool: payloads that could not be delivered wait on disk for a later process.

Each spool file holds one batch of translated payloads as JSON lines
(:func:`pendo_plugin.pendo.payload.encode`). It is written to a temp
file, fsynced and renamed into place, owner-only (0600, directory 0700). Names sort oldest first
and carry no secrets: ``<time_ns>-<pid>-<random>-n<items>.jsonl``. A process claims a file with
an exclusive ``flock`` (released by the kernel if that process dies, even by ``kill -9``) and
deletes it only after every payload in it was acknowledged with a 2xx (or rejected for good).
When the directory outgrows its cap, the oldest files are removed and their payloads counted
as ``dropped:spool_full``. What is trusted and what is checked (the directory's owner and mode; every
file's type, owner, size and content) is in :mod:`~pendo_plugin.delivery.spool_files`.

A forked child inherits its parent's open lock descriptors (``flock`` locks belong to the open
file, not the process). The child closes its copies right after ``fork()``, so a long-lived
child (a gunicorn or multiprocessing worker) never keeps a file the parent released locked
for its own lifetime, and never settles a file it did not claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pendo_plugin import _fork, config, counters, shown
from pendo_plugin.delivery import spool_files
from pendo_plugin.delivery.acks import AckLog, ack_path, read_acks
from pendo_plugin.delivery.dead_letters import failures_in, with_failures
from pendo_plugin.delivery.spool_files import OPEN_FLAGS, Unreadable
from pendo_plugin.logs import log, log_once
from pendo_plugin.pendo.payload import Payload, encode

SUFFIX = ".jsonl"

# Every descriptor through which this process holds a spool lock, and the claims owning them.
_held_fds: set[int] = set()
_claims: weakref.WeakSet[Claim] = weakref.WeakSet()


def _close_fd(fd: int) -> None:
    _held_fds.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)


def _forget_inherited_locks() -> None:
    """In a forked child: close the parent's lock descriptors; the parent's claims stay the parent's."""
    for claim in list(_claims):
        claim._fd = None
        claim._acks.forget()
    for fd in list(_held_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_fds.clear()


_fork.register(after_in_child=_forget_inherited_locks)


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What waits in a spool directory."""

    files: int
    items: int
    bytes: int
    oldest_age_seconds: float | None
    unfinished: int = 0  # temp files of writers that may have died (recovered or dropped at a drain)
    quarantined: int = 0  # files that failed a check, kept aside in ``quarantine/``


def _items_in_name(path: Path) -> int:
    try:
        return int(path.stem.rsplit("-n", 1)[1])
    except (IndexError, ValueError):
        return 0


class Claim:
    """An exclusively locked spool file; ``done`` deletes it, ``release`` leaves it for later.

    ``items`` are the file's payloads that no earlier holder acknowledged (see :mod:`.acks`); ``ack``
    records one as acknowledged, so a later process does not resend it if this one dies first. A line
    that is no payload this version can send (None in ``items``) is dropped (``dropped:unknown_payload``)
    and acknowledged at once."""

    def __init__(
        self, path: Path, fd: int, items: Sequence[Payload | None], failures: Sequence[object] = ()
    ) -> None:
        acknowledged = read_acks(path, len(items))
        if acknowledged:
            counters.record("already_acknowledged", amount=len(acknowledged))
        self.path = path
        self._acks = AckLog(path)
        self._fd: int | None = fd
        unknown = [n for n, item in enumerate(items) if item is None and n not in acknowledged]
        if unknown:
            counters.record("dropped", "unknown_payload", amount=len(unknown))
            log_once("unknown-payload", logging.WARNING, "pendo_plugin: spool file %s holds %d line(s) that "
                     "are no payload this version can send; dropped, counted as dropped:unknown_payload",
                     shown.escape(path.name), len(unknown))
            for position in unknown:
                self._acks.append(position)
        kept = [(n, item) for n, item in enumerate(items) if item is not None and n not in acknowledged]
        self.items = [item for _, item in kept]
        self._positions = {id(item): n for n, item in kept}
        self._failures = {id(item): failures_in({"f": failures[n]}) for n, item in kept if n < len(failures)}
        _claims.add(self)

    def ack(self, item: Payload) -> None:
        """Record that ``item`` (one of ``items``) was delivered or refused for good; only while held."""
        position = self._positions.get(id(item))
        if self._fd is not None and position is not None:
            self._acks.append(position)

    def failures_of(self, item: Payload) -> int:
        """How many times ``item`` (one of ``items``) failed before, in any processes."""
        return self._failures.get(id(item), 0)

    def done(self) -> None:
        """Delete the file (everything in it was acknowledged) and drop the lock; only while held."""
        if self._fd is None:
            return
        self._acks.remove()  # first: a crash in between resends the file rather than orphan its log
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        """Drop the lock and keep the file (and its acknowledgements) for a later attempt."""
        self._acks.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            _close_fd(fd)


class Spool:
    """A directory of spool files, shared safely by any number of processes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._approx_bytes: int | None = None  # this process's running estimate; rescanned past the cap
        self.refused: str | None = None  # why no directory could be trusted (then nothing is written or read)
        self._verified = False  # checked again once it exists
        self.directory = self._trusted(directory)

    def _trusted(self, directory: Path) -> Path:
        """``directory`` if it is this user's and private, else the default one (logged once)."""
        problem = spool_files.directory_problem(directory)
        if problem is None:
            return directory
        fallback = config.default_spool_dir()
        fallback_problem = spool_files.directory_problem(fallback) if fallback != directory else problem
        counters.record("spool_dir_refused")
        log_once(
            f"spool-dir:{directory}",
            logging.ERROR,
            "pendo_plugin: PENDO_SPOOL_DIR=%s is not used: %s; %s",
            directory,
            problem,
            f"using {fallback} instead" if fallback_problem is None else f"nor is {fallback}: spool off",
        )
        self.refused = None if fallback_problem is None else problem
        return fallback

    def _ensure_directory(self) -> None:
        if self.refused is not None:
            raise PermissionError(f"the spool directory is not safe: {self.refused}")
        spool_files.make_private_directory(self.directory)
        if not self._verified:  # it may have been made by someone else since __init__ looked
            self.refused = spool_files.directory_problem(self.directory)
            if self.refused is not None:
                raise PermissionError(f"the spool directory is not safe: {self.refused}")
            self._verified = True

    def write(
        self, items: list[Payload], *, name_prefix: str | None = None, failures: Sequence[int] = ()
    ) -> Path | None:
        """Persist ``items`` as one new unlocked file; its path, or None (nothing to write, or an error).
        ``failures``: each item's failure count so far (kept in its line)."""
        claim = self.write_claimed(items, name_prefix=name_prefix, failures=failures)
        if claim is None:
            return None
        claim.release()
        return claim.path

    def write_claimed(
        self, items: list[Payload], *, name_prefix: str | None = None, failures: Sequence[int] = ()
    ) -> Claim | None:
        """Persist ``items`` as one new file and keep it locked for this process to send from."""
        if not items:
            return None
        prefix = name_prefix or f"{time.time_ns():020d}"
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}-n{len(items)}{SUFFIX}"
        fd = -1
        try:
            self._ensure_directory()
            counts = list(failures) + [0] * (len(items) - len(failures))
            lines = [
                with_failures(encode(item), count) + b"\n" for item, count in zip(items, counts, strict=True)
            ]
            spool_files.check_lines(lines)
            data = b"".join(lines)
            temp = self.directory / f".{name}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            _held_fds.add(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, data)
            os.fsync(fd)
            final = self.directory / name
            os.rename(temp, final)
            self._fsync_directory()
        except (OSError, ValueError, TypeError) as exc:
            if fd >= 0:
                _close_fd(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / f".{name}.tmp")
            counters.record("spool_write_failed", amount=len(items))
            log_once(
                f"spool-write:{type(exc).__name__}",
                logging.ERROR,
                "pendo_plugin: could not write %d payload(s) to the spool %s: %s",
                len(items),
                self.directory,
                exc,
            )
            return None
        if self._approx_bytes is not None:
            self._approx_bytes += len(data)
        self._enforce_cap()
        return Claim(final, fd, items, counts)

    def _fsync_directory(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def files(self) -> list[Path]:
        """Spool files, oldest first."""
        if self.refused is not None:
            return []
        try:
            return sorted(
                (
                    Path(entry.path)
                    for entry in os.scandir(self.directory)
                    if entry.name.endswith(SUFFIX) and not entry.name.startswith(".")
                ),
                key=lambda path: path.name,
            )
        except FileNotFoundError:
            return []

    def has_files(self) -> bool:
        """Whether anything waits, temp files of dead writers included (cheap: stops at the first file)."""
        if self.refused is not None:
            return False
        try:
            with os.scandir(self.directory) as entries:
                return any(entry.name.endswith((SUFFIX, SUFFIX + ".tmp")) for entry in entries)
        except OSError:
            return False

    def claim(self, path: Path) -> Claim | None:
        """Lock and read one file, or None if another process holds it or it is gone. A file that fails
        a check (a symlink, not a regular file, too large, not payloads) is quarantined, never loaded."""
        try:
            fd = os.open(path, OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._quarantine(path, *spool_files.open_problem(exc))
            return None
        _held_fds.add(fd)
        try:
            spool_files.check_open_file(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
                raise FileNotFoundError(path)
            failures: list[object] = []
            items = spool_files.read_items(fd, failures=failures)
        except (BlockingIOError, FileNotFoundError):
            _close_fd(fd)
            return None
        except Unreadable as problem:
            self._quarantine(path, problem.reason, problem.kind)
            _close_fd(fd)
            return None
        except OSError as exc:
            _close_fd(fd)
            log_once(f"spool-read:{exc.errno}", logging.ERROR, "pendo_plugin: cannot read spool file %s: %s",
                     shown.escape(path.name), exc.strerror)
            return None
        return Claim(path, fd, items, failures)

    def _quarantine(self, path: Path, reason: str, kind: str) -> None:
        """Quarantine a spool file that failed a check, and delete its acknowledgement log with it."""
        spool_files.quarantine(self.directory, path, reason, kind)
        with contextlib.suppress(OSError):
            os.unlink(ack_path(path))

    def recover(self) -> None:
        """Rename complete temp files left by dead writers into place; drop torn ones (counted)."""
        if self.refused is None:
            spool_files.recover_temp(self.directory, time.time())

    def claims(self) -> Iterator[Claim]:
        """Claim every file no other process holds, oldest first; recovers temp files first."""
        self.recover()
        for path in self.files():
            claim = self.claim(path)
            if claim is not None:
                yield claim

    def status(self) -> SpoolStatus:
        """Counts, size and age of what waits."""
        files = self.files()
        size = 0
        oldest: float | None = None
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                stat = path.lstat()
                size += stat.st_size
                oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
        age = None if oldest is None else max(0.0, time.time() - oldest)
        unfinished = len(spool_files.temp_files(self.directory)) if self.refused is None else 0
        quarantined = spool_files.quarantined_files(self.directory) if self.refused is None else 0
        return SpoolStatus(len(files), sum(_items_in_name(path) for path in files), size, age, unfinished,
                           quarantined)

    def purge(self) -> int:
        """Delete every file no other process holds; returns how many payloads were removed."""
        removed = 0
        for claim in self.claims():
            removed += len(claim.items)
            claim.done()
        self._approx_bytes = None
        return removed

    def _enforce_cap(self) -> None:
        """Past the cap, remove the oldest unlocked files down to 90 % of it (so the directory is
        rescanned only after another tenth of the cap has been written)."""
        if self._approx_bytes is not None and self._approx_bytes <= self.max_bytes:
            return
        files = self.files()
        sizes = {}
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                sizes[path] = path.lstat().st_size
        total = sum(sizes.values())
        target = self.max_bytes * 0.9 if total > self.max_bytes else self.max_bytes
        removed = 0
        for path in files:
            if total <= target:
                break
            if self._remove_unlocked(path):
                AckLog(path).remove()
                total -= sizes.get(path, 0)
                removed += _items_in_name(path)
        if removed:
            counters.record("dropped", "spool_full", amount=removed)
            log.warning("pendo_plugin: spool over its cap; removed the oldest %d payload(s)", removed)
        self._approx_bytes = total

    @staticmethod
    def _remove_unlocked(path: Path) -> bool:
        """Delete ``path`` unless another process (or this one) holds it; True if deleted."""
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
                return False
            path.unlink()
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
