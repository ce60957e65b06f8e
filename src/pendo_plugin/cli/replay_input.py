"""What ``pendo-plugin replay`` reads: its options and filters, the exports (files, gzip, stdin) line by
line in bounded memory, and the per-file checkpoints that let an interrupted replay resume (one
:class:`Job` per source, planned by :func:`plan_jobs`)."""

from __future__ import annotations

import bisect
import contextlib
import gzip
import json
import math
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pendo_plugin import bounded
from pendo_plugin.cli._common import CommandError
from pendo_plugin.config import CALLS
from pendo_plugin.pendo.coerce import parse_timestamp_ms

CHECKPOINT_VERSION = 1
CHECKPOINT_SUFFIX = ".pendo-checkpoint"
CHUNK_LINES = 1000
DEFAULT_MAX_LINE_MB = 4.0
START_OVER = "delete it to start over"


# ----------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ReplayOptions:
    """The flags of ``pendo-plugin replay``."""

    files: Sequence[str]
    dry_run: bool = False
    since: str | None = None
    until: str | None = None
    calls: str = "identify,group,track"
    checkpoint: str | None = None
    use_checkpoint: bool = True
    allow_old: bool = False
    max_line_mb: float = DEFAULT_MAX_LINE_MB


@dataclass(frozen=True)
class Filters:
    """Which messages a replay sends; recorded in the checkpoint so a resume uses the same ones."""

    calls: frozenset[str] = CALLS
    since_ms: int | None = None
    until_ms: int | None = None
    allow_old: bool = False

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's record of these filters."""
        return {"calls": sorted(self.calls), "since": self.since_ms, "until": self.until_ms,
                "allow_old": self.allow_old}

    def reason_to_skip(self, message: Mapping[str, Any]) -> str | None:
        """Why the filters leave ``message`` out, or None."""
        call = message.get("type")
        if call in CALLS and call not in self.calls:
            return f"--calls:{call}"
        if self.since_ms is None and self.until_ms is None:
            return None
        at = parse_timestamp_ms(message.get("timestamp"))
        if at is None:
            return "no_timestamp"
        if self.since_ms is not None and at < self.since_ms:
            return "before_--since"
        if self.until_ms is not None and at >= self.until_ms:
            return "after_--until"
        return None


def _time_flag(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    value = parse_timestamp_ms(text)
    if value is None:
        raise CommandError(f"{flag} {text!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)")
    return value


def parse_filters(options: ReplayOptions) -> Filters:
    """The filters the flags ask for; CommandError for a bad flag value."""
    calls = frozenset(part.strip() for part in options.calls.split(",") if part.strip())
    unknown = calls - CALLS
    if unknown or not calls:
        raise CommandError(f"--calls {options.calls!r} must list some of identify,group,track")
    filters = Filters(calls, _time_flag("--since", options.since), _time_flag("--until", options.until),
                      options.allow_old)
    if filters.since_ms is not None and filters.until_ms is not None and filters.since_ms >= filters.until_ms:
        raise CommandError("--since must be earlier than --until")
    return filters


# ----------------------------------------------------------------------------------- checkpoints


class Acks:
    """Line numbers settled for good: everything up to ``line``, plus sorted ranges beyond it."""

    def __init__(self, line: int = 0, ranges: Sequence[Sequence[int]] = ()) -> None:
        self.line = line
        self.ranges: list[list[int]] = sorted([int(start), int(end)] for start, end in ranges)
        self._absorb()

    def __contains__(self, number: int) -> bool:
        if number <= self.line:
            return True
        index = bisect.bisect_right(self.ranges, [number, math.inf]) - 1
        return index >= 0 and self.ranges[index][1] >= number

    def add(self, number: int) -> None:
        """Record ``number`` as settled, merging it into its neighbours."""
        if number in self:
            return
        index = bisect.bisect_right(self.ranges, [number, math.inf])
        before = self.ranges[index - 1] if index > 0 else None
        after = self.ranges[index] if index < len(self.ranges) else None
        left = before if before is not None and before[1] == number - 1 else None
        right = after if after is not None and after[0] == number + 1 else None
        if left is not None and right is not None:
            left[1] = right[1]
            del self.ranges[index]
        elif left is not None:
            left[1] = number
        elif right is not None:
            right[0] = number
        else:
            self.ranges.insert(index, [number, number])
        self._absorb()

    def _absorb(self) -> None:
        while self.ranges and self.ranges[0][0] <= self.line + 1:
            self.line = max(self.line, self.ranges.pop(0)[1])

    def to_json(self) -> dict[str, Any]:
        """``{"line": last line of the acknowledged prefix, "acked": [[first, last], ...] beyond it}``."""
        return {"line": self.line, "acked": [list(pair) for pair in self.ranges]}


class Checkpoint:
    """One checkpoint file: per source file, the lines settled for good; written atomically, 0600."""

    def __init__(self, path: Path, filters: Filters) -> None:
        self.path = path
        self.filters = filters
        self.files: dict[str, Acks] = {}

    @classmethod
    def open(cls, path: Path, filters: Filters) -> Checkpoint:
        """Load ``path`` if it exists; CommandError if it is unreadable or made with other filters."""
        checkpoint = cls(path, filters)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return checkpoint
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a replay checkpoint"
            raise CommandError(f"cannot read the checkpoint {path}: {reason} ({START_OVER})") from None
        checkpoint._load(document)
        return checkpoint

    def _load(self, document: Any) -> None:
        try:
            if document["version"] != CHECKPOINT_VERSION:
                raise ValueError
            recorded = document["filters"]
            files = {str(key): Acks(int(entry["line"]), entry.get("acked", []))
                     for key, entry in document["files"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CommandError(f"the checkpoint {self.path} is not a replay checkpoint of this version "
                               f"({START_OVER})") from None
        if recorded != self.filters.to_json():
            raise CommandError(f"the checkpoint {self.path} was written with other --calls/--since/--until/"
                               f"--allow-old flags; rerun with the same flags, or {START_OVER}")
        self.files = files

    def acks(self, key: str) -> Acks:
        """The record for one source file (created empty)."""
        return self.files.setdefault(key, Acks())

    def save(self) -> None:
        """Write atomically: a 0600 temp file in the same directory, fsynced, renamed over the old one."""
        document = {"version": CHECKPOINT_VERSION, "filters": self.filters.to_json(),
                    "files": {key: acks.to_json() for key, acks in self.files.items()}}
        data = json.dumps(document, separators=(",", ":")).encode("utf-8")
        temp: str | None = None
        try:
            # mkstemp: a new name, O_EXCL|O_NOFOLLOW, mode 0600: a planted file or symlink is never written
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError as exc:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            raise CommandError(f"cannot write the checkpoint {self.path}: {exc.strerror}") from None


# ----------------------------------------------------------------------------------- sources


class ReadError(Exception):
    """An export could not be read to its end (a truncated or corrupt gzip, an I/O error)."""


class Source:
    """One export: a file (gzip detected by its magic bytes) or stdin, read as lines of bytes."""

    def __init__(self, name: str, max_line: int = int(DEFAULT_MAX_LINE_MB * 1024 * 1024)) -> None:
        self.name = name
        self.label = "stdin" if name == "-" else name
        self.key = "-" if name == "-" else os.path.abspath(name)
        self.total: int | None = None
        self.max_line = max_line
        self._raw: IO[bytes] | None = None
        self._lines: Iterator[bytes | bounded.Oversized] = iter(())
        self._consumed = 0

    def check(self) -> None:
        """Fail early, before anything is sent, if the file cannot be opened."""
        if self.name == "-":
            return
        try:
            with open(self.name, "rb"):
                pass
        except OSError as exc:
            raise CommandError(f"cannot read {self.name}: {exc.strerror}") from None

    def open(self) -> None:
        """Open the export and find out whether it is gzip."""
        try:
            raw: Any = sys.stdin.buffer if self.name == "-" else open(self.name, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"cannot read {self.name}: {exc.strerror}") from None
        self._raw = raw
        if self.name != "-":
            self.total = os.fstat(raw.fileno()).st_size
        magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
        self._lines = bounded.lines(getattr(stream, "read1", stream.read), self.max_line)

    def read_chunk(self, size: int = CHUNK_LINES) -> list[bytes | bounded.Oversized]:
        """Up to ``size`` more lines (blocking: run it in a thread); [] at the end. A line longer than
        ``max_line`` comes as :class:`~pendo_plugin.bounded.Oversized`, skipped in bounded memory."""
        chunk: list[bytes | bounded.Oversized] = []
        try:
            for line in self._lines:
                chunk.append(line)
                self._consumed += (line.size if isinstance(line, bounded.Oversized) else len(line)) + 1
                if len(chunk) >= size:
                    break
        except (OSError, EOFError, zlib.error) as exc:
            raise ReadError(f"{self.label} could not be read to its end: {exc}") from None
        return chunk

    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip), for the progress bar."""
        if self._raw is not None and self.name != "-":
            with contextlib.suppress(OSError, ValueError):
                return self._raw.tell()
        return self._consumed

    def close(self) -> None:
        """Close the file (never stdin)."""
        if self._raw is not None and self.name != "-":
            self._raw.close()


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(message, None)`` or ``(None, what is wrong)`` for one export line."""
    try:
        value = bounded.loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as exc:
        return None, str(exc) if "nested" in str(exc) else "not JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    if not isinstance(value.get("type"), str):
        return None, 'not a Segment message (no "type")'
    return value, None


@dataclass
class Job:
    """One source file and where its progress is recorded."""

    source: Source
    acks: Acks
    checkpoint: Checkpoint | None = None


def _checkpoint_path(options: ReplayOptions, source: Source) -> Path:
    return Path(options.checkpoint) if options.checkpoint else Path(source.name + CHECKPOINT_SUFFIX)


def plan_jobs(options: ReplayOptions, filters: Filters) -> tuple[list[Job], list[Checkpoint]]:
    """The sources in order, each with its checkpoint record; CommandError for unusable input."""
    max_line = int(options.max_line_mb * 1024 * 1024)
    sources = [Source(name, max_line) for name in options.files]
    if sum(source.name == "-" for source in sources) > 1:
        raise CommandError("stdin (-) can be given only once")
    for source in sources:
        source.check()
    stdin_unrecorded = any(source.name == "-" for source in sources) and not options.checkpoint
    if options.use_checkpoint and stdin_unrecorded and not options.dry_run:
        raise CommandError("replaying stdin needs --checkpoint PATH to be resumable (or --no-checkpoint)")
    checkpoints: dict[Path, Checkpoint] = {}
    jobs = []
    for source in sources:
        if not options.use_checkpoint or (source.name == "-" and stdin_unrecorded):
            jobs.append(Job(source, Acks()))
            continue
        path = _checkpoint_path(options, source)
        if path not in checkpoints:
            checkpoints[path] = Checkpoint.open(path, filters)
        jobs.append(Job(source, checkpoints[path].acks(source.key), checkpoints[path]))
    return jobs, list(checkpoints.values())
