"""The engine beside the reference model, driven by random command sequences (hypothesis).

After every command: the same events (so the same trades, rejections and sequence numbers),
the same resting orders in the same queue order, a book that is not crossed, cached level
sizes equal to the sum of their orders, and sequence numbers without gaps.

Three engines take every command: one through `apply`, one through `apply_batch` one command
at a time, and one through `apply_batch` in batches of random length (the inline paths keep
state in locals across a batch). Two instruments: one with a band and quantity limits, one
with none (the inline paths skip the lower bounds then).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lobgw.book import Counters, Engine
from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ExpireOrders,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import OrderAccepted, OrderRejected, TradeExecuted
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, SelfTradePrevention, Side, TimeInForce
from tests.reference import ReferenceBook

SPEC = InstrumentSpec(
    "TEST",
    tick_size=Decimal("0.5"),
    lot_size=Decimal("1"),
    max_quantity=Decimal("12"),
    price_band_low=Decimal("45"),   # 90 ticks
    price_band_high=Decimal("55"),  # 110 ticks
)

accounts = st.sampled_from(["alice", "bob", "carol"])
prices = st.integers(min_value=88, max_value=112)
quantities = st.integers(min_value=1, max_value=14)
sides = st.sampled_from(list(Side))
stps = st.sampled_from(list(SelfTradePrevention))


@st.composite
def submit_fields(draw: st.DrawFn) -> dict[str, object]:
    order_type = draw(st.sampled_from([OrderType.LIMIT] * 6 + [OrderType.MARKET]
                                      + [OrderType.STOP, OrderType.STOP_LIMIT]))
    stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    tif = draw(st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.GTD]
                               + ([] if stop else [TimeInForce.FOK])))
    post_only = (order_type is OrderType.LIMIT and tif is TimeInForce.GTC
                 and draw(st.integers(0, 5)) == 0)
    quantity = draw(quantities)
    iceberg = (order_type is OrderType.LIMIT and tif is not TimeInForce.IOC
               and tif is not TimeInForce.FOK and draw(st.integers(0, 3)) == 0)
    return {
        "account": draw(accounts),
        "side": draw(sides),
        "quantity": quantity,
        "price": draw(prices) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        else None,
        "order_type": order_type,
        "time_in_force": tif,
        "post_only": post_only,
        "stp": draw(stps),
        "stop_price": draw(prices) if stop else None,
        "display_quantity": draw(st.integers(1, quantity)) if iceberg else None,
        # relative to now: the rule adds the clock
        "expire_time": draw(st.integers(0, 30)) if tif is TimeInForce.GTD else None,
    }


UNLIMITED_SPEC = InstrumentSpec("FREE", tick_size=Decimal("0.5"), lot_size=Decimal("1"))
"""No band and no quantity limits: one lot and one tick are the only floors."""


class EngineMatchesModel(RuleBasedStateMachine):
    spec = SPEC

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(self.spec)
        self.batched = Engine(self.spec)  # the same commands through apply_batch (the actor path)
        self.chunked = Engine(self.spec)  # ... in batches of several commands
        self.pending: list[AnyCommand] = []
        self.pending_events: list[object] = []
        self.model = ReferenceBook(self.spec)
        self.next_id = 1
        self.ts = 0
        self.ids: list[int] = []
        self.counted = Counters()  # what the model's events add up to

    def step(self, command: AnyCommand) -> None:
        seq_before = self.engine.seq
        got = self.engine.apply(command)
        want = self.model.apply(command)
        assert got == want, f"{command}\nengine: {got}\nmodel:  {want}"
        assert self.batched.apply_batch([command]) == want
        assert [e.seq for e in got] == list(range(seq_before + 1, seq_before + 1 + len(got)))
        assert got or isinstance(command, ExpireOrders), "a command yields at least one event"
        self.pending.append(command)
        self.pending_events.extend(want)
        trades = [event for event in want if isinstance(event, TradeExecuted)]
        self.counted = Counters(
            messages=self.counted.messages + 1,
            orders=self.counted.orders + sum(isinstance(e, OrderAccepted) for e in want),
            rejections=self.counted.rejections + sum(isinstance(e, OrderRejected) for e in want),
            trades=self.counted.trades + len(trades),
            volume=self.counted.volume + sum(trade.quantity for trade in trades),
        )

    @rule(data=st.data())
    def flush_batch(self, data: st.DataObject) -> None:
        """Send the commands gathered since the last flush to `chunked` as one batch."""
        if data.draw(st.booleans()):
            assert self.chunked.apply_batch(self.pending) == self.pending_events
            assert self.chunked.seq == self.engine.seq
            self.pending.clear()
            self.pending_events.clear()

    def tick(self) -> int:
        self.ts += 1
        return self.ts

    def known_id(self, data: st.DataObject) -> int:
        if self.ids and data.draw(st.integers(0, 9)) > 0:
            return data.draw(st.sampled_from(self.ids))
        return data.draw(st.integers(1, self.next_id + 2))

    @rule(fields=submit_fields(), data=st.data())
    def submit(self, fields: dict[str, object], data: st.DataObject) -> None:
        if self.ids and data.draw(st.integers(0, 19)) == 0:
            order_id = data.draw(st.sampled_from(self.ids))  # maybe a duplicate of a live id
        else:
            order_id = self.next_id
            self.next_id += 1
            self.ids.append(order_id)
        now = self.tick()
        if fields["expire_time"] is not None:
            fields["expire_time"] = now + fields["expire_time"]  # type: ignore[operator]
        self.step(SubmitOrder(order_id=order_id, timestamp=now, **fields))  # type: ignore[arg-type]

    @rule(ahead=st.integers(0, 20))
    def expire(self, ahead: int) -> None:
        """Time passes (each command advances the clock by one): expire what is due."""
        self.ts += ahead
        self.step(ExpireOrders(timestamp=self.tick()))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.step(CancelOrder(self.known_id(data), timestamp=self.tick()))

    @rule(data=st.data(), quantity=st.none() | quantities, price=st.none() | prices,
          stop_price=st.none() | st.none() | prices)
    def amend(self, data: st.DataObject, quantity: int | None, price: int | None,
              stop_price: int | None) -> None:
        if quantity is None and price is None and stop_price is None:
            quantity = 1
        self.step(AmendOrder(self.known_id(data), quantity=quantity, price=price,
                             timestamp=self.tick(), stop_price=stop_price))

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data(), quantity=quantities)
    def execute(self, data: st.DataObject, quantity: int) -> None:
        self.step(ExecuteOrder(self.known_id(data), quantity, timestamp=self.tick()))

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data(), quantity=quantities)
    def reduce(self, data: st.DataObject, quantity: int) -> None:
        self.step(ReduceOrder(self.known_id(data), quantity, timestamp=self.tick()))

    @invariant()
    def same_resting_orders_in_queue_order(self) -> None:
        snapshot = self.engine.snapshot()
        for side, engine_orders in ((Side.BUY, snapshot.bids), (Side.SELL, snapshot.asks)):
            want = [(o.order_id, o.price, o.remaining, o.quantity, o.hidden)
                    for o in self.model.queue(side)]
            got = [(o.order_id, o.price, o.remaining, o.quantity, o.hidden)
                   for o in engine_orders]
            assert got == want
        assert snapshot.stops == self.model.stops
        assert snapshot.last_price == self.model.last_price

    @invariant()
    def level_sizes_are_sums_and_book_is_not_crossed(self) -> None:
        bids, asks = self.engine.depth()
        for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
            for price, size in levels:
                orders = self.engine.level_orders(side, price)
                assert orders, "no empty levels"
                assert size == sum(o.remaining for o in orders)
                assert size == self.engine.level_size(side, price)
        if bids and asks:
            assert bids[0][0] < asks[0][0]
        assert (self.engine.best_bid() or None) == (bids[0] if bids else None)
        assert (self.engine.best_ask() or None) == (asks[0] if asks else None)
        assert self.engine.open_order_count() == len(self.model.orders)

    @invariant()
    def counters_add_up(self) -> None:
        assert self.engine.counters() == self.counted
        assert self.batched.counters() == self.counted

    @invariant()
    def restore_gives_the_same_book(self) -> None:
        snapshot = self.engine.snapshot()
        assert Engine.restore(snapshot).snapshot() == snapshot
        assert self.batched.snapshot() == snapshot
        # the cheap capture a snapshot file is written from describes the same book
        assert self.engine.capture().image().snapshot() == snapshot
        if not self.pending:
            assert self.chunked.snapshot() == snapshot
            assert self.chunked.counters() == self.engine.counters()


class UnlimitedEngineMatchesModel(EngineMatchesModel):
    spec = UNLIMITED_SPEC



EngineMatchesModel.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineMatchesModel = EngineMatchesModel.TestCase
UnlimitedEngineMatchesModel.TestCase.settings = EngineMatchesModel.TestCase.settings
TestUnlimitedEngineMatchesModel = UnlimitedEngineMatchesModel.TestCase
