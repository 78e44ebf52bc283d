"""Backtests: replayed market data and a strategy through the same actor queue.

Assumptions (also in the README):

* **Queue position is exact on order-level data.** A strategy's limit order joins the real
  FIFO queue of its price level behind the historical orders already there.
* **Price, then time priority.** A historical execution at price P fills the strategy's orders
  priced better than P first (best first, then by time: "through-fills"), then those at P
  ahead of the executed order, up to its size.
* **Market impact** (`IMPACTS`): `none` keeps the replayed book the data's (the executed order
  loses what the data says; the strategy's fills come from the aggressor's flow), `queue`
  takes them out of the executed historical order (which keeps the difference).
* **The strategy's view excludes its own orders** (`BookView` is the market's).
* **A historical add that crosses a resting strategy order trades with it.** Without
  impact it keeps the data's size: grown back when something is left, else kept beside the
  book as a shadow order (in the view, changed by the data) until no strategy order
  crosses it, when it goes back into the book at the back of its level.
* **Strategy orders that cross take historical liquidity**, at the resting orders' prices.
  Later historical events on liquidity the strategy already took are clipped (cut to what is
  left, or dropped) and counted in `translation.clipped`; the run never stops for them.
* **Latency** (each >= 0, in data time): every strategy action reaches the book `latency_us`
  after the strategy decided it, in the order decided; the strategy learns of a fill
  (`on_fill`, its `position`) `response_latency_us` after it happened; it sees market data
  `feed_latency_us` after the row's receive time where the format records one (Databento
  `ts_recv`), else after the row's time.
* Historical orders never self-trade-prevent (one account, `market`); the strategy trades as
  its own account. Prints off the visible book (hidden executions, crosses) count towards the
  market VWAP but cannot fill strategy orders.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import os
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, Literal

import msgspec

from lobgw.actors import BookReader, Exchange, SymbolActor
from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ExpireOrders,
    SubmitOrder,
)
from lobgw.book.events import Event, OrderRejected, TradeExecuted
from lobgw.book.instrument import FeeSchedule, InstrumentSpec
from lobgw.book.types import OrderType, SelfTradePrevention, Side, TimeInForce
from lobgw.orders import ExecutionKind, Fill, OrderState, OrderTracker
from lobgw.sim.backtest.latency import LatencyTable
from lobgw.sim.backtest.levels import Level, LevelReset, QueueModel
from lobgw.sim.backtest.results import (
    NS,
    BacktestResult,
    fees_paid,
    fill_reports,
    iso_time,
    markout,
    money_text,
    money_value_text,
    pnl_series,
    price_text,
    rounded,
)
from lobgw.sim.records import Kind, MarketRecord, PathLike, lobster_epoch_offset, read_records
from lobgw.sim.translate import Translator

STRATEGY_ACCOUNT = "strategy"
STRATEGY_ID_BASE = 1 << 60
Impact = Literal["none", "queue"]
IMPACTS: tuple[str, ...] = ("none", "queue")
"""Market-impact models: `none` leaves the replayed book exactly as the data has it (the
strategy's fills come out of the aggressor's flow, hftbacktest's no-impact assumption);
`queue` takes them out of the historical order the execution names (the strategy displaces
it, which can leave size the data later never removes)."""


class BookView(msgspec.Struct, frozen=True, gc=False):
    """What a strategy sees after each market-data row (prices in ticks, sizes in lots)."""

    timestamp: int
    bid: int | None
    bid_size: int
    ask: int | None
    ask_size: int

    @property
    def mid(self) -> float | None:
        """Midpoint in ticks (a float: for analytics, never for matching)."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    @property
    def microprice(self) -> float | None:
        """Size-weighted mid: leans towards the side with less size."""
        if self.bid is None or self.ask is None or not self.bid_size + self.ask_size:
            return None
        return (self.bid * self.ask_size + self.ask * self.bid_size) / (
            self.bid_size + self.ask_size)


class BaseStrategy:
    """Subclass and override `on_market_data` (and maybe `on_fill`, `is_done`).

    Orders go through `place`, `amend` and `cancel`: the same commands any client sends,
    reaching the book after the backtest's latency.
    """

    name = "base"

    def __init__(self) -> None:
        self._backtest: Backtest | None = None
        self.orders = OrderTracker(accounts=(STRATEGY_ACCOUNT,))
        """The strategy's orders, read from the engine's events (pending: decided, not yet
        at the book)."""
        self.position = 0
        self.orders_sent = 0
        self.amends_sent = 0
        self.cancels_sent = 0

    def on_start(self, view: BookView) -> None:
        """Called once with the first view."""

    def on_market_data(self, view: BookView) -> None:
        """Called after every market-data row."""

    @property
    def open_orders(self) -> dict[int, OrderState]:
        """The strategy's orders that the book holds."""
        return self.orders.open

    def on_fill(self, fill: Fill) -> None:
        """Called for each fill of one of this strategy's orders."""

    def on_market_trade(self, timestamp: int, price: int, quantity: int) -> None:
        """Called for every trade of the market (not the strategy's own)."""

    def on_end(self, view: BookView) -> None:
        """Called once after the last row."""

    def is_done(self) -> bool:
        """True once the strategy wants no more market data."""
        return False

    def describe(self) -> dict[str, object]:
        """Strategy-specific results for the report."""
        return {}

    # -- actions ---------------------------------------------------------------------------

    def place(self, side: Side, quantity: int, price: int | None = None,
              time_in_force: TimeInForce = TimeInForce.GTC, post_only: bool = False, *,
              stop_price: int | None = None, display_quantity: int | None = None,
              expire_time: int | None = None) -> int:
        """Send a new order; return its order id. A market order when `price` is None; a
        stop (market, or limit at `price`) with `stop_price`; an iceberg showing
        `display_quantity`; GTD or DAY until `expire_time` (data time: the backtest expires
        it there, deterministically)."""
        backtest = self._require()
        order_id = backtest.next_order_id()
        if stop_price is not None:
            order_type = OrderType.STOP if price is None else OrderType.STOP_LIMIT
        else:
            order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        command = SubmitOrder(order_id, STRATEGY_ACCOUNT, side, quantity, price=price,
                              order_type=order_type, time_in_force=time_in_force,
                              post_only=post_only, stp=SelfTradePrevention.CANCEL_TAKER,
                              timestamp=backtest.now + backtest.entry_latency(),
                              stop_price=stop_price, display_quantity=display_quantity,
                              expire_time=expire_time)
        self.orders.expect(OrderState.submitted(backtest.spec.symbol, command))
        self.orders_sent += 1
        backtest.schedule(command)
        if expire_time is not None:
            backtest.schedule(ExpireOrders(max(expire_time, command.timestamp)))
        return order_id

    def amend(self, order_id: int, quantity: int | None = None, price: int | None = None,
              stop_price: int | None = None) -> None:
        """Change an open order's total quantity and/or price (a waiting stop's stop
        price)."""
        backtest = self._require()
        self.amends_sent += 1
        backtest.schedule(AmendOrder(order_id, quantity=quantity, price=price,
                                     timestamp=backtest.now + backtest.entry_latency(),
                                     stop_price=stop_price))

    def cancel(self, order_id: int) -> None:
        """Cancel an open order."""
        backtest = self._require()
        self.cancels_sent += 1
        backtest.schedule(CancelOrder(order_id, backtest.now + backtest.entry_latency()))

    def cancel_all(self) -> None:
        """Cancel every order in flight or in the book."""
        for order_id in [*self.orders.pending, *self.orders.open]:
            self.cancel(order_id)

    @property
    def now(self) -> int:
        """The current data time (ns)."""
        return self._require().now

    def _require(self) -> Backtest:
        if self._backtest is None:
            raise RuntimeError("the strategy is not attached to a backtest")
        return self._backtest


class Backtest:
    """Runs records and one strategy through a symbol actor; see the module docstring."""

    def __init__(self, actor: SymbolActor, strategy: BaseStrategy, latency_us: int = 0,
                 translator: Translator | None = None, impact: Impact = "none",
                 response_latency_us: int = 0, feed_latency_us: int = 0,
                 latency_table: LatencyTable | None = None,
                 levels: Iterator[list[Level]] | None = None,
                 queue_model: QueueModel | None = None) -> None:
        self.levels = levels
        """Aggregated data: the vendor's levels after each record (the book is reset to them
        at every row and strategy fills follow `queue_model`)."""
        self.reset = LevelReset()
        self.queue = queue_model or QueueModel()
        self.latency_table = latency_table
        """Measured entry and response latencies over time (instead of the constants)."""
        for name, value in (("latency_us", latency_us),
                            ("response_latency_us", response_latency_us),
                            ("feed_latency_us", feed_latency_us)):
            if value < 0:
                raise ValueError(f"{name}: {value} is negative; a latency is at least 0")
        self.response_latency = response_latency_us * 1000
        """From a fill in the book to the strategy learning of it (on_fill, position)."""
        self.feed_latency = feed_latency_us * 1000
        """From a market event to the strategy seeing it, after the data's own receive delay
        where the format records one (Databento `ts_recv`)."""
        self._deliveries: list[tuple[int, int, Callable[[], None]]] = []
        """What the strategy is told later: (when, order, call)."""
        self.position = 0
        """The true position (the strategy's own `position` lags by the response latency)."""
        if impact not in IMPACTS:
            raise ValueError(f"impact: {impact!r} is not one of {', '.join(IMPACTS)}")
        self.impact = impact
        self.through_fills = 0
        """Strategy fills by an execution at a worse price than the strategy's order."""
        self._own: OwnOrders | None = None
        self._captured = BookView(0, None, 0, None, 0)
        """The view `_capture_touch` took of the last row."""
        self._shadows: dict[int, MarketRecord] = {}
        """No impact: historical adds that the strategy's crossing orders took in full, as
        the data has them now (the market still holds them; the book cannot while a strategy
        order crosses them, so they go back into it once none does)."""
        self.actor = actor
        self.spec = actor.spec
        self.strategy = strategy
        strategy._backtest = self
        self.latency = latency_us * 1000
        self.translator = translator or Translator()
        self.now = 0
        self.view: BookView | None = None
        self._order_ids = STRATEGY_ID_BASE
        self._pending: list[tuple[int, int, AnyCommand]] = []
        self._sequence = 0
        self.fills: list[Fill] = []
        self.rejections: dict[str, int] = {}
        self.market_trades: list[tuple[int, int, int]] = []
        """(timestamp, price, quantity) of every historical trade: the market's VWAP."""
        self.mids: list[tuple[int, float]] = []
        self.samples: list[tuple[int, int, int, float | None]] = []
        """(timestamp, position, cash in tick-lots, mid) once per data second and per fill."""
        self.cash = 0
        self._next_sample = 0
        self.first_view: BookView | None = None
        self.started_at: int | None = None

    def entry_latency(self) -> int:
        """Entry latency (ns) for a decision now."""
        if self.latency_table is None:
            return self.latency
        return self.latency_table.at(self.now)[0]

    def response_latency_at(self, time: int) -> int:
        """Response latency (ns) for a fill at `time`."""
        if self.latency_table is None:
            return self.response_latency
        return self.latency_table.at(time)[1]

    def next_order_id(self) -> int:
        """A strategy order id (never collides with historical ids)."""
        self._order_ids += 1
        return self._order_ids

    def schedule(self, command: AnyCommand) -> None:
        """Apply `command` once data time reaches its timestamp (now + latency)."""
        self._sequence += 1
        heapq.heappush(self._pending, (command.timestamp, self._sequence, command))

    async def seed(self, commands: list[AnyCommand]) -> None:
        """Apply seeding commands (an initial book) before the data."""
        if commands:
            self.translator.observe(await (await self.actor.send([commands])))

    async def run(self, records: Iterator[MarketRecord]) -> None:
        """Replay every record, feeding the strategy (at once, or after the feed latency)."""
        pending, deliveries = self._pending, self._deliveries
        for record in records:
            timestamp = self.now = record.timestamp
            if (pending and pending[0][0] <= timestamp) or (
                    deliveries and deliveries[0][0] <= timestamp):
                await self._catch_up(timestamp)
            seen = (timestamp if record.received is None and not self.feed_latency
                    else self._seen_at(record))
            if record.kind is Kind.PRINT and record.price is not None:
                self._market_trade(record.timestamp, record.price, record.quantity, seen)
            if self.levels is not None:
                row = next(self.levels, None)
                if row is None:
                    raise ValueError(f"the book levels end before the messages (message row "
                                     f"{record.line})")
                commands = self._level_commands(record, row, seen)
            else:
                commands = await self._commands(record)
            view = await self._apply_row(commands, record)
            self.view = view
            if self.first_view is None:
                if view.bid is None or view.ask is None:
                    continue
                self.first_view = view
                self.started_at = view.timestamp
            self._tell(seen, self._show, view)
            self._sample(view)
        if self.view is not None:
            entry, response = (self.latency_table.most if self.latency_table is not None
                               else (self.latency, self.response_latency))
            horizon = max([self.now + entry + response + self.feed_latency]
                          + [when for when, _, _ in self._deliveries])  # all it was to see
            await self._catch_up(horizon)
            self.now = max(self.now, horizon - entry)
            self.strategy.on_end(self.view)
            await self._catch_up(horizon + entry + response + 1)

    def _seen_at(self, record: MarketRecord) -> int:
        """When the strategy sees `record`: its receive time (or its time) plus the feed
        latency."""
        received = record.received if record.received is not None else record.timestamp
        return max(record.timestamp, received) + self.feed_latency

    def _show(self, view: BookView) -> None:
        strategy = self.strategy
        if view is self.first_view:
            strategy.on_start(view)
        if not strategy.is_done():
            strategy.on_market_data(view)

    def _tell(self, when: int, call: Callable[..., None], *args: Any) -> None:
        """Tell the strategy something, `call(*args)`, at data time `when`: at once when that
        is now and nothing is waiting (the usual case: no feed or response latency)."""
        if when <= self.now and not self._deliveries:
            call(*args)
            return
        self._sequence += 1
        later: Callable[[], None] = functools.partial(call, *args)
        heapq.heappush(self._deliveries, (when, self._sequence, later))

    async def _catch_up(self, until: int) -> None:
        """Everything due by `until`, in time order: the strategy's commands reach the book,
        and it is told what it sees (each at its own time)."""
        pending, deliveries = self._pending, self._deliveries
        while True:
            command_at = pending[0][0] if pending and pending[0][0] <= until else None
            tell_at = deliveries[0][0] if deliveries and deliveries[0][0] <= until else None
            if command_at is None and tell_at is None:
                return
            if tell_at is not None and (command_at is None or tell_at < command_at):
                when, _, call = heapq.heappop(deliveries)
                saved, self.now = self.now, when
                call()
                self.now = max(saved, when)
            else:
                _, _, command = heapq.heappop(pending)
                self._handle(await (await self.actor.send([[command]])))
                if self._shadows:
                    restored = self._restorable()
                    if restored:
                        self._handle(await (await self.actor.send([restored])))

    async def _commands(self, record: MarketRecord) -> list[AnyCommand]:
        """The record's commands, with the strategy's orders that an execution reaches
        before the historical order filled first: price priority (orders better than the
        execution's price, best first, then by time), then time priority at its price."""
        side, price = record.side, record.price
        if record.kind is not Kind.EXECUTE or side is None or price is None:
            return self._translate(record)
        sign = 1 if side is Side.BUY else -1
        prices = sorted({order.price for order in self.strategy.open_orders.values()
                         if order.side is side and order.price is not None
                         and sign * (order.price - price) >= 0}, key=lambda p: -sign * p)
        if not prices:
            return self._translate(record)
        queues = await self.actor.query(
            lambda book: [(p, book.level_orders(side, p)) for p in prices])
        ahead: list[tuple[int, int, bool]] = []  # (order id, remaining, through the price)
        for level_price, queue in queues:
            level: list[tuple[int, int, bool]] = []
            for view in queue:
                if level_price == price and view.order_id == record.order_id:
                    break
                if view.order_id >= STRATEGY_ID_BASE:
                    level.append((view.order_id, view.remaining, level_price != price))
            else:
                if level_price == price:
                    level = []  # the executed order is not there: nothing is behind it
            ahead += level
        left = record.quantity
        commands: list[AnyCommand] = []
        for order_id, remaining, through in ahead:
            if not left:
                break
            fill = min(remaining, left)
            commands.append(ExecuteOrder(order_id, fill, record.timestamp))
            if through:
                self.through_fills += 1
            left -= fill
        if self.impact == "queue" and left != record.quantity:
            # the strategy displaced historical liquidity: the data's order gets what is
            # left, and the market's VWAP still counts the whole execution the data shows
            self._market_trade(record.timestamp, price, record.quantity - left,
                               self._seen_at(record))
            if left:
                commands += self.translator.translate(
                    msgspec.structs.replace(record, quantity=left))
            return commands
        return commands + self._translate(record)  # the data's book, unchanged

    def _translate(self, record: MarketRecord) -> list[AnyCommand]:
        """The record's commands for the book; a record about a shadow order (see
        `_shadows`) changes the shadow instead, as the data says."""
        shadows = self._shadows
        if not shadows:
            return self.translator.translate(record)
        kind = record.kind
        if kind is Kind.CLEAR:
            shadows.clear()
        shadow = shadows.get(record.order_id) if kind is not Kind.ADD else None
        if shadow is None:
            return self.translator.translate(record)
        left, price = shadow.quantity, shadow.price
        if kind is Kind.EXECUTE or kind is Kind.REDUCE:
            taken = min(left, record.quantity)
            if kind is Kind.EXECUTE and price is not None and taken:
                self._market_trade(record.timestamp, price, taken, self._seen_at(record))
            left -= taken
        elif kind is Kind.DELETE:
            left = 0
        elif kind is Kind.MODIFY or kind is Kind.AMEND:
            left = record.quantity or left
            price = record.price if record.price is not None else price
        if left:
            shadows[record.order_id] = msgspec.structs.replace(shadow, quantity=left,
                                                               price=price)
        else:
            del shadows[record.order_id]
        return []

    def _restorable(self) -> list[AnyCommand]:
        """The adds that shadow orders become again now that no strategy order crosses them
        (each at the back of its level: the time it rests from is now)."""
        crossing: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}
        for order in self.strategy.open_orders.values():
            if order.price is not None:
                crossing[order.side].append(order.price)
        best_bid = max(crossing[Side.BUY], default=None)
        best_ask = min(crossing[Side.SELL], default=None)
        commands: list[AnyCommand] = []
        for order_id, shadow in list(self._shadows.items()):
            price = shadow.price
            assert price is not None
            if (best_bid is None or best_bid < price) if shadow.side is Side.SELL else (
                    best_ask is None or best_ask > price):
                del self._shadows[order_id]
                commands += self.translator.translate(
                    msgspec.structs.replace(shadow, timestamp=self.now))
        return commands

    def _with_shadows(self, view: BookView) -> BookView:
        """The market's view with its shadow orders in it."""
        bid, bid_size, ask, ask_size = view.bid, view.bid_size, view.ask, view.ask_size
        for shadow in self._shadows.values():
            price = shadow.price
            assert price is not None
            if shadow.side is Side.BUY:
                if bid is None or price > bid:
                    bid, bid_size = price, shadow.quantity
                elif price == bid:
                    bid_size += shadow.quantity
            elif ask is None or price < ask:
                ask, ask_size = price, shadow.quantity
            elif price == ask:
                ask_size += shadow.quantity
        return BookView(view.timestamp, bid, bid_size, ask, ask_size)

    async def _apply_row(self, commands: list[AnyCommand],
                         record: MarketRecord | None = None) -> BookView:
        own = self._own_orders()
        if not own[Side.BUY] and not own[Side.SELL]:
            # the usual row: the strategy has nothing in the book, the view is the touch
            self._handle(await (await self.actor.send([commands], self._capture_touch)))
            view = self._captured
            return self._with_shadows(view) if self._shadows else view
        captured: list[BookView] = []
        resting: dict[int, int] = {}
        arriving = False  # only a new order can trade with the strategy
        for command in commands:
            if command.__class__ is SubmitOrder:
                arriving = True
                break

        def capture(index: int, events: list[Event], book: BookReader) -> None:
            captured.append(_market_view(book, self.now, own))
            if arriving and self.impact == "none" and self.levels is None:
                for order_id, taken in _taken_by_strategy(events).items():
                    order = book.order(order_id)
                    if order is not None:  # it rests: give it back what the strategy took
                        resting[order_id] = order.quantity + taken
                    elif record is not None and record.order_id == order_id and (
                            record.kind is Kind.ADD):  # taken in full: the market keeps it
                        self._shadows[order_id] = msgspec.structs.replace(record,
                                                                          quantity=taken)

        events = await (await self.actor.send([commands], capture))
        self._handle(events)
        # no market impact: a historical order that traded with a strategy order on arrival
        # keeps the size the data gives it (the strategy's fill came out of the flow); grown
        # back at the back of its level, where it had just arrived
        follow: list[AnyCommand] = [AmendOrder(order_id, quantity=total, timestamp=self.now)
                                    for order_id, total in resting.items()]
        if self._shadows:
            follow += self._restorable()
        if follow:
            return await self._apply_row(follow)
        return self._with_shadows(captured[0]) if self._shadows else captured[0]

    def _capture_touch(self, index: int, events: list[Event], book: BookReader) -> None:
        """The market's view when the strategy has no order in the book: the touch."""
        self._captured = _market_view(book, self.now, self._own_orders())

    def _level_commands(self, record: MarketRecord, row: list[Level], seen: int
                        ) -> list[AnyCommand]:
        """Aggregated data: the strategy's fills from this row's trade (price priority, then
        the queue model), the queue model told of the row's other decreases, and the reset
        of the book to the vendor's levels."""
        commands: list[AnyCommand] = []
        timestamp = record.timestamp
        traded: dict[tuple[Side, int], int] = {}
        side, price = record.side, record.price
        if record.kind is Kind.EXECUTE and side is not None and price is not None:
            self._market_trade(timestamp, price, record.quantity, seen)
            traded[side, price] = record.quantity
            commands += self._queue_fills(side, price, record.quantity, timestamp)
        sizes = {(level_side, level_price): size for level_side, level_price, size in row}
        for order_id, order in self.strategy.open_orders.items():
            if order.price is None:
                continue
            key = (order.side, order.price)
            before = self.reset.size(*key)
            lost = before - sizes.get(key, 0) - traded.get(key, 0)
            if lost > 0:
                self.queue.decrease(order_id, lost, before)
            self.queue.at_most(order_id, sizes.get(key, 0))  # no more ahead than is there
        return commands + self.reset.commands(row, timestamp)

    def _queue_fills(self, side: Side, price: int, quantity: int, timestamp: int
                     ) -> list[AnyCommand]:
        """What a trade of `quantity` at `price` on the resting `side` fills of the strategy's
        orders: better-priced ones first (best, then oldest), up to the trade's size; then
        those at its price, as far as their queue position lets it reach them."""
        sign = 1 if side is Side.BUY else -1
        mine = sorted(((order.price, order_id, order.remaining)
                       for order_id, order in self.strategy.open_orders.items()
                       if order.side is side and order.price is not None
                       and sign * (order.price - price) >= 0),
                      key=lambda item: (-sign * item[0], item[1]))
        commands: list[AnyCommand] = []
        left = quantity
        for order_price, order_id, remaining in mine:
            if order_price != price:
                fill = min(remaining, left)
                if fill:
                    self.through_fills += 1
                left -= fill
            else:
                fill = min(remaining, self.queue.trade(order_id, left))
            if fill:
                commands.append(ExecuteOrder(order_id, fill, timestamp))
        return commands

    def _own_orders(self) -> OwnOrders:
        """The strategy's open order ids by side and price (kept until one of its orders
        changes)."""
        if self._own is not None:
            return self._own
        own: OwnOrders = {Side.BUY: {}, Side.SELL: {}}
        for order_id, order in self.strategy.open_orders.items():
            if order.price is not None:
                own[order.side].setdefault(order.price, []).append(order_id)
        self._own = own
        return own

    def _handle(self, events: list[Event]) -> None:
        self.translator.observe(events)
        self.strategy.orders.apply(self.spec.symbol, events, self._changed)
        for event in events:
            cls = event.__class__
            if cls is TradeExecuted:
                trade: TradeExecuted = event  # type: ignore[assignment]
                taker = trade.taker_order_id
                if trade.maker_order_id < STRATEGY_ID_BASE and (
                        taker is None or taker < STRATEGY_ID_BASE):
                    self._market_trade(trade.timestamp, trade.price, trade.quantity,
                                       trade.timestamp + self.feed_latency)
            elif cls is OrderRejected:
                rejection: OrderRejected = event  # type: ignore[assignment]
                if rejection.order_id >= STRATEGY_ID_BASE:  # a new order or a change of one
                    reason = rejection.reason.value
                    self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def _changed(self, kind: ExecutionKind, order: OrderState, event: Event,
                 fill: Fill | None) -> None:
        """The strategy's order tracker saw a change: account for fills (and, on aggregated
        data, keep the queue model's positions)."""
        self._own = None
        if self.levels is not None:
            self._requeue(kind, order, fill)
        if fill is None:
            return
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        self.position += signed
        self.cash -= signed * fill.price
        self.fills.append(fill)
        self._tell(fill.timestamp + self.response_latency_at(fill.timestamp),
                   self._report_fill, fill, signed)
        # the PnL point of a fill is stamped at the fill, with the last market mid
        mid = self.view.mid if self.view is not None else None
        self.samples.append((fill.timestamp, self.position, self.cash, mid))

    def _requeue(self, kind: ExecutionKind, order: OrderState, fill: Fill | None) -> None:
        if kind in (ExecutionKind.ACCEPTED, ExecutionKind.AMENDED) and order.price is not None:
            ahead = self.reset.size(order.side, order.price) + sum(
                other.remaining for other_id, other in self.strategy.open_orders.items()
                if other_id != order.order_id and other.side is order.side
                and other.price == order.price and other_id in self.queue.ahead)
            self.queue.join(order.order_id, ahead)
        elif kind in (ExecutionKind.CANCELED, ExecutionKind.EXPIRED) or (
                fill is not None and fill.remaining == 0):
            self.queue.leave(order.order_id)

    def _report_fill(self, fill: Fill, signed: int) -> None:
        self.strategy.position += signed
        self.strategy.on_fill(fill)

    def _market_trade(self, timestamp: int, price: int, quantity: int,
                      seen: int | None = None) -> None:
        self.market_trades.append((timestamp, price, quantity))
        self._tell(timestamp if seen is None else seen, self.strategy.on_market_trade,
                   timestamp, price, quantity)

    def _sample(self, view: BookView) -> None:
        mid = view.mid
        if mid is not None:
            self.mids.append((view.timestamp, mid))
        if view.timestamp >= self._next_sample:
            self.samples.append((view.timestamp, self.position, self.cash, mid))
            self._next_sample = view.timestamp + NS


OwnOrders = dict[Side, dict[int, list[int]]]
"""The strategy's open order ids by side and price (as its tracker last saw them: within a
batch some may have filled since, never more may have come)."""


def _taken_by_strategy(events: list[Event]) -> dict[int, int]:
    """Historical orders that traded as takers against the strategy's resting orders, and
    how much."""
    taken: dict[int, int] = {}
    for event in events:
        if isinstance(event, TradeExecuted):
            taker = event.taker_order_id
            if taker is not None and taker < STRATEGY_ID_BASE <= event.maker_order_id:
                taken[taker] = taken.get(taker, 0) + event.quantity
    return taken


def _market_view(book: BookReader, now: int, own: OwnOrders) -> BookView:
    """The market's best bid and ask without the strategy's own orders."""
    bid_best, ask_best = book.best_bid(), book.best_ask()
    mine = own[Side.BUY]
    if bid_best is None or bid_best[0] not in mine:  # the usual case: not at the touch
        bid, bid_size = (None, 0) if bid_best is None else bid_best
    else:
        bid, bid_size = _market_best(book, Side.BUY, mine)
    mine = own[Side.SELL]
    if ask_best is None or ask_best[0] not in mine:
        ask, ask_size = (None, 0) if ask_best is None else ask_best
    else:
        ask, ask_size = _market_best(book, Side.SELL, mine)
    return BookView(now, bid, bid_size, ask, ask_size)


def _market_best(book: BookReader, side: Side, own: dict[int, list[int]]
                 ) -> tuple[int | None, int]:
    best = book.best_bid() if side is Side.BUY else book.best_ask()
    if best is None:
        return None, 0
    if best[0] not in own:  # the usual case: the strategy is not at the touch
        return best[0], best[1]
    mine = _own_size(book, own[best[0]])
    if best[1] > mine:  # the strategy shares the touch
        return best[0], best[1] - mine
    # the strategy alone at the touch: the market's best is within one level more than the
    # strategy occupies
    for price, size in book.side_depth(side, len(own) + 1):
        mine = _own_size(book, own.get(price, ()))
        if size > mine:
            return price, size - mine
    return None, 0


def _own_size(book: BookReader, order_ids: Iterable[int]) -> int:
    mine = 0
    for order_id in order_ids:
        order = book.order(order_id)
        mine += order.remaining if order is not None else 0
    return mine


# -- results ----------------------------------------------------------------------------------

def build_result(backtest: Backtest, strategy_name: str, parameters: dict[str, str],
                 target: int | None, side: Side | None,
                 fees: FeeSchedule | None = None, epoch_offset: int = 0) -> BacktestResult:
    """Compute the report from a finished backtest (`fees` charged on every fill; data time
    + `epoch_offset` is ns since the epoch)."""
    spec = backtest.spec
    tick, lot = spec.tick_size, spec.lot_size
    fills = backtest.fills
    filled = sum(f.quantity for f in fills)
    notional = sum(f.quantity * f.price for f in fills)
    average = Decimal(notional) / filled if filled else None
    arrival = backtest.first_view.mid if backtest.first_view else None
    start = getattr(backtest.strategy, "start", backtest.started_at)
    end = getattr(backtest.strategy, "end", backtest.now)
    end = min(end, backtest.now) if start is not None else None
    trades = [(ts, p, q) for ts, p, q in backtest.market_trades
              if start is not None and start <= ts <= (end or ts)]
    volume = sum(q for _, _, q in trades)
    vwap = Decimal(sum(p * q for _, p, q in trades)) / volume if volume else None
    own = [(f.price, f.quantity) for f in fills
           if start is not None and start <= f.timestamp <= (end or f.timestamp)]
    volume_with = volume + sum(q for _, q in own)
    vwap_with = (Decimal(sum(p * q for _, p, q in trades) + sum(p * q for p, q in own))
                 / volume_with if volume_with else None)
    sign = 1 if side is Side.BUY else -1 if side is Side.SELL else None
    shortfall = slippage = None
    if sign is not None and average is not None and arrival:
        shortfall = float(sign * (average - Decimal(arrival)) / Decimal(arrival) * 10_000)
    if sign is not None and average is not None and vwap:
        slippage = float(sign * (average - vwap) / vwap * 10_000)
    points, realized, drawdown = pnl_series(backtest.samples, backtest.fills, spec,
                                            epoch_offset)
    final_mid = next((mid for *_, mid in reversed(backtest.samples) if mid is not None), None)
    position = backtest.position
    mark = (backtest.cash + position * final_mid) if final_mid is not None else backtest.cash
    paid = fees_paid(fills, spec, fees)
    realized_text = money_value_text(realized, tick * lot)
    mark_text = money_value_text(mark, tick * lot)
    places = Decimal("0.0001")
    return BacktestResult(
        strategy=strategy_name, symbol=spec.symbol, parameters=parameters,
        latency_us=backtest.latency // 1000,
        response_latency_us=backtest.response_latency // 1000,
        feed_latency_us=backtest.feed_latency // 1000,
        start=None if start is None else start + epoch_offset,
        end=None if end is None else end + epoch_offset,
        start_time=None if start is None else iso_time(start + epoch_offset),
        end_time=None if end is None else iso_time(end + epoch_offset), fills=len(fills),
        filled_quantity=money_text(filled, lot), average_price=price_text(average, tick),
        arrival_price=price_text(Decimal(arrival) if arrival is not None else None, tick),
        implementation_shortfall_bps=rounded(shortfall), market_vwap=price_text(vwap, tick),
        market_vwap_with_strategy=price_text(vwap_with, tick),
        slippage_vs_vwap_bps=rounded(slippage), market_impact=backtest.impact,
        through_fills=backtest.through_fills,
        fill_ratio=rounded(filled / target if target else None, 6),
        orders_sent=backtest.strategy.orders_sent, amends_sent=backtest.strategy.amends_sent,
        cancels_sent=backtest.strategy.cancels_sent, rejections=dict(backtest.rejections),
        final_position=money_text(position, lot),
        realized_pnl=realized_text, mark_to_mid_pnl=mark_text,
        fees_paid=format(paid.quantize(places), "f"),
        net_realized_pnl=format((Decimal(realized_text) - paid).quantize(places), "f"),
        net_mark_to_mid_pnl=format((Decimal(mark_text) - paid).quantize(places), "f"),
        fee_schedule=fees,
        max_drawdown=money_value_text(drawdown, tick * lot),
        markouts_bps={f"{h}s": rounded(markout(backtest.mids, backtest.fills, h))
                      for h in (1, 10, 60)},
        markouts_per_share_bps={f"{h}s": rounded(markout(backtest.mids, backtest.fills, h,
                                                         per_share=True))
                                for h in (1, 10, 60)},
        pnl=points, fill_list=fill_reports(fills, spec, epoch_offset),
        translation=backtest.translator.stats,
        details=backtest.strategy.describe())


async def run_backtest(records: Iterable[MarketRecord], spec: InstrumentSpec,
                       strategy: BaseStrategy, *, latency_us: int = 0,
                       seed_levels: list[tuple[Side, int, int]] | None = None,
                       strategy_name: str | None = None,
                       parameters: dict[str, str] | None = None,
                       target: int | None = None, side: Side | None = None,
                       translator: Translator | None = None,
                       impact: Impact = "none",
                       fees: FeeSchedule | None = None, response_latency_us: int = 0,
                       feed_latency_us: int = 0,
                       latency_table: LatencyTable | None = None,
                       epoch_offset: int = 0,
                       levels: Iterable[list[Level]] | None = None,
                       queue_model: QueueModel | None = None) -> BacktestResult:
    """Run a backtest on an in-process exchange with one symbol; return its result.

    `translator` defaults to LOBSTER's and Databento's (see `Translator.for_format`);
    `impact` is the market-impact model (`IMPACTS`)."""
    exchange = Exchange([spec])
    exchange.start()
    try:
        backtest = Backtest(exchange.actor(spec.symbol), strategy, latency_us, translator,
                            impact, response_latency_us, feed_latency_us, latency_table,
                            None if levels is None else iter(levels), queue_model)
        iterator = iter(records)
        if seed_levels:
            first = next(iterator)
            await backtest.seed(backtest.translator.seed(seed_levels, first.timestamp))
        await backtest.run(iterator)
    finally:
        await exchange.stop()
    return build_result(backtest, strategy_name or strategy.name, parameters or {}, target,
                        side, fees, epoch_offset)


def epoch_offset(format: str, path: PathLike) -> int:
    """What to add to the format's timestamps for ns since the epoch: LOBSTER counts from
    midnight (New York) of the date in the file name; the others count from the epoch."""
    if format == "lobster":
        return lobster_epoch_offset(path) or 0
    return 0


class BacktestEngine:
    """The notebook API: configure once, `run()` to get a BacktestResult.

    `data` is a file (str or path, read with `format`'s reader) or records already read.
    """

    def __init__(self, data: Iterable[MarketRecord] | PathLike, spec: InstrumentSpec,
                 strategy: BaseStrategy, latency_us: int = 0,
                 seed_levels: list[tuple[Side, int, int]] | None = None,
                 format: str = "lobster", impact: Impact = "none",
                 fees: FeeSchedule | None = None, response_latency_us: int = 0,
                 feed_latency_us: int = 0, latency_table: LatencyTable | None = None) -> None:
        self.epoch_offset = 0
        if isinstance(data, str | os.PathLike):
            self.epoch_offset = epoch_offset(format, data)
            data = read_records(format, data, spec)
        self.records = data
        self.spec = spec
        self.strategy = strategy
        self.latency_us = latency_us
        self.seed_levels = seed_levels
        self.translator = Translator.for_format(format)
        self.impact = impact
        self.fees = fees
        self.response_latency_us = response_latency_us
        self.feed_latency_us = feed_latency_us
        self.latency_table = latency_table

    def run(self) -> BacktestResult:
        """Run to completion (starts its own event loop)."""
        target = getattr(self.strategy, "quantity", None)
        side = getattr(self.strategy, "side", None)
        return asyncio.run(run_backtest(
            self.records, self.spec, self.strategy, latency_us=self.latency_us,
            seed_levels=self.seed_levels, target=target, side=side,
            translator=self.translator, impact=self.impact, fees=self.fees,
            response_latency_us=self.response_latency_us,
            feed_latency_us=self.feed_latency_us, latency_table=self.latency_table,
            epoch_offset=self.epoch_offset))
