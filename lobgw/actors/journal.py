"""Durability for one symbol: an append-only command journal, snapshots and recovery.

Layout of a symbol's directory (`<journal dir>/<symbol>/`):

    journal-00000003.log     commands, in the order the engine applied them
    snapshot-00000003.snap   the engine before segment 3 (after segments 0..2)

A journal record is one actor batch: `<length u32><crc32 u32><msgpack list of commands>`.
The actor writes (and, by policy, fsyncs) a batch's record before it applies the batch, so
nothing is acknowledged that is not in the journal, and recovery (snapshot, then the journal
tail through the same deterministic engine) rebuilds the identical book and sequence numbers.

Snapshots are written to a temporary file, fsynced, renamed and the directory fsynced; then a
new segment starts and segments and snapshots the new snapshot covers are deleted (the
previous snapshot and its segments are kept as a fallback).

Damage on recovery: a record cut short at the very end of the last segment (a crash
mid-write) is a torn tail: it is truncated away and reported. Anything else that fails its
length or CRC check is corruption: recovery stops with `JournalCorruptError` naming the file
and offset, unless `repair` is set, which keeps everything before the damage and moves the
rest to `quarantine/` — nothing is silently dropped.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from lobgw.book.commands import AnyCommand, SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.views import BookSnapshot
from lobgw.errors import (
    JournalCorruptError,
    JournalUnavailableError,
    LobgwError,
    SnapshotDamagedError,
)
from lobgw.histogram import FastHistogram

log = logging.getLogger("lobgw.journal")

FsyncPolicy = Literal["batch", "always", "off"]
HEADER = struct.Struct("<II")
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
SNAPSHOT_VERSION = 1

_encode = msgspec.msgpack.Encoder().encode
_decode_commands = msgspec.msgpack.Decoder(list[AnyCommand]).decode


class SnapshotFile(msgspec.Struct, frozen=True):
    """What a snapshot file holds."""

    version: int
    symbol: str
    segment: int
    """The first journal segment not included in this snapshot."""
    max_order_id: int
    book: BookSnapshot


@dataclass
class Recovery:
    """What recovery found and did."""

    snapshot_segment: int | None = None
    snapshot_seq: int = 0
    records: int = 0
    commands: int = 0
    torn_bytes: int = 0
    quarantined: list[Path] = field(default_factory=list)
    max_order_id: int = 0
    seconds: float = 0.0


def segment_path(directory: Path, index: int) -> Path:
    """Where segment `index` of a symbol's journal lives."""
    return directory / f"journal-{index:08d}.log"


def snapshot_path(directory: Path, index: int) -> Path:
    """Where the snapshot taken before segment `index` lives."""
    return directory / f"snapshot-{index:08d}.snap"


def segment_indices(directory: Path) -> list[int]:
    """The journal segments in a symbol's directory, oldest first."""
    return _indices(directory, "journal", ".log")


def snapshot_indices(directory: Path) -> list[int]:
    """The snapshots in a symbol's directory, oldest first."""
    return _indices(directory, "snapshot", ".snap")


def _indices(directory: Path, prefix: str, suffix: str) -> list[int]:
    found = []
    for path in directory.glob(f"{prefix}-*{suffix}"):
        number = path.name[len(prefix) + 1:-len(suffix)]
        if number.isdigit():
            found.append(int(number))
    return sorted(found)


def frame(payload: bytes) -> bytes:
    """A journal record: length, CRC32, payload."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path, last_segment: bool) -> Iterator[tuple[int, bytes | None, str]]:
    """Yield (offset, payload, problem) for each record; payload None marks damage.

    The problem is "torn" for a cut-short record at the end of the last segment, else a
    description of the corruption (and reading stops there).
    """
    data = path.read_bytes()
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < HEADER.size:
            yield offset, None, "torn" if last_segment else "truncated record header"
            return
        length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if start + length > end:
            yield offset, None, "torn" if last_segment else "record runs past the file end"
            return
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            if last_segment and start + length == end:
                yield offset, None, "torn"  # the last write of a crash may be garbage
            else:
                yield offset, None, "CRC mismatch"
            return
        yield offset, payload, ""
        offset = start + length


class Journal:
    """The journal and snapshots of one symbol's actor."""

    def __init__(self, directory: Path, symbol: str, fsync: FsyncPolicy = "batch",
                 snapshot_every_commands: int = 100_000,
                 snapshot_every_seconds: float = 60.0) -> None:
        self.directory = directory / symbol
        self.symbol = symbol
        self.fsync = fsync
        self.snapshot_every_commands = snapshot_every_commands
        self.snapshot_every_seconds = snapshot_every_seconds
        self.segment = 0
        self._file: int | None = None
        self.bytes_written = 0
        self.records_written = 0
        self.commands_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        self.max_order_id = 0
        self.fsync_seconds = FastHistogram(FSYNC_BUCKETS)
        self.snapshot_seconds = FastHistogram(SNAPSHOT_BUCKETS)

    # -- recovery ---------------------------------------------------------------------------

    def recover(self, spec: InstrumentSpec, repair: bool = False, read_only: bool = False
                ) -> tuple[BookSnapshot | None, Recovery, list[list[AnyCommand]]]:
        """Load the newest valid snapshot and read the journal tail.

        Returns the book as of the snapshot (None: start from an empty book of `spec`), what
        was found, and the tail's batches of commands, which the caller applies through the
        actor (so listeners see them).
        `read_only` changes no file: a torn tail is only reported, corruption always raises.
        """
        started = time.perf_counter()
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
        recovery = Recovery()
        found = self.newest_snapshot()
        book = None
        if found is not None:
            index, loaded = found
            book = loaded.book
            recovery.snapshot_segment = index
            recovery.snapshot_seq = loaded.book.seq
            recovery.max_order_id = loaded.max_order_id
        first = recovery.snapshot_segment or 0
        segments = [i for i in segment_indices(self.directory) if i >= first]
        batches: list[list[AnyCommand]] = []
        for position, index in enumerate(segments):
            path = segment_path(self.directory, index)
            last = position == len(segments) - 1
            for offset, payload, problem in read_records(path, last):
                if payload is not None:
                    try:
                        commands = _decode_commands(payload)
                    except msgspec.ValidationError as error:
                        payload, problem = None, f"undecodable record: {error}"
                    else:
                        batches.append(commands)
                        recovery.records += 1
                        recovery.commands += len(commands)
                        for command in commands:
                            if isinstance(command, SubmitOrder) and \
                                    command.order_id > recovery.max_order_id:
                                recovery.max_order_id = command.order_id
                        continue
                if problem == "torn":
                    size = path.stat().st_size
                    recovery.torn_bytes = size - offset
                    if read_only:
                        break
                    with path.open("r+b") as handle:
                        handle.truncate(offset)
                        os.fsync(handle.fileno())
                    log.warning("%s: torn last record (%d bytes at offset %d) truncated",
                                path, recovery.torn_bytes, offset)
                    break
                if not repair or read_only:
                    raise JournalCorruptError(path, offset, problem)
                recovery.quarantined = self._quarantine(path, offset, segments[position + 1:])
                log.error("%s: %s at offset %d: kept what came before, quarantined %s", path,
                          problem, offset, ", ".join(map(str, recovery.quarantined)))
                segments = segments[:position + 1]
                break
            else:
                continue
            break
        self.segment = segments[-1] if segments else first
        self.max_order_id = recovery.max_order_id
        recovery.seconds = time.perf_counter() - started
        return book, recovery, batches

    def newest_snapshot(self) -> tuple[int, SnapshotFile] | None:
        """The newest snapshot that loads, with its segment index; a damaged one is logged
        and the next older one tried."""
        for index in reversed(snapshot_indices(self.directory)):
            loaded = self._load_snapshot(snapshot_path(self.directory, index))
            if loaded is not None:
                return index, loaded
        return None

    def _load_snapshot(self, path: Path) -> SnapshotFile | None:
        try:
            loaded = read_snapshot(path)
        except (OSError, msgspec.ValidationError, LobgwError) as error:
            log.error("%s: unreadable snapshot (%s); trying an older one", path, error)
            return None
        if loaded.symbol != self.symbol or loaded.version != SNAPSHOT_VERSION:
            log.error("%s: not a snapshot of %s", path, self.symbol)
            return None
        return loaded

    def _quarantine(self, path: Path, offset: int, later: Sequence[int]) -> list[Path]:
        folder = self.directory / "quarantine"
        folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        target = folder / f"{path.name}.{stamp}.from-{offset}"
        data = path.read_bytes()
        target.write_bytes(data[offset:])
        moved.append(target)
        with path.open("r+b") as handle:
            handle.truncate(offset)
            os.fsync(handle.fileno())
        for index in later:
            segment = segment_path(self.directory, index)
            destination = folder / f"{segment.name}.{stamp}"
            segment.rename(destination)
            moved.append(destination)
        return moved

    # -- writing ----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the current segment for appending."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = segment_path(self.directory, self.segment)
        self._file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_directory(self.directory)

    def append(self, commands: Sequence[AnyCommand]) -> int:
        """Write one batch as one record (and fsync it unless the policy is off).

        Raises JournalUnavailableError if the disk refuses; then nothing of the batch counts.
        """
        record = frame(_encode(list(commands)))
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            written = os.write(self._file, record)
            if written != len(record):
                # A short write leaves a partial record: cut it off so the file stays valid.
                os.ftruncate(self._file, os.lseek(self._file, 0, os.SEEK_END) - written)
                raise OSError("short write")
            if self.fsync != "off":
                started = time.perf_counter()
                os.fsync(self._file)
                self.fsync_seconds.observe(time.perf_counter() - started)
        except OSError as error:
            raise JournalUnavailableError(f"{self.symbol}: journal write failed: {error}"
                                          ) from error
        self.bytes_written += len(record)
        self.records_written += 1
        self.commands_since_snapshot += len(commands)
        for command in commands:
            if isinstance(command, SubmitOrder) and command.order_id > self.max_order_id:
                self.max_order_id = command.order_id
        return len(record)

    def snapshot_due(self) -> bool:
        """Whether enough happened since the last snapshot."""
        return self.commands_since_snapshot > 0 and (
            self.commands_since_snapshot >= self.snapshot_every_commands
            or time.monotonic() - self.last_snapshot >= self.snapshot_every_seconds)

    def write_snapshot(self, book: BookSnapshot) -> Path:
        """Persist `book` (the engine after every record so far), start a new segment, and
        delete what the previous snapshot already covered."""
        started = time.perf_counter()
        next_segment = self.segment + 1
        payload = _encode(SnapshotFile(SNAPSHOT_VERSION, self.symbol, next_segment,
                                       self.max_order_id, book))
        final = snapshot_path(self.directory, next_segment)
        temporary = final.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            handle.write(frame(payload))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(final)
        _fsync_directory(self.directory)
        if self._file is not None:
            os.close(self._file)
            self._file = None
        previous = [i for i in snapshot_indices(self.directory) if i < next_segment]
        self.segment = next_segment
        self.open()
        keep_from = previous[-1] if previous else 0
        for index in segment_indices(self.directory):
            if index < keep_from:
                segment_path(self.directory, index).unlink()
        for index in previous[:-1]:
            snapshot_path(self.directory, index).unlink()
        self.commands_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        self.snapshot_seconds.observe(time.perf_counter() - started)
        return final

    def close(self) -> None:
        """Close the segment file."""
        if self._file is not None:
            os.close(self._file)
            self._file = None


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_snapshot(path: Path) -> SnapshotFile:
    """Decode one snapshot file; raise SnapshotDamagedError if it fails its checks."""
    for _, payload, problem in read_records(path, last_segment=False):
        if payload is None:
            raise SnapshotDamagedError(f"{path}: {problem}")
        return msgspec.msgpack.decode(payload, type=SnapshotFile)
    raise SnapshotDamagedError(f"{path}: empty")


def read_journal(directory: Path, spec: InstrumentSpec
                 ) -> tuple[BookSnapshot | None, Recovery, list[list[AnyCommand]]]:
    """Read a symbol's journal without changing anything (for the operator tools)."""
    journal = Journal(directory.parent, directory.name)
    return journal.recover(spec, read_only=True)
