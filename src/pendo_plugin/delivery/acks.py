"""Per-payload acknowledgements of one spool file: an append-only log beside it.

While a process holds a spool file it appends the position of every payload Pendo acknowledged (2xx)
or refused for good to ``<file>.ack``, one decimal number a line. A process that claims the file later
(the holder was killed before the whole file settled) skips those positions, so it resends only what
was not acknowledged. The log is deleted with its file.

Appends are not fsynced: a killed process's writes survive in the page cache, and one lost to a power
cut only means that payload is sent again (at-least-once, never loss). On an event loop the positions
acknowledged in one turn of the loop go out in one write at the end of that turn (one system call for
all the answers one ``select`` returned, not one per answer), so a process killed within that turn may
resend them too. The log is read back as
untrusted input: not followed if it is a symlink, read only if it is this user's regular file, bounded
in size, and every line that is not a whole position inside the file is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from pendo_plugin import counters, shown
from pendo_plugin.delivery.spool_files import OPEN_FLAGS, Unreadable, check_open_file
from pendo_plugin.logs import log_once

SUFFIX = ".ack"
_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW


def ack_path(path: Path) -> Path:
    """The acknowledgement log of spool file ``path``."""
    return path.with_name(path.name + SUFFIX)


def read_acks(path: Path, count: int) -> set[int]:
    """The positions (0 .. ``count`` - 1) acknowledged in the log of spool file ``path``."""
    if count <= 0:
        return set()
    try:
        fd = os.open(ack_path(path), OPEN_FLAGS)
    except OSError:  # no log (the usual case), or a symlink: nothing acknowledged
        return set()
    try:
        check_open_file(fd)  # this user's regular file, like the spool file itself
        limit = count * (len(str(count)) + 1) + 64  # every position once, and a little more
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit)
    except (OSError, Unreadable):
        return set()
    finally:
        os.close(fd)
    complete = data.split(b"\n")[:-1]  # a last line without its newline may be torn
    positions = (int(line) for line in complete if line.isdigit() and len(line) <= 9)
    return {position for position in positions if position < count}


class AckLog:
    """Appends acknowledged positions to one spool file's log, opened on the first one."""

    def __init__(self, path: Path) -> None:
        self.path = ack_path(path)
        self._fd: int | None = None
        self._pending = bytearray()  # positions not written yet (this turn of the loop)
        self._flush_soon = False

    def append(self, position: int) -> None:
        """Record ``position`` as acknowledged: at the end of this turn of the running loop, else now."""
        self._pending += b"%d\n" % position
        if self._flush_soon:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_soon = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what was recorded; a failure is logged and counted (it only means a resend)."""
        self._flush_soon = False
        if not self._pending:
            return
        data, self._pending = bytes(self._pending), bytearray()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, _APPEND_FLAGS, 0o600)
            os.write(self._fd, data)
        except OSError as exc:
            counters.record("spool_ack_failed")
            log_once(
                f"spool-ack:{exc.errno}",
                logging.WARNING,
                "pendo_plugin: cannot record an acknowledgement beside spool file %s (%s); after a crash "
                "its payloads would be sent again",
                shown.escape(self.path.name),
                exc.strerror,
            )

    def close(self) -> None:
        """Write what was recorded and close the log (it stays on disk with its file)."""
        self.flush()
        self.forget()

    def forget(self) -> None:
        """Close the log without writing what waits (a forked child: the parent writes it)."""
        self._pending.clear()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def remove(self) -> None:
        """Close and delete the log (what waits is not written: the file is gone)."""
        self.forget()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
