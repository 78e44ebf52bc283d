"""A symbol actor: one asyncio task that owns one Engine and one bounded command queue.

Nothing else touches the engine, so nothing needs a lock. Callers put requests on the queue
and get a future back; the task takes everything queued (up to `batch_size`), applies it,
publishes the batch's events to listeners synchronously (listeners must not block), then
answers each request. A full queue is refused at once with `OverloadedError`; an exception in
one request is logged with its context and answered as `InternalError`, and the actor goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from lobgw.book.commands import AnyCommand
from lobgw.book.engine import Counters, Engine, OrderView
from lobgw.book.events import Event
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.errors import InternalError, OverloadedError, ShuttingDownError
from lobgw.journal import Journal, JournalUnavailableError

T = TypeVar("T")

log = logging.getLogger("lobgw.actor")


class BookReader(Protocol):
    """The read-only face of an engine that listeners and queries may use."""

    spec: InstrumentSpec

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


Listener = Callable[[str, list[Event], BookReader], None]
"""Called inside the actor after each batch with the symbol, its events and the book."""

LatencyObserver = Callable[[str, float], None]
"""Told each request's seconds from enqueue to its events being published."""

Reply = Callable[[list[Event] | None, BaseException | None], None]
"""Called inside the actor with a request's events (or its error) instead of a future."""

RowHook = Callable[[int, list[Event], BookReader], None]
"""Called inside the actor after each row of a `submit_rows` request, with that row's events."""


class _Request:
    """One queue entry: commands to apply (or a query to run) and where the answer goes."""

    __slots__ = ("after_row", "commands", "enqueued", "future", "query", "recovered", "reply",
                 "rows")

    def __init__(
        self,
        commands: Sequence[AnyCommand],
        future: asyncio.Future[Any] | None,
        query: Callable[[BookReader], Any] | None = None,
        reply: Reply | None = None,
        rows: Sequence[Sequence[AnyCommand]] | None = None,
        after_row: RowHook | None = None,
    ) -> None:
        self.commands = commands
        self.future = future
        self.query = query
        self.reply = reply
        self.rows = rows
        self.after_row = after_row
        self.recovered = False
        """Commands read back from the journal at startup: apply, do not write again."""
        self.enqueued = time.perf_counter()

    def all_commands(self) -> Sequence[AnyCommand]:
        """Every command of the request, rows flattened."""
        if self.rows is not None:
            return [command for row in self.rows for command in row]
        return self.commands


_STOP = _Request((), None)


class SymbolActor:
    """Owns one symbol's engine inside one task; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        queue_size: int = 16_384,
        batch_size: int = 512,
        observe_latency: LatencyObserver | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.journal_available = True
        self.symbol = engine.spec.symbol
        self.batch_size = batch_size
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=queue_size)
        self._listeners: list[Listener] = []
        self._observe_latency = observe_latency
        self._task: asyncio.Task[None] | None = None
        self._accepting = True
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.batches = 0
        self.failures = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the actor's task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"actor:{self.symbol}")

    async def stop(self) -> None:
        """Refuse new requests, let everything already queued finish, then end the task."""
        self._accepting = False
        self._resumed.set()
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

    # -- requests --------------------------------------------------------------------------

    def submit(self, command: AnyCommand) -> asyncio.Future[list[Event]]:
        """Queue one command; the future gets its events. Raise OverloadedError if full."""
        return self._enqueue((command,), None)

    def submit_with_reply(self, command: AnyCommand, reply: Reply) -> None:
        """Queue one command; `reply` is called inside the actor once its events are published.

        Cheaper than a future for callers that answer from a callback anyway (the WebSocket
        path): no future, no extra trip through the event loop. `reply` must not block.
        """
        self._put(_Request((command,), None, None, reply))

    def submit_many(self, commands: Sequence[AnyCommand]) -> asyncio.Future[list[Event]]:
        """Queue commands to be applied together; the future gets all their events."""
        return self._enqueue(commands, None)

    def submit_rows(self, rows: Sequence[Sequence[AnyCommand]],
                    after_row: RowHook) -> asyncio.Future[list[Event]]:
        """Queue rows of commands; `after_row` sees the book after each row (replay book-out).

        Raise OverloadedError if the queue is full.
        """
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._put(_Request((), future, None, None, rows, after_row))
        return future

    def query(self, reader: Callable[[BookReader], T]) -> asyncio.Future[T]:
        """Run `reader` on the book inside the actor, between batches' events and publishing."""
        return self._enqueue((), reader)

    async def send_many(self, commands: Sequence[AnyCommand]) -> list[Event]:
        """Queue commands, waiting for room instead of refusing (in-process producers)."""
        if not self._accepting:
            raise ShuttingDownError(f"{self.symbol} is shutting down")
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(commands, future))
        return await future

    def _enqueue(
        self, commands: Sequence[AnyCommand], query: Callable[[BookReader], Any] | None
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Request(commands, future, query))
        return future

    def _put(self, request: _Request) -> None:
        """Queue a request now, or refuse it: shutting down, or the queue is full."""
        if not self._accepting:
            raise ShuttingDownError(f"{self.symbol} is shutting down")
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
            if journal is not None and (journal.snapshot_due()
                                        or (stop and journal.commands_since_snapshot)):
                await self._snapshot(journal)  # also on a clean stop: a fast next start
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
            if request.query is None and request is not _STOP and not request.recovered:
                groups[-1].append(request)
                if journal.fsync == "always":
                    groups.append([])
        written: set[int] = set()
        for group in groups:
            commands = [command for request in group for command in request.all_commands()]
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
                refused = [r for r in batch if r.query is None and r is not _STOP
                           and not r.recovered and id(r) not in written]
                for request in refused:
                    self._answer(request, None, error)
                return [r for r in batch if r not in refused]
            written.update(id(request) for request in group)
        if not self.journal_available:
            log.warning("%s: the journal is writable again", self.symbol)
            self.journal_available = True
        return batch

    async def _snapshot(self, journal: Journal) -> None:
        snapshot = self.engine.snapshot()
        try:
            await asyncio.to_thread(journal.write_snapshot, snapshot)
        except OSError:
            log.exception("%s: snapshot failed; the journal keeps everything meanwhile",
                          self.symbol)

    async def replay_recovered(self, batches: list[list[AnyCommand]]) -> int:
        """Apply a journal tail after a restart, through the listeners, without re-journaling."""
        events = 0
        for commands in batches:
            future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
            request = _Request(commands, future)
            request.recovered = True
            await self._queue.put(request)
            events += len(await future)
        return events

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
        engine = self.engine
        events: list[Event] = []
        answers: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
        stop = False
        for request in batch:
            if request is _STOP:
                stop = True
                continue
            start = len(events)
            try:
                if request.query is not None:
                    answers.append((request.future, request.query(engine), None))
                    continue
                if request.rows is not None:
                    hook = request.after_row
                    for index, row in enumerate(request.rows):
                        row_start = len(events)
                        engine.apply_batch(row, events)
                        if hook is not None:
                            hook(index, events[row_start:], engine)
                else:
                    engine.apply_batch(request.commands, events)
                answers.append((request.future, events[start:], None))
            except Exception:  # one bad request must not stop the symbol
                self.failures += 1
                error_id = uuid.uuid4().hex[:12]
                log.exception("actor %s failed on request (error id %s): %r",
                              self.symbol, error_id, request.commands or request.query)
                answers.append((request.future, None, InternalError(error_id)))
        self.batches += 1
        if events:
            for listener in self._listeners:
                try:
                    listener(self.symbol, events, engine)
                except Exception:
                    log.exception("listener %r failed on a batch of %s", listener, self.symbol)
        observe = self._observe_latency
        now = time.perf_counter()
        for request, (_, result, error) in zip(
            (r for r in batch if r is not _STOP), answers, strict=True
        ):
            if observe is not None and request.query is None:
                observe(self.symbol, now - request.enqueued)
            self._answer(request, result, error)
        return stop
