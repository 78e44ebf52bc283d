"""A symbol actor: one asyncio task that owns one Engine and one bounded command queue.

Nothing else touches the engine, so nothing needs a lock. Every request is rows of commands
(most are one row) with somewhere to send the answer; the task takes everything queued (up
to `batch_size`), journals it, applies it, publishes the batch's events to listeners
synchronously (listeners must not block), then answers each request. A full queue is refused
at once with `OverloadedError`; an exception in one request is logged with its context and
answered as `InternalError`, and the actor goes on.

Ways in, by what the caller needs:

    submit(commands, reply)   order entry: never waits; `reply` runs inside the actor
    ask(commands)             the same, answered through a future
    query(reader)             run a read-only function on the book between batches
    await send(rows, hook)    in-process producers (replay, backtests, tools): wait for room;
                              `hook` sees the book after each row
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from lobgw.actors.journal import SNAPSHOT_BUCKETS, Journal, Recovery, SnapshotWriter
from lobgw.book.commands import AnyCommand, ExpireOrders
from lobgw.book.engine import Engine
from lobgw.book.events import Event
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.book.views import BookCapture, BookSnapshot, Counters, OrderView
from lobgw.encoding import Pieces
from lobgw.errors import (
    InternalError,
    JournalUnavailableError,
    LobgwError,
    NotReadyError,
    OverloadedError,
    ShuttingDownError,
)
from lobgw.histogram import FastHistogram

T = TypeVar("T")

log = logging.getLogger("lobgw.actor")


class BookReader(Protocol):
    """The read-only face of a book that listeners, hooks and queries may use."""

    @property
    def spec(self) -> InstrumentSpec: ...
    @property
    def seq(self) -> int: ...
    def best_bid(self) -> tuple[int, int] | None: ...
    def best_ask(self) -> tuple[int, int] | None: ...
    def side_depth(self, side: Side, levels: int | None = None) -> list[tuple[int, int]]: ...
    def depth(
        self, levels: int | None = None
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]: ...
    def level_size(self, side: Side, price: int) -> int: ...
    def level_orders(self, side: Side, price: int) -> list[OrderView]: ...
    def order(self, order_id: int) -> OrderView | None: ...
    def owner(self, order_id: int) -> str | None: ...
    def open_order_count(self) -> int: ...
    def counters(self) -> Counters: ...
    def snapshot(self) -> BookSnapshot: ...


Listener = Callable[[str, list[Event], BookReader], None]
"""Called inside the actor after each batch with the symbol, its events and the book."""

Capture = Callable[[], Callable[[], Pieces]]
"""Takes a listener's state for one symbol as of the end of the last batch, cheaply (inside
the actor's turn), and returns what encodes it for a snapshot, in pieces, later."""

Restore = Callable[[bytes], None]
"""Gives a listener back the state its capture saved in the snapshot recovery starts from."""

SNAPSHOT_SLICE = 0.0005
"""Seconds of snapshot encoding between two yields to the event loop."""

RECOVERY_CHUNK = 8192
"""Commands per request when a journal tail is applied at start-up."""

EXPIRY_MARGIN = 0.001
"""Seconds after an order's expire time that its expiry is sent (the loop's timer and the
wall clock differ slightly; an early one would expire nothing)."""

EXPIRY_RETRY = 0.05
"""Seconds before a refused (queue full, still recovering) expiry is tried again."""

SNAPSHOT_RETRY_FIRST = 1.0
SNAPSHOT_RETRY_MAX = 60.0
"""Seconds before a failed snapshot is tried again: doubling from the first to the max."""

LatencyObserver = Callable[[str, float], None]
"""Told each request's seconds from enqueue to its events being published."""

Reply = Callable[[Any, BaseException | None], None]
"""Called inside the actor with a request's answer (or its error)."""

RowHook = Callable[[int, list[Event], BookReader], None]
"""Called inside the actor after each row of a request, with that row's events."""


class _Request:
    """One queue entry: rows of commands or a query, and where the answer goes."""

    __slots__ = ("after_row", "enqueued", "future", "reader", "recovered", "reply", "rows")

    def __init__(
        self,
        rows: Sequence[Sequence[AnyCommand]],
        reply: Reply | None = None,
        future: asyncio.Future[Any] | None = None,
        after_row: RowHook | None = None,
        reader: Callable[[BookReader], Any] | None = None,
        recovered: bool = False,
    ) -> None:
        self.rows = rows
        self.reply = reply
        self.future = future
        self.after_row = after_row
        self.reader = reader
        self.recovered = recovered
        """Commands read back from the journal at startup: apply, do not write again."""
        self.enqueued = time.perf_counter()

    def commands(self) -> list[AnyCommand]:
        """Every command of the request, rows flattened."""
        rows = self.rows
        if len(rows) == 1:
            return list(rows[0])
        return [command for row in rows for command in row]


_STOP = _Request(())


class SymbolActor:
    """Owns one symbol's engine inside one task; see the module docstring."""

    def __init__(
        self,
        spec: InstrumentSpec,
        *,
        queue_size: int = 16_384,
        batch_size: int = 512,
        observe_latency: LatencyObserver | None = None,
        journal: Journal | None = None,
        expire_on_clock: bool = False,
    ) -> None:
        self._engine = Engine(spec)
        self._expire_on_clock = expire_on_clock
        """Send `ExpireOrders` on the wall clock when a GTD or DAY order falls due (the
        gateway; replay and backtests send it from data time themselves)."""
        self._expiry: tuple[int, asyncio.TimerHandle] | None = None
        self.journal = journal
        self.journal_available = True
        self.symbol = spec.symbol
        self.batch_size = batch_size
        self.counters = Counters()
        """The engine's counters as of the last batch (read between batches, never during)."""
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=queue_size)
        self._listeners: list[Listener] = []
        self._observe_latency = observe_latency
        self._task: asyncio.Task[None] | None = None
        self._accepting = True
        self._recovered = journal is None
        """A journaled symbol takes requests only once its journal tail is applied."""
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.batches = 0
        self.failures = 0
        self._parts: dict[str, tuple[Capture, Restore]] = {}
        self._snapshotting: asyncio.Task[None] | None = None
        self._snapshot_retry_at = 0.0
        self._snapshot_backoff = SNAPSHOT_RETRY_FIRST
        self.snapshot_error: str | None = None
        """Why the last snapshot failed (None once one succeeds again)."""
        self.snapshot_failures = 0
        self.snapshot_pause = FastHistogram(SNAPSHOT_BUCKETS)
        """Seconds a snapshot held the actor (the book is captured by forking a child)."""
        self.snapshot_write = FastHistogram(SNAPSHOT_BUCKETS)
        """Seconds from a snapshot's capture until its file is durable."""

    @property
    def spec(self) -> InstrumentSpec:
        """The instrument this actor trades."""
        return self._engine.spec

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the actor's task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"actor:{self.symbol}")

    async def stop(self) -> None:
        """Refuse new requests, let everything already queued finish, then end the task."""
        self._accepting = False
        self._resumed.set()
        if self._expiry is not None:
            self._expiry[1].cancel()
            self._expiry = None
        if self._task is None:
            return
        if not self._task.done():
            await self._queue.put(_STOP)
        await self._task

    @property
    def running(self) -> bool:
        """True while the task is alive and accepting requests."""
        return self._accepting and self._task is not None and not self._task.done()

    @property
    def unready_reason(self) -> str | None:
        """Why the symbol cannot take orders right now, or None when it can."""
        if not self._accepting:
            return "stopped"
        if not self._recovered:
            return "recovering its journal"
        if self._task is None or self._task.done():
            return "stopped" if self._task is not None else "not started"
        if not self.journal_available:
            return "its journal cannot be written"
        return None

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the queue."""
        return self._queue.qsize()

    def pause(self) -> None:
        """Halt the symbol: requests still queue (until the queue is full) but wait."""
        self._resumed.clear()

    def resume(self) -> None:
        """End a halt; queued requests are applied in order."""
        self._resumed.set()

    @property
    def paused(self) -> bool:
        """True while halted."""
        return not self._resumed.is_set()

    def add_listener(self, listener: Listener) -> None:
        """Publish every batch's events to `listener` (in the order listeners were added)."""
        self._listeners.append(listener)

    def add_snapshot_part(self, name: str, capture: Capture, restore: Restore) -> None:
        """Save a listener's state in this symbol's snapshots beside the book (captured at
        the same batch boundary), and give it back on recovery before the journal tail."""
        self._parts[name] = (capture, restore)

    def restore(self, snapshot: BookSnapshot) -> None:
        """Before `start`: replace the book with an identical copy of a snapshot's."""
        if self._task is not None:
            raise RuntimeError(f"{self.symbol}: restore before the actor starts")
        self._engine = Engine.restore(snapshot)
        self.counters = self._engine.counters()

    async def recover(self, repair: bool = False,
                      restored: Callable[[BookSnapshot], None] | None = None) -> Recovery:
        """Rebuild the book from the journal and start: the newest valid snapshot, then the
        journal tail through the queue (so listeners see the tail's events as the first
        time). `restored` sees the snapshot before the tail. Raises JournalCorruptError on
        damage unless `repair`."""
        journal = self.journal
        if journal is None:
            raise RuntimeError(f"{self.symbol} has no journal to recover from")
        journal.check_spec(self.spec)
        snapshot, recovery, batches = await asyncio.to_thread(journal.recover, self.spec,
                                                              repair)
        journal.record_spec(self.spec)
        for name, (_, give_back) in self._parts.items():
            if name in recovery.parts:
                give_back(recovery.parts[name])
        if snapshot is not None:
            self.restore(snapshot)
            if restored is not None:
                restored(snapshot)
        self.start()
        started = time.perf_counter()
        # Records are coalesced into big requests: the engine gives the same events however
        # commands are chunked, and one request per record would cost more than its commands.
        future: asyncio.Future[Any] | None = None
        chunk: list[AnyCommand] = []
        for position, commands in enumerate(batches, 1):
            chunk += commands
            if len(chunk) >= RECOVERY_CHUNK or position == len(batches):
                future = asyncio.get_running_loop().create_future()
                await self._queue.put(_Request((chunk,), future=future, recovered=True))
                chunk = []
        if future is not None:
            await future
        recovery.seconds += time.perf_counter() - started
        journal.open()
        # The tail counts towards the next snapshot (so a clean stop snapshots it).
        journal.commands_since_snapshot = recovery.commands
        self._recovered = True
        if self._expire_on_clock:
            self._arm_expiry()  # what fell due while the gateway was down goes now
        return recovery

    # -- requests --------------------------------------------------------------------------

    def submit(self, commands: Sequence[AnyCommand], reply: Reply) -> None:
        """Queue commands now (or raise OverloadedError / ShuttingDownError); `reply` gets
        their events inside the actor once they are published. `reply` must not block."""
        self._put(_Request((commands,), reply=reply))

    def submit_rows(self, rows: Sequence[Sequence[AnyCommand]], reply: Reply,
                    after_row: RowHook) -> None:
        """Like `submit` for rows of commands that are journaled together (one record) and
        answered together; `after_row` sees each row's events (batch entry)."""
        self._put(_Request(rows, reply=reply, after_row=after_row))

    def ask(self, commands: Sequence[AnyCommand]) -> asyncio.Future[list[Event]]:
        """Queue commands now (or raise); the future gets their events."""
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._put(_Request((commands,), future=future))
        return future

    def query(self, reader: Callable[[BookReader], T]) -> asyncio.Future[T]:
        """Run `reader` on the book inside the actor, between batches; the future gets its
        result. Raise OverloadedError / ShuttingDownError if it cannot be queued."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put(_Request((), future=future, reader=reader))
        return future

    async def send(self, rows: Sequence[Sequence[AnyCommand]],
                   after_row: RowHook | None = None) -> asyncio.Future[list[Event]]:
        """Queue rows of commands, waiting for room instead of refusing; return the future
        of all their events. `after_row` sees the book after each row (inside the actor)."""
        if not self._accepting:
            raise ShuttingDownError(f"{self.symbol} is shutting down")
        if not self._recovered:
            raise NotReadyError(f"{self.symbol} is recovering its journal")
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(rows, future=future, after_row=after_row))
        return future

    def _put(self, request: _Request) -> None:
        """Queue a request now, or refuse it: shutting down, or the queue is full."""
        if not self._accepting:
            raise ShuttingDownError(f"{self.symbol} is shutting down")
        if not self._recovered:
            raise NotReadyError(f"{self.symbol} is recovering its journal")
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise OverloadedError(f"{self.symbol} command queue is full") from None

    # -- the task --------------------------------------------------------------------------

    async def _run(self) -> None:
        queue = self._queue
        journal = self.journal
        while True:
            batch = [await queue.get()]
            await self._resumed.wait()  # a halt holds what arrived
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            if journal is not None:
                batch = await self._journal_batch(journal, batch)
            stop = self._apply(batch)
            if journal is not None and stop:
                await self._snapshot(journal, final=True)  # a fast next start
            elif journal is not None and journal.snapshot_due():
                await self._snapshot(journal)
            if stop:
                return

    async def _journal_batch(self, journal: Journal, batch: list[_Request]) -> list[_Request]:
        """Write the batch's commands before they are applied; refuse what cannot be written.

        One record and one fsync for the whole batch (group commit), or one per request with
        the `always` policy. Requests whose commands did not reach the journal are answered
        with JournalUnavailableError and never applied.
        """
        groups: list[list[_Request]] = [[]]
        for request in batch:
            if request.reader is None and request is not _STOP and not request.recovered:
                groups[-1].append(request)
                if journal.fsync == "always":
                    groups.append([])
        written: set[int] = set()
        for group in groups:
            commands = [command for request in group for command in request.commands()]
            if not commands:
                written.update(id(request) for request in group)
                continue
            try:
                await asyncio.to_thread(journal.append, commands)
            except JournalUnavailableError as error:
                if self.journal_available:
                    log.error("%s: %s; refusing orders until the journal can be written",
                              self.symbol, error)
                self.journal_available = False
                refused = [r for r in batch if r.reader is None and r is not _STOP
                           and not r.recovered and id(r) not in written]
                for request in refused:
                    self._answer(request, None, error)
                return [r for r in batch if r not in refused]
            written.update(id(request) for request in group)
        if not self.journal_available:
            log.warning("%s: the journal is writable again", self.symbol)
            self.journal_available = True
        return batch

    def _capture_parts(self) -> dict[str, Callable[[], Pieces]]:
        return {name: capture() for name, (capture, _) in self._parts.items()}

    async def _snapshot(self, journal: Journal, final: bool = False) -> None:
        """Snapshot the book as of the end of this batch, off the hot path.

        Inside the actor's turn only the capture happens (two dict copies of the book; the
        listeners' parts likewise) and the journal rotates. The snapshot is then encoded and
        written a piece at a time on the event loop, yielding after every
        SNAPSHOT_SLICE seconds of work, and fsynced in a thread: neither a forked child
        (copy-on-write faults stall the parent) nor an encoding thread (the GIL starves the
        loop) is involved. The clean-stop snapshot (`final`) is awaited.
        """
        if journal.failed is not None:
            return  # the disk already failed us: the journal and its marker are the record
        if self._snapshotting is not None:
            if not final:
                return
            await self._snapshotting
        if final and not journal.commands_since_snapshot:
            return
        if not final and time.monotonic() < self._snapshot_retry_at:
            return
        started = time.perf_counter()
        capture = self._engine.capture()
        parts = self._capture_parts()
        try:
            segment = journal.rotate()
        except OSError as error:
            self._snapshot_failed(f"cannot start a new segment: {error}")
            return
        self.snapshot_pause.observe(time.perf_counter() - started)
        self._snapshotting = asyncio.create_task(
            self._write_snapshot(journal, segment, capture, parts, started),
            name=f"snapshot:{self.symbol}")
        if final:
            await self._snapshotting

    async def _write_snapshot(self, journal: Journal, segment: int, capture: BookCapture,
                              parts: dict[str, Callable[[], Pieces]], started: float) -> None:
        writer = None
        try:
            writer = journal.snapshot_writer(segment)
            pause_at = time.perf_counter() + SNAPSHOT_SLICE
            for piece in journal.snapshot_pieces(segment, capture, parts):
                writer.write(piece)
                if time.perf_counter() >= pause_at:
                    await asyncio.sleep(0)  # let batches and I/O run
                    pause_at = time.perf_counter() + SNAPSHOT_SLICE
            await asyncio.to_thread(self._finish_snapshot, journal, writer)
            journal.prune(segment)
        except (OSError, LobgwError, msgspec.EncodeError) as error:
            if writer is not None:
                writer.abandon()
            self._snapshot_failed(f"{error}")
        else:
            self.snapshot_write.observe(time.perf_counter() - started)
            if self.snapshot_error is not None:
                log.warning("%s: snapshots are written again", self.symbol)
            self.snapshot_error = None
            self._snapshot_backoff = SNAPSHOT_RETRY_FIRST
        finally:
            self._snapshotting = None

    @staticmethod
    def _finish_snapshot(journal: Journal, writer: SnapshotWriter) -> None:
        """Make the snapshot durable and the next segment ready (blocking: in a thread)."""
        writer.finish()
        journal.prepare_next()

    def _snapshot_failed(self, reason: str) -> None:
        """Count a failed snapshot and back off; one log line per change of state."""
        self.snapshot_failures += 1
        if self.snapshot_error is None:
            log.error("%s: snapshot failed (%s); the journal keeps everything meanwhile, "
                      "retrying with back-off", self.symbol, reason)
        self.snapshot_error = reason
        self._snapshot_retry_at = time.monotonic() + self._snapshot_backoff
        self._snapshot_backoff = min(SNAPSHOT_RETRY_MAX, self._snapshot_backoff * 2)

    # -- expiry on the wall clock -------------------------------------------------------------

    def _arm_expiry(self, retry: float | None = None) -> None:
        """Wake up when the book's earliest GTD or DAY order falls due (or retry soon)."""
        due = self._engine.next_expiry()
        current = self._expiry
        if due is None and retry is None:
            if current is not None:
                current[1].cancel()
                self._expiry = None
            return
        if retry is None and current is not None and due is not None and current[0] <= due:
            return  # already awake in time
        if current is not None:
            current[1].cancel()
        delay = retry if retry is not None else max(
            0.0, (due or 0) - time.time_ns()) / 1e9 + EXPIRY_MARGIN
        handle = asyncio.get_running_loop().call_later(delay, self._expire_due)
        self._expiry = (due if due is not None else 0, handle)

    def _expire_due(self) -> None:
        """Send the expiry of what is due through the queue, journaled like any command."""
        self._expiry = None
        if not self._accepting:
            return
        try:
            self._put(_Request(((ExpireOrders(time.time_ns()),),), reply=self._expired))
        except (OverloadedError, NotReadyError):
            self._arm_expiry(EXPIRY_RETRY)

    def _expired(self, events: list[Event] | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("%s: expiring orders failed (%s); trying again", self.symbol, error)
            self._arm_expiry(SNAPSHOT_RETRY_FIRST)

    def _answer(self, request: _Request, result: Any, error: BaseException | None) -> None:
        if request.reply is not None:
            try:
                request.reply(result, error)
            except Exception:
                log.exception("reply callback failed for %s", self.symbol)
        elif request.future is not None and not request.future.done():
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

    def _apply(self, batch: list[_Request]) -> bool:
        """Apply one batch, publish it, answer it; return True if the stop sentinel was in it."""
        engine = self._engine
        events: list[Event] = []
        answers: list[tuple[_Request, Any, BaseException | None]] = []
        stop = False
        for request in batch:
            if request is _STOP:
                stop = True
                continue
            start = len(events)
            try:
                if request.reader is not None:
                    answers.append((request, request.reader(engine), None))
                    continue
                hook = request.after_row
                if hook is None:
                    for row in request.rows:
                        engine.apply_batch(row, events)
                else:
                    for index, row in enumerate(request.rows):
                        row_start = len(events)
                        engine.apply_batch(row, events)
                        hook(index, events[row_start:], engine)
                answers.append((request, events[start:], None))
            except Exception:  # one bad request must not stop the symbol
                self.failures += 1
                error_id = uuid.uuid4().hex[:12]
                log.exception("actor %s failed on request (error id %s): %r",
                              self.symbol, error_id, request.reader or request.rows)
                answers.append((request, None, InternalError(error_id)))
        self.batches += 1
        if events:
            self.counters = engine.counters()
            for listener in self._listeners:
                try:
                    listener(self.symbol, events, engine)
                except Exception:
                    log.exception("listener %r failed on a batch of %s", listener, self.symbol)
        if self._expire_on_clock and self._accepting:
            self._arm_expiry()
        observe = self._observe_latency
        now = time.perf_counter()
        for request, result, error in answers:
            if observe is not None and request.reader is None:
                observe(self.symbol, now - request.enqueued)
            self._answer(request, result, error)
        return stop
