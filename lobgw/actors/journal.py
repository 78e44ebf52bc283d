"""Durability for one symbol: an append-only command journal, snapshots and recovery.

Layout of a journal directory (`journal.directory`):

    LOCK                         held (flock) by the one process that uses the directory
    <symbol>/instrument.json     the instrument spec the journal's ticks and lots mean
    <symbol>/journal-00000003.log    commands, in the order the engine applied them
    <symbol>/snapshot-00000003.snap  the book before segment 3 (after segments 0..2)
    <symbol>/UNACKNOWLEDGED      only after a write that could not be undone (see below)
    <symbol>/quarantine/         what --repair (or a torn tail) moved out of the way

A journal record is one actor batch: `<length u32><crc32 u32><msgpack list of commands>`.
The actor writes (and, by policy, fsyncs) a batch's record before it applies the batch, so
nothing is acknowledged that is not in the journal, and recovery (snapshot, then the journal
tail through the same deterministic engine) rebuilds the identical book and sequence numbers.

**A failed write leaves no trace.** When a write or an fsync fails, the segment is cut back
to the end of the last good record (and fsynced) before the batch is refused, so a refused
order can never come back after a restart. If even that fails, the journal stops taking
writes until a restart and leaves `UNACKNOWLEDGED` with the good length: recovery cuts the
segment there before reading it.

**Torn versus corrupt.** Only a record that runs past the end of the last segment, with no
valid record after its start, is a torn tail (the crash cut the last write): it is cut off,
kept in `quarantine/`, and reported with a WARNING. Everything else is corruption and stops
recovery with `JournalCorruptError` naming the file, the offset and what is wrong: a
complete record with a bad CRC, a length that points at something that is not a record, a
record that does not decode, a gap in the chain of segments, and no usable snapshot while
the journal no longer begins at its first segment. `repair` keeps what comes before the
damage, moves the rest to `quarantine/`, and reports how many journaled (acknowledged)
commands it dropped.

Snapshots are written to a temporary file, fsynced, renamed and the directory fsynced; the
journal rotates to a new segment at the moment a snapshot is taken, and once the snapshot is
stored, segments and snapshots it makes unnecessary are deleted (the previous snapshot and
its segments are kept as a fallback).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import msgspec

from lobgw.book.commands import AnyCommand, SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.views import BookCapture, BookImage, BookSnapshot
from lobgw.encoding import ENCODE_CHUNK, Pieces, chunked_array_pieces, map_pieces
from lobgw.errors import (
    JournalCorruptError,
    JournalLockedError,
    JournalSpecError,
    JournalUnavailableError,
    LobgwError,
    SnapshotDamagedError,
)
from lobgw.histogram import FastHistogram

log = logging.getLogger("lobgw.journal")

FsyncPolicy = Literal["batch", "always", "off"]
HEADER = struct.Struct("<II")
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
SNAPSHOT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
SNAPSHOT_VERSION = 3
SNAPSHOT_VERSIONS = (1, 3)
"""Versions recovery reads (1: the book as views; 3: the book's image and the listeners'
parts)."""
MARKER = "UNACKNOWLEDGED"
SPEC_FILE = "instrument.json"

_encode = msgspec.msgpack.Encoder().encode
_decode_commands = msgspec.msgpack.Decoder(list[AnyCommand]).decode


class SnapshotFile(msgspec.Struct, frozen=True):
    """What a snapshot file holds."""

    version: int
    symbol: str
    segment: int
    """The first journal segment not included in this snapshot."""
    max_order_id: int
    views: BookSnapshot | None = msgspec.field(default=None, name="book")
    """Version 1: the book as views."""
    image: BookImage | None = None
    """Version 3: the book as its live orders."""
    parts: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    """State of the actor's listeners as of the same moment (order history, recent trades),
    by name, as each encoded it; each part restores itself."""

    @property
    def book(self) -> BookSnapshot:
        """The book, whichever version wrote it."""
        if self.image is not None:
            return self.image.snapshot()
        if self.views is None:
            raise SnapshotDamagedError(f"snapshot of {self.symbol} holds no book")
        return self.views


class Unacknowledged(msgspec.Struct, frozen=True):
    """The marker left when a failed write could not be cut back."""

    segment: int
    good_length: int
    reason: str


@dataclass
class Recovery:
    """What recovery found and did."""

    snapshot_segment: int | None = None
    snapshot_seq: int = 0
    records: int = 0
    commands: int = 0
    torn_bytes: int = 0
    quarantined: list[Path] = field(default_factory=list)
    dropped_commands: int = 0
    """Journaled commands --repair moved to quarantine (they were acknowledged)."""
    unparsed_bytes: int = 0
    """Quarantined bytes that are not even a damaged record."""
    unacknowledged_bytes: int = 0
    """Bytes after a failed write that were never acknowledged, cut at start-up."""
    max_order_id: int = 0
    seconds: float = 0.0
    parts: dict[str, bytes] = field(default_factory=dict)
    """The listeners' parts of the snapshot recovery started from, by name."""


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


def _record_at(data: bytes, offset: int) -> int | None:
    """The end of a valid record starting at `offset`, or None."""
    if len(data) - offset < HEADER.size:
        return None
    length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    if not length or start + length > len(data):
        return None
    return start + length if zlib.crc32(data[start:start + length]) == crc else None


def _next_record(data: bytes, offset: int) -> int | None:
    """The offset of the first valid record at or after `offset`, or None."""
    for candidate in range(offset, len(data) - HEADER.size):
        if _record_at(data, candidate) is not None:
            return candidate
    return None


class Salvage(msgspec.Struct):
    """What the part of a segment from some offset on holds."""

    commands: int = 0
    """Commands in the valid records."""
    garbage: int = 0
    """Bytes that are no valid, decodable record."""
    max_order_id: int = 0


def salvage(data: bytes, offset: int) -> Salvage:
    """Scan `data` from `offset` for valid records (skipping what is not one): what
    quarantining that part drops, and the order ids it had handed out."""
    found = Salvage()
    while offset < len(data):
        end = _record_at(data, offset)
        if end is None:
            following = _next_record(data, offset + 1)
            found.garbage += (following if following is not None else len(data)) - offset
            if following is None:
                break
            offset = following
            continue
        try:
            commands = _decode_commands(data[offset + HEADER.size:end])
        except msgspec.ValidationError:
            found.garbage += end - offset
        else:
            found.commands += len(commands)
            for command in commands:
                if isinstance(command, SubmitOrder):
                    found.max_order_id = max(found.max_order_id, command.order_id)
        offset = end
    return found


def read_records(path: Path, last_segment: bool) -> Iterator[tuple[int, bytes | None, str]]:
    """Yield (offset, payload, problem) for each record; payload None marks damage.

    The problem is "torn" for a record cut short at the end of the last segment (nothing
    valid follows its start), else a description of the corruption; reading stops there.
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
            following = _next_record(data, offset + 1)
            if last_segment and following is None:
                yield offset, None, "torn"
            elif following is not None:
                yield offset, None, (f"damaged length field ({length} bytes would run past "
                                     f"the end; a valid record follows at offset {following})")
            else:
                yield offset, None, "record runs past the end of a segment that is not the last"
            return
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            yield offset, None, "CRC mismatch (the record is complete, its content is not)"
            return
        yield offset, payload, ""
        offset = start + length


def read_snapshot(path: Path) -> SnapshotFile:
    """Decode one snapshot file; raise SnapshotDamagedError if it fails its checks."""
    for _, payload, problem in read_records(path, last_segment=False):
        if payload is None:
            raise SnapshotDamagedError(f"{path}: {problem}")
        try:
            return msgspec.msgpack.decode(payload, type=SnapshotFile)
        except msgspec.ValidationError as error:
            raise SnapshotDamagedError(f"{path}: undecodable: {error}") from None
    raise SnapshotDamagedError(f"{path}: empty")


def _spec_text(spec: InstrumentSpec) -> str:
    return msgspec.json.encode(spec).decode()


class DirectoryLock:
    """An exclusive lock on a journal directory, held for the life of the process.

    `fcntl.flock` on `LOCK`, which also holds the pid of its holder: a second gateway on the
    same directory is refused at start-up instead of writing the same journal.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "LOCK"
        handle: IO[str] = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise JournalLockedError(directory, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        """Give the directory up (at shutdown)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


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
        self._prepared: tuple[int, int] | None = None
        self._good_length = 0
        self.failed: str | None = None
        """Why the journal takes no more writes (a failed write that could not be undone)."""
        self.bytes_written = 0
        self.records_written = 0
        self.commands_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        self.max_order_id = 0
        self.fsync_seconds = FastHistogram(FSYNC_BUCKETS)
        # Seams for fault-injection tests: the system calls the journal writes with.
        self._write = os.write
        self._fsync = os.fsync

    # -- the instrument ----------------------------------------------------------------------

    def check_spec(self, spec: InstrumentSpec) -> None:
        """Refuse a spec that differs from the one this journal's ticks and lots were written
        in (JournalSpecError, old and new values); record it if the journal has none yet."""
        recorded = self.recorded_spec()
        if recorded is not None and recorded != spec:
            differences = [
                f"{name} {getattr(recorded, name)} -> {getattr(spec, name)}"
                for name in ("tick_size", "lot_size", "min_quantity", "max_quantity",
                             "price_band_low", "price_band_high")
                if getattr(recorded, name) != getattr(spec, name)]
            raise JournalSpecError(self.symbol, self.directory, ", ".join(differences))

    def recorded_spec(self) -> InstrumentSpec | None:
        """The spec the journal was written with: its file, else its newest snapshot's."""
        path = self.directory / SPEC_FILE
        if path.exists():
            return msgspec.json.decode(path.read_bytes(), type=InstrumentSpec)
        found = self.newest_snapshot(quiet=True)
        return None if found is None else found[1].book.spec

    def record_spec(self, spec: InstrumentSpec) -> None:
        """Write the spec file (once, when the journal starts)."""
        path = self.directory / SPEC_FILE
        if not path.exists():
            temporary = path.with_suffix(".tmp")
            temporary.write_text(_spec_text(spec) + "\n")
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            temporary.rename(path)
            _fsync_directory(self.directory)

    # -- recovery ---------------------------------------------------------------------------

    def recover(self, spec: InstrumentSpec, repair: bool = False, read_only: bool = False
                ) -> tuple[BookSnapshot | None, Recovery, list[list[AnyCommand]]]:
        """Load the newest valid snapshot and read the journal tail.

        Returns the book as of the snapshot (None: start from an empty book of `spec`), what
        was found, and the tail's batches of commands, which the caller applies through the
        actor (so listeners see them). Raises JournalCorruptError on damage unless `repair`.
        `read_only` changes no file: a torn tail is only reported, corruption always raises.
        """
        started = time.perf_counter()
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
        recovery = Recovery()
        cut = self._unacknowledged(recovery, read_only)
        found = self.newest_snapshot()
        book = None
        first = 0
        all_segments = segment_indices(self.directory)
        if found is not None:
            index, loaded = found
            book = loaded.book
            first = index
            recovery.snapshot_segment = index
            recovery.snapshot_seq = loaded.book.seq
            recovery.max_order_id = loaded.max_order_id
            recovery.parts = {name: bytes(part) for name, part in loaded.parts.items()}
        elif all_segments and all_segments[0] != 0:
            damaged = len(snapshot_indices(self.directory))
            self._corrupt(recovery, repair, read_only, all_segments, 0,
                          f"no usable snapshot ({damaged} damaged) and the journal starts at "
                          f"segment {all_segments[0]}: the history before it is gone")
            all_segments = []
        segments = [i for i in all_segments if i >= first]
        for position, index in enumerate(segments):
            if index != first + position:
                missing = first + position
                self._corrupt(recovery, repair, read_only, segments[position:], 0,
                              f"segment {missing} is missing from the chain "
                              f"({segment_path(self.directory, missing).name})")
                segments = segments[:position]
                break
        batches: list[list[AnyCommand]] = []
        # Empty segments at the end (one prepared ahead of a rotation) hold nothing: the
        # segment before them is the last one written, where a torn tail can be.
        written = [i for i in segments if segment_path(self.directory, i).stat().st_size]
        last_written = written[-1] if written else None
        for position, index in enumerate(segments):
            path = segment_path(self.directory, index)
            last = index == last_written or position == len(segments) - 1
            stop_at = cut if cut is not None and cut[0] == index else None
            damaged_at = self._read_segment(path, last, batches, recovery, stop_at)
            if damaged_at is None:
                continue
            offset, problem = damaged_at
            if problem == "torn":
                self._cut_torn(path, offset, recovery, read_only)
                break
            self._corrupt(recovery, repair, read_only, segments[position:], offset, problem)
            segments = segments[:position + 1]
            break
        self.segment = segments[-1] if segments else first
        self.max_order_id = recovery.max_order_id
        recovery.seconds = time.perf_counter() - started
        return book, recovery, batches

    def _read_segment(self, path: Path, last: bool, batches: list[list[AnyCommand]],
                      recovery: Recovery, stop_at: tuple[int, int] | None
                      ) -> tuple[int, str] | None:
        """Append a segment's batches; return (offset, problem) where it is damaged."""
        for offset, payload, problem in read_records(path, last):
            if stop_at is not None and offset >= stop_at[1]:
                return None  # read only: the rest was never acknowledged
            if payload is None:
                return offset, problem
            try:
                commands = _decode_commands(payload)
            except msgspec.ValidationError as error:
                return offset, f"undecodable record: {error}"
            batches.append(commands)
            recovery.records += 1
            recovery.commands += len(commands)
            for command in commands:
                if isinstance(command, SubmitOrder) and command.order_id > recovery.max_order_id:
                    recovery.max_order_id = command.order_id
        return None

    def _unacknowledged(self, recovery: Recovery, read_only: bool) -> tuple[int, int] | None:
        """Cut a segment back to the length a failed write's marker names."""
        marker = self.directory / MARKER
        if not marker.exists():
            return None
        left = msgspec.json.decode(marker.read_bytes(), type=Unacknowledged)
        path = segment_path(self.directory, left.segment)
        if path.exists() and path.stat().st_size > left.good_length:
            recovery.unacknowledged_bytes = path.stat().st_size - left.good_length
            if not read_only:
                with path.open("r+b") as handle:
                    handle.truncate(left.good_length)
                    os.fsync(handle.fileno())
        if not read_only:
            marker.unlink()
            _fsync_directory(self.directory)
            log.warning("%s: cut %d bytes a failed write had left (%s); they were never "
                        "acknowledged", path, recovery.unacknowledged_bytes, left.reason)
        return left.segment, left.good_length

    def _cut_torn(self, path: Path, offset: int, recovery: Recovery, read_only: bool) -> None:
        data = path.read_bytes()
        recovery.torn_bytes = len(data) - offset
        if read_only:
            return
        folder = self._quarantine_folder()
        kept = folder / f"{path.name}.torn-at-{offset}.{time.strftime('%Y%m%dT%H%M%S')}"
        kept.write_bytes(data[offset:])
        with path.open("r+b") as handle:
            handle.truncate(offset)
            os.fsync(handle.fileno())
        recovery.quarantined.append(kept)
        log.warning("%s: torn last record (%d bytes at offset %d) cut off; kept in %s", path,
                    recovery.torn_bytes, offset, kept)

    def _corrupt(self, recovery: Recovery, repair: bool, read_only: bool,
                 segments: Sequence[int], offset: int, problem: str) -> None:
        """Corruption at `offset` of the first of `segments`: raise, or with `repair`
        quarantine from there on and count what that drops."""
        first_path = segment_path(self.directory, segments[0])
        dropped = garbage = 0
        max_id = recovery.max_order_id
        for number, index in enumerate(segments):
            found = salvage(segment_path(self.directory, index).read_bytes(),
                            offset if number == 0 else 0)
            dropped += found.commands
            garbage += found.garbage
            max_id = max(max_id, found.max_order_id)
        if not repair or read_only:
            raise JournalCorruptError(first_path, offset, problem, dropped)
        recovery.quarantined += self._quarantine(segments, offset)
        recovery.dropped_commands += dropped
        recovery.unparsed_bytes += garbage
        # Ids of dropped orders were acknowledged to clients: never hand them out again.
        recovery.max_order_id = max_id
        log.error("%s at offset %d: %s; --repair kept what came before and quarantined %s, "
                  "dropping %d acknowledged command(s) and %d unreadable byte(s)", first_path,
                  offset, problem, ", ".join(map(str, recovery.quarantined)), dropped, garbage)

    def newest_snapshot(self, quiet: bool = False) -> tuple[int, SnapshotFile] | None:
        """The newest snapshot that loads, with its segment index; a damaged one is logged
        (unless `quiet`) and the next older one tried."""
        for index in reversed(snapshot_indices(self.directory)):
            loaded = self._load_snapshot(snapshot_path(self.directory, index), quiet)
            if loaded is not None:
                return index, loaded
        return None

    def _load_snapshot(self, path: Path, quiet: bool) -> SnapshotFile | None:
        try:
            loaded = read_snapshot(path)
        except (OSError, LobgwError) as error:
            if not quiet:
                log.error("%s: unreadable snapshot (%s); trying an older one", path, error)
            return None
        if loaded.symbol != self.symbol or loaded.version not in SNAPSHOT_VERSIONS:
            if not quiet:
                log.error("%s: not a snapshot of %s", path, self.symbol)
            return None
        return loaded

    def _quarantine_folder(self) -> Path:
        folder = self.directory / "quarantine"
        folder.mkdir(exist_ok=True)
        return folder

    def _quarantine(self, segments: Sequence[int], offset: int) -> list[Path]:
        folder = self._quarantine_folder()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        for number, index in enumerate(segments):
            segment = segment_path(self.directory, index)
            if number == 0 and offset:
                target = folder / f"{segment.name}.{stamp}.from-{offset}"
                target.write_bytes(segment.read_bytes()[offset:])
                with segment.open("r+b") as handle:
                    handle.truncate(offset)
                    os.fsync(handle.fileno())
            else:
                target = folder / f"{segment.name}.{stamp}"
                segment.rename(target)
            moved.append(target)
        _fsync_directory(self.directory)
        return moved

    # -- writing ----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the current segment for appending."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = segment_path(self.directory, self.segment)
        self._file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._good_length = os.fstat(self._file).st_size
        _fsync_directory(self.directory)

    def append(self, commands: Sequence[AnyCommand]) -> int:
        """Write one batch as one record (and fsync it unless the policy is off).

        Raises JournalUnavailableError if the disk refuses; then nothing of the batch is left
        in the journal (see the module docstring).
        """
        if self.failed is not None:
            raise JournalUnavailableError(f"{self.symbol}: {self.failed}")
        record = frame(_encode(list(commands)))
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            written = self._write(self._file, record)
            if written != len(record):
                raise OSError(f"short write ({written} of {len(record)} bytes)")
            if self.fsync != "off":
                started = time.perf_counter()
                self._fsync(self._file)
                self.fsync_seconds.observe(time.perf_counter() - started)
        except OSError as error:
            self._undo(error)
            raise JournalUnavailableError(f"{self.symbol}: journal write failed: {error}"
                                          ) from error
        self._good_length += len(record)
        self.bytes_written += len(record)
        self.records_written += 1
        self.commands_since_snapshot += len(commands)
        for command in commands:
            if isinstance(command, SubmitOrder) and command.order_id > self.max_order_id:
                self.max_order_id = command.order_id
        return len(record)

    def _undo(self, error: OSError) -> None:
        """Cut the segment back to its last good record; if that fails, stop for good and
        leave the marker that tells recovery where to cut."""
        try:
            assert self._file is not None
            os.ftruncate(self._file, self._good_length)
            self._fsync(self._file)
        except (OSError, AssertionError) as undo_error:
            self.failed = (f"a failed write ({error}) could not be undone ({undo_error}); "
                           "the journal takes no more writes until a restart")
            log.critical("%s: %s", self.symbol, self.failed)
            try:
                marker = self.directory / MARKER
                marker.write_bytes(msgspec.json.encode(Unacknowledged(
                    self.segment, self._good_length, str(error))))
                with marker.open("rb") as handle:
                    os.fsync(handle.fileno())
                _fsync_directory(self.directory)
            except OSError:
                log.critical("%s: could not write %s either: on restart, check the last "
                             "record of %s", self.symbol, MARKER,
                             segment_path(self.directory, self.segment))

    def snapshot_due(self) -> bool:
        """Whether enough happened since the last snapshot."""
        return self.commands_since_snapshot > 0 and (
            self.commands_since_snapshot >= self.snapshot_every_commands
            or time.monotonic() - self.last_snapshot >= self.snapshot_every_seconds)

    def rotate(self) -> int:
        """Start a new segment at a snapshot's moment; return its index (the snapshot to
        store is the book before it). Uses the segment `prepare_next` made durable ahead of
        time when there is one, so rotating waits for no disk."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self.segment += 1
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] == self.segment:
            self._file = prepared[1]
            self._good_length = os.fstat(self._file).st_size
        else:
            if prepared is not None:
                os.close(prepared[1])
            self.open()
        self.commands_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        return self.segment

    def prepare_next(self) -> None:
        """Create the segment after the current one and make its name durable (blocking: in
        a thread, while nothing rotates)."""
        index = self.segment + 1
        if self._prepared is None:
            path = segment_path(self.directory, index)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _fsync_directory(self.directory)
            self._prepared = (index, descriptor)

    def snapshot_pieces(self, segment: int, book: BookCapture,
                        parts: dict[str, Callable[[], Pieces]]) -> Pieces:
        """The snapshot before `segment` as consecutive pieces of its encoding, each a
        bounded amount of work (see `lobgw.encoding`): the actor writes them between
        batches."""
        return map_pieces([
            ("version", SNAPSHOT_VERSION), ("symbol", self.symbol), ("segment", segment),
            ("max_order_id", self.max_order_id),
            ("image", lambda: map_pieces([
                ("spec", book.spec), ("seq", book.seq), ("counters", book.counters),
                *_side_fields(book, "bid", book.side_keys(buy=True)),
                *_side_fields(book, "ask", book.side_keys(buy=False)),
                ("hidden", book.hidden), ("stops", book.stops),
                ("last_price", book.last_price)])),
            ("parts", lambda: map_pieces(list(parts.items())))])

    def snapshot_writer(self, segment: int) -> SnapshotWriter:
        """A file for the snapshot before `segment`, to write pieces into."""
        return SnapshotWriter(snapshot_path(self.directory, segment))

    def prune(self, segment: int) -> None:
        """After the snapshot before `segment` is stored: delete what the snapshot before it
        already covered (that snapshot and its segments stay as a fallback)."""
        previous = [i for i in snapshot_indices(self.directory) if i < segment]
        keep_from = previous[-1] if previous else 0
        for index in segment_indices(self.directory):
            if index < keep_from:
                segment_path(self.directory, index).unlink()
        for index in previous[:-1]:
            snapshot_path(self.directory, index).unlink()

    def write_snapshot(self, book: BookCapture,
                       parts: dict[str, Callable[[], Pieces]] | None = None) -> Path:
        """Rotate, encode, store and prune in one go (tools and tests; the actor writes its
        snapshots piece by piece between batches instead)."""
        segment = self.rotate()
        writer = self.snapshot_writer(segment)
        for piece in self.snapshot_pieces(segment, book, parts or {}):
            writer.write(piece)
        final = writer.finish()
        self.prune(segment)
        return final

    def close(self) -> None:
        """Close the segment file (and a prepared next one, removing it while empty)."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._prepared is not None:
            index, descriptor = self._prepared
            self._prepared = None
            os.close(descriptor)
            path = segment_path(self.directory, index)
            if path.exists() and not path.stat().st_size:
                path.unlink()


def _side_fields(book: BookCapture, side: str, keys: list[int]
                 ) -> list[tuple[str, Callable[[], Pieces]]]:
    """A side of a BookImage: its orders and their remaining lots, in priority order, made
    and encoded a chunk at a time."""
    count = sum(len(book.levels[key]) for key in keys)

    def chunks(remaining: bool) -> Iterator[list[object]]:
        chunk: list[object] = []
        for key in keys:
            queue = book.levels[key]
            chunk += queue.values() if remaining else map(book.orders.__getitem__, queue)
            if len(chunk) >= ENCODE_CHUNK:
                yield chunk
                chunk = []
        yield chunk

    return [(f"{side}s", lambda: chunked_array_pieces(count, chunks(False))),
            (f"{side}_remaining", lambda: chunked_array_pieces(count, chunks(True)))]


class SnapshotWriter:
    """A snapshot file written piece by piece: a temporary file whose header (length and
    CRC of the whole payload) is filled in at the end, then fsynced and renamed."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temporary = final.with_suffix(".tmp")
        self._handle: IO[bytes] = self.temporary.open("wb")
        self._handle.write(HEADER.pack(0, 0))
        self._length = 0
        self._crc = 0

    def write(self, piece: bytes) -> None:
        """Append one piece of the payload."""
        self._handle.write(piece)
        self._crc = zlib.crc32(piece, self._crc)
        self._length += len(piece)

    def finish(self) -> Path:
        """Fill in the header and make the file durable under its final name (blocking:
        run it in a thread)."""
        handle = self._handle
        handle.seek(0)
        handle.write(HEADER.pack(self._length, self._crc))
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self.temporary.rename(self.final)
        _fsync_directory(self.final.parent)
        return self.final

    def abandon(self) -> None:
        """Drop a snapshot that failed half-way."""
        self._handle.close()
        self.temporary.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_journal(directory: Path, spec: InstrumentSpec
                 ) -> tuple[BookSnapshot | None, Recovery, list[list[AnyCommand]]]:
    """Read a symbol's journal without changing anything (for the operator tools)."""
    journal = Journal(directory.parent, directory.name)
    return journal.recover(spec, read_only=True)
