"""Replay market data through a symbol actor's queue (or into a running gateway).

    records (reader) -> Translator -> commands -> actor queue -> engine -> events

Rows are sent in chunks, a few chunks in flight at once, so the actor drains big batches.
`--book-out` asks the actor to call back after every row (inside its turn) and writes the top
levels in LOBSTER's orderbook layout, one output row per input row. `--speed X` paces rows by
their data time divided by X. A bad row stops the replay (`--on-error stop`, with file, line
and reason) or is counted and skipped (`--on-error skip`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from lobgw.actors import Exchange, SymbolActor
from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import Event
from lobgw.book.instrument import InstrumentSpec, SpecFormat
from lobgw.book.types import Side, TimeInForce
from lobgw.client import LobgwClient
from lobgw.errors import BadRowError
from lobgw.sim.bookout import BookWriter
from lobgw.sim.records import (
    Kind,
    MarketRecord,
    PathLike,
    lobster_factors,
    read_lobster_book_row,
    read_records,
)
from lobgw.sim.translate import TranslationStats, Translator

CHUNK_COMMANDS = 2048
IN_FLIGHT = 4
OnError = Literal["stop", "skip"]


class Pacer:
    """Holds a replay to data time divided by `speed`, counted from its first row."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.first_ts: int | None = None
        self.started = 0.0

    def delay(self, timestamp: int) -> float:
        """Seconds to wait before the row with data time `timestamp` is due (0: go now)."""
        if self.first_ts is None:
            self.first_ts, self.started = timestamp, time.perf_counter()
        due = self.started + (timestamp - self.first_ts) / 1e9 / self.speed
        delay = due - time.perf_counter()
        return delay if delay > 0.001 else 0.0


class ReplaySummary(msgspec.Struct):
    """What a replay did."""

    rows: int = 0
    commands: int = 0
    events: int = 0
    trades: int = 0
    skipped_rows: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    translation: TranslationStats = msgspec.field(default_factory=TranslationStats)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Input rows per wall-clock second."""
        return self.rows / self.seconds if self.seconds else 0.0

    def table(self) -> str:
        """A human-readable summary."""
        t = self.translation
        lines = [
            f"rows             {self.rows:>12,}   ({self.rows_per_second:,.0f} rows/s, "
            f"{self.seconds:.2f} s)",
            f"commands         {self.commands:>12,}",
            f"events           {self.events:>12,}",
            f"trades           {self.trades:>12,}   (+ {t.prints:,} prints off the visible "
            "book)",
            f"unknown orders   {t.unknown_orders:>12,}   (skipped; {t.seeded_hits:,} taken "
            "from the seeded book)",
            f"clipped          {t.clipped:>12,}",
            f"stale removed    {t.stale_removed:>12,}   (historical orders a historical add "
            "crossed)",
            f"halts            {t.halts:>12,}",
            f"clears           {t.clears:>12,}",
            f"skipped rows     {self.skipped_rows:>12,}",
        ]
        lines += [f"  error {kind:<20} {count:,}" for kind, count in sorted(self.errors.items())]
        return "\n".join(lines)


class Progress:
    """A one-line progress display on stderr (only when it is a terminal)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.perf_counter()
        self.shown = 0.0

    def update(self, rows: int) -> None:
        """Refresh at most twice a second."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.shown >= 0.5:
            self.shown = now
            rate = rows / max(now - self.started, 1e-9)
            sys.stderr.write(f"\r{rows:>12,} rows  {rate:>10,.0f} rows/s")
            sys.stderr.flush()

    def done(self) -> None:
        """Clear the line."""
        if self.enabled:
            sys.stderr.write("\r" + " " * 40 + "\r")


class Replayer:
    """Drives records through a translator into an actor."""

    def __init__(self, actor: SymbolActor, translator: Translator, *,
                 on_error: OnError = "stop", book: BookWriter | None = None,
                 speed: float | None = None, progress: Progress | None = None) -> None:
        self.actor = actor
        self.translator = translator
        self.on_error = on_error
        self.book = book
        self.speed = speed
        self.progress = progress or Progress(False)
        self.summary = ReplaySummary(translation=translator.stats)
        self._in_flight: collections.deque[asyncio.Future[list[Event]]] = collections.deque()

    async def seed(self, commands: list[AnyCommand]) -> None:
        """Apply seeding commands first (an initial book)."""
        if commands:
            self._count(await (await self.actor.send([commands])))

    async def run(self, records: Iterator[MarketRecord]) -> ReplaySummary:
        """Replay every record; return the summary.

        Without a book-out the commands of many rows go to the actor as one flat list; with
        one, rows stay separate so the actor can call back after each.
        """
        started = time.perf_counter()
        if self.book is None and not self.speed:
            await self._run_flat(records)
        else:
            await self._run_rows(records)
        self.progress.done()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    async def _run_flat(self, records: Iterator[MarketRecord]) -> None:
        """The common case, no book-out and no pacing: as little work per row as possible."""
        summary = self.summary
        translate_into = self.translator.translate_into
        invalid = Kind.INVALID
        chunk = CHUNK_COMMANDS
        flat: list[AnyCommand] = []
        count = 0
        try:
            for count, record in enumerate(records, 1):
                if record.kind is invalid:
                    self._skip_invalid(record)
                    continue
                try:
                    translate_into(record, flat)
                except KeyError as error:
                    self._unknown_order(record, error)
                if len(flat) >= chunk:
                    await self._send([], flat)
                    flat = []
                    self.progress.update(summary.rows + count)
        except BadRowError:
            summary.rows += count
            await self._drain([], flat)
            raise
        summary.rows += count
        await self._drain([], flat)

    async def _run_rows(self, records: Iterator[MarketRecord]) -> None:
        """Row by row, for a book-out after each row, and paced to `speed`."""
        summary = self.summary
        by_row = self.book is not None
        rows: list[list[AnyCommand]] = []
        flat: list[AnyCommand] = []
        pending = 0  # commands (or rows) waiting to be sent
        pacer = Pacer(self.speed) if self.speed else None
        translate = self.translator.translate
        translate_into = self.translator.translate_into
        invalid = Kind.INVALID
        count = 0
        try:
            for record in records:
                count += 1
                if record.kind is invalid:
                    self._skip_invalid(record)
                    if by_row:
                        rows.append([])
                    continue
                if pacer is not None and (delay := pacer.delay(record.timestamp)):
                    await self._send(rows, flat)
                    rows, flat, pending = [], [], 0
                    await asyncio.sleep(delay)
                try:
                    if by_row:
                        row = translate(record)
                        rows.append(row)
                        pending += len(row) + 1
                    else:
                        translate_into(record, flat)
                        pending += 1
                except KeyError as error:
                    self._unknown_order(record, error)
                    if by_row:
                        rows.append([])
                if pending >= CHUNK_COMMANDS:
                    await self._send(rows, flat)
                    rows, flat, pending = [], [], 0
                    self.progress.update(summary.rows + count)
        except BadRowError:
            summary.rows += count
            await self._drain(rows, flat)
            raise
        summary.rows += count
        await self._drain(rows, flat)

    def _skip_invalid(self, record: MarketRecord) -> None:
        """Count a row the reader could not read (with --on-error skip)."""
        kind = (record.error or "invalid").split(":", 1)[0]
        self.summary.skipped_rows += 1
        self.summary.errors[kind] = self.summary.errors.get(kind, 0) + 1

    def _unknown_order(self, record: MarketRecord, error: KeyError) -> None:
        """csv: a cancel or amend of an order never added: a bad row, or a skipped one."""
        if self.on_error == "stop":
            raise BadRowError(Path("input"), record.line,
                              f"unknown order: {error.args[0]}") from None
        self.summary.skipped_rows += 1
        self.summary.errors["unknown order"] = self.summary.errors.get("unknown order", 0) + 1

    async def _drain(self, rows: list[list[AnyCommand]], flat: list[AnyCommand]) -> None:
        await self._send(rows, flat)
        while self._in_flight:
            self._count(await self._in_flight.popleft())
        if self.book is not None:
            self.book.flush()

    async def _send(self, rows: list[list[AnyCommand]], flat: list[AnyCommand]) -> None:
        if not rows and not flat:
            return
        while len(self._in_flight) >= IN_FLIGHT:
            self._count(await self._in_flight.popleft())
        if self.book is not None:
            future = await self.actor.send(rows, self.book.after_row)
        else:
            future = await self.actor.send([flat])
        self.summary.commands += sum(len(row) for row in rows) + len(flat)
        self._in_flight.append(future)

    def _count(self, events: list[Event]) -> None:
        self.summary.events += len(events)
        self.summary.trades += self.translator.observe(events)
        if self.book is not None:
            self.book.flush()


class GatewayReplayer:
    """Replays commands into a running gateway over its WebSocket API (`--into URL`).

    Historical orders become limit orders of the authenticated account with client order ids
    `r<id>` and the translator's self-trade prevention (cancel_maker for LOBSTER and Databento,
    so stale orders of the replay go rather than trade; off for csv); deletes and partial
    cancels become cancels and amends; a visible execution becomes an IOC order against that
    price level (the gateway's API has no "execute that order"; with FIFO at the level it takes
    the oldest order there, which is the executed one whenever the data's executions come from
    the front of the queue).
    """

    def __init__(self, client: LobgwClient, spec: InstrumentSpec, window: int = 64) -> None:
        self.client = client
        self.spec = spec
        self.fmt = SpecFormat(spec)
        self.window = window
        self.totals: dict[int, int] = {}
        """The total quantity this replayer last asked for, per historical order: the API's
        amend takes a new total, a partial cancel in the data says how much less."""
        self.pending: collections.deque[asyncio.Future[object]] = collections.deque()
        self.refused = 0

    async def send(self, command: AnyCommand) -> None:
        """Send one engine command as the equivalent API request."""
        message = self._message(command)
        if message is None:
            return
        while len(self.pending) >= self.window:
            await self._settle()
        self.pending.append(self.client.send_nowait(message))

    async def close(self) -> None:
        """Wait for every reply."""
        while self.pending:
            await self._settle()

    async def _settle(self) -> None:
        try:
            await self.pending.popleft()
        except Exception:
            self.refused += 1

    def _message(self, command: AnyCommand) -> dict[str, object] | None:
        symbol = self.spec.symbol
        if isinstance(command, SubmitOrder):
            self.totals[command.order_id] = command.quantity
            order: dict[str, object] = {
                "symbol": symbol, "side": command.side.value,
                "quantity": self.fmt.quantity(command.quantity), "stp": command.stp.value,
                "type": command.order_type.value,
                "time_in_force": command.time_in_force.value,
                "client_order_id": f"r{command.order_id}"}
            if command.price is not None:
                order["price"] = self.fmt.price(command.price)
            if command.stop_price is not None:
                order["stop_price"] = self.fmt.price(command.stop_price)
            if command.display_quantity is not None:
                order["display_quantity"] = self.fmt.quantity(command.display_quantity)
            if command.time_in_force is TimeInForce.GTD:  # (DAY: the gateway's session)
                order["expire_time"] = command.expire_time
            return {"op": "place", "order": order}
        if isinstance(command, CancelOrder):
            self.totals.pop(command.order_id, None)
            return {"op": "cancel", "client_order_id": f"r{command.order_id}"}
        if isinstance(command, ReduceOrder):
            total = self.totals.get(command.order_id, command.quantity) - command.quantity
            self.totals[command.order_id] = max(total, 0)
            return {"op": "amend", "client_order_id": f"r{command.order_id}",
                    "quantity": self.fmt.quantity(max(total, 0) or 1)}
        if isinstance(command, AmendOrder):
            message: dict[str, object] = {"op": "amend",
                                          "client_order_id": f"r{command.order_id}"}
            if command.quantity is not None:
                self.totals[command.order_id] = command.quantity
                message["quantity"] = self.fmt.quantity(command.quantity)
            if command.price is not None:
                message["price"] = self.fmt.price(command.price)
            return message
        if isinstance(command, ExecuteOrder):
            return None  # resolved by execute_at (it needs the order's side and price)
        return None  # ExpireOrders: the gateway expires on its own clock

    async def execute_at(self, side: Side, price: int, quantity: int) -> None:
        """An IOC order that trades `quantity` against the resting `side` at `price`."""
        while len(self.pending) >= self.window:
            await self._settle()
        self.pending.append(self.client.send_nowait({"op": "place", "order": {
            "symbol": self.spec.symbol, "side": ("SELL" if side is Side.BUY else "BUY"),
            "quantity": self.fmt.quantity(quantity), "price": self.fmt.price(price),
            "time_in_force": "IOC", "stp": "NONE"}}))


@contextlib.contextmanager
def batch_gc(young: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a batch job runs, then restore it.

    A replay allocates millions of short-lived, acyclic objects (records, commands, events)
    that reference counting frees; with the default threshold the collector still scans the
    young generation every 700 allocations, about 5% of a replay's time. What exists before
    the job is collected once, then frozen out of the full passes.
    """
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def replay_file(path: PathLike, fmt: str, spec: InstrumentSpec, *,
                      initial_book: PathLike | None = None, book_out: PathLike | None = None,
                      levels: int = 5, speed: float | None = None,
                      on_error: str = "stop", progress: bool | None = None) -> ReplaySummary:
    """Replay a file through an in-process actor; return the summary."""
    with batch_gc():
        return await _replay_file(path, fmt, spec, initial_book, book_out, levels, speed,
                                  on_error, progress)


async def _replay_file(path: PathLike, fmt: str, spec: InstrumentSpec,
                       initial_book: PathLike | None, book_out: PathLike | None, levels: int,
                       speed: float | None, on_error: str,
                       progress: bool | None) -> ReplaySummary:
    exchange = Exchange([spec])
    exchange.start()
    actor = exchange.actor(spec.symbol)
    translator = Translator.for_format(fmt)
    with contextlib.ExitStack() as files:
        handle = files.enter_context(Path(book_out).open("w")) if book_out is not None else None
        try:
            units = lobster_factors(spec) if fmt == "lobster" else None
            writer = (BookWriter(handle, levels, spec, units) if handle is not None else None)
            replayer = Replayer(actor, translator, on_error=on_error,  # type: ignore[arg-type]
                                book=writer, speed=speed, progress=Progress(progress))
            records = read_records(fmt, path, spec, skip_bad=on_error == "skip")
            if initial_book is not None:
                first = next(records)  # the orderbook row is the state after the first message
                await replayer.seed(translator.seed(
                    read_lobster_book_row(initial_book, 1, spec), first.timestamp))
                replayer.summary.rows += 1
                if writer is not None:
                    await actor.query(lambda book: writer.after_row(0, [], book))
                    writer.flush()
            return await replayer.run(records)
        finally:
            await exchange.stop()


async def replay_into(url: str, api_key: str, path: PathLike, fmt: str,
                      spec: InstrumentSpec, speed: float | None) -> ReplaySummary:
    """Replay a file into a running gateway over its WebSocket API."""
    client = await LobgwClient.connect(url, api_key=api_key)
    sink = GatewayReplayer(client, spec)
    translator = Translator.for_format(fmt)
    summary = ReplaySummary(translation=translator.stats)
    started = time.perf_counter()
    pacer = Pacer(speed) if speed else None
    try:
        for record in read_records(fmt, path, spec):
            summary.rows += 1
            if pacer is not None and (delay := pacer.delay(record.timestamp)):
                await asyncio.sleep(delay)
            for command in translator.translate(record):
                summary.commands += 1
                if isinstance(command, ExecuteOrder) and record.side is not None \
                        and record.price is not None:
                    await sink.execute_at(record.side, record.price, command.quantity)
                else:
                    await sink.send(command)
        await sink.close()
    finally:
        await client.close()
    summary.seconds = time.perf_counter() - started
    summary.errors = {"refused by the gateway": sink.refused} if sink.refused else {}
    return summary
