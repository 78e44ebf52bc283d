"""Stops, stop-limits, icebergs and expiry in the engine: commands in, the exact events out.

The rules (also in docs/api.md "Order types"):
* a stop waits outside the visible book until a trade's price reaches its stop price (buy:
  at or above, sell: at or below), then enters as a market order (STOP) or a limit at its
  price (STOP_LIMIT) with time priority from that moment; one trade can release several
  (by stop price, then arrival) and their trades release more, all within the command;
* a stop the last trade has already reached is refused on arrival (STOP_WOULD_TRIGGER);
* an iceberg shows `display_quantity`; when that is filled it shows the next part of its
  reserve at the back of its level, so a sweep takes a level's visible orders first;
* GTD and DAY orders end on `ExpireOrders` at or after their `expire_time`.
"""

from __future__ import annotations

from decimal import Decimal

from lobgw.book import Engine
from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ExpireOrders,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRefreshed,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, Reason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
SPEC = InstrumentSpec("TEST", Decimal("0.01"), Decimal("1"))


def limit(order_id: int, side: Side, quantity: int, price: int, account: str = "m",
          **extra: object) -> SubmitOrder:
    return SubmitOrder(order_id, account, side, quantity, price=price, **extra)  # type: ignore[arg-type]


def stop(order_id: int, side: Side, quantity: int, stop_price: int, price: int | None = None,
         account: str = "s", **extra: object) -> SubmitOrder:
    kind = OrderType.STOP if price is None else OrderType.STOP_LIMIT
    return SubmitOrder(order_id, account, side, quantity, price=price, order_type=kind,
                       stop_price=stop_price, **extra)  # type: ignore[arg-type]


def market(order_id: int, side: Side, quantity: int, account: str = "t") -> SubmitOrder:
    return SubmitOrder(order_id, account, side, quantity, order_type=OrderType.MARKET)


def run(engine: Engine, *commands: AnyCommand) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        events += engine.apply(command)
    return events


def kinds(events: list[Event]) -> list[tuple[object, ...]]:
    """A compact reading of events: trades as (T, price, qty, maker, taker), others by id."""
    out: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, TradeExecuted):
            out.append(("T", event.price, event.quantity, event.maker_order_id,
                        event.taker_order_id))
        elif isinstance(event, OrderTriggered):
            out.append(("TRIG", event.order_id, event.trade_price))
        elif isinstance(event, OrderRefreshed):
            out.append(("REFRESH", event.order_id, event.visible, event.hidden))
        elif isinstance(event, OrderExpired | OrderRejected | OrderCanceled):
            out.append((type(event).__name__, event.order_id, event.reason.value))
        elif isinstance(event, OrderAccepted):
            out.append(("ACC", event.order.order_id))
        elif isinstance(event, OrderAmended):
            out.append(("AMEND", event.order_id, event.priority_kept))
    return out


def traded_at(engine: Engine, price: int) -> None:
    """Make the last trade price `price` (a 1-lot cross between accounts x and y)."""
    run(engine, limit(9000 + price, SELL, 1, price, account="x"),
        limit(9500 + price, BUY, 1, price, account="y"))
    assert engine.last_price == price


def test_a_buy_stop_waits_unseen_then_enters_as_a_market_order_at_the_trigger() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, SELL, 5, 101), limit(2, SELL, 5, 103))
    assert kinds(engine.apply(stop(10, BUY, 4, stop_price=102))) == [("ACC", 10)]
    assert engine.best_bid() is None and engine.order(10) is None  # not in the book
    assert [s.order_id for s in engine.stop_orders()] == [10]
    # a trade at 101 does not reach 102; the one at 103 does
    assert kinds(engine.apply(market(20, BUY, 5))) == [("ACC", 20), ("T", 101, 5, 1, 20)]
    assert kinds(engine.apply(market(21, BUY, 1))) == [
        ("ACC", 21), ("T", 103, 1, 2, 21), ("TRIG", 10, 103), ("T", 103, 4, 2, 10)]
    assert engine.stop_orders() == [] and engine.best_ask() is None


def test_a_sell_stop_triggers_at_or_below_and_a_stop_can_cascade() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, BUY, 2, 99), limit(2, BUY, 3, 98), limit(3, BUY, 5, 96))
    run(engine, stop(10, SELL, 3, stop_price=98),  # released by 99? no: by 98
        stop(11, SELL, 2, stop_price=99),          # released by the trade at 99
        stop(12, SELL, 1, stop_price=97))          # released by stop 10's trade at 96
    events = engine.apply(market(20, SELL, 2))
    assert kinds(events) == [
        ("ACC", 20), ("T", 99, 2, 1, 20),
        ("TRIG", 11, 99), ("T", 98, 2, 2, 11),        # 11 takes 98: that reaches 10
        ("TRIG", 10, 98), ("T", 98, 1, 2, 10), ("T", 96, 2, 3, 10),  # 96 reaches 12
        ("TRIG", 12, 96), ("T", 96, 1, 3, 12)]
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    assert engine.last_price == 96 and engine.best_bid() == (96, 2)


def test_several_stops_from_one_trade_enter_by_stop_price_then_arrival() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, SELL, 10, 105), limit(2, SELL, 10, 106))
    run(engine, stop(10, BUY, 1, stop_price=104), stop(11, BUY, 1, stop_price=102),
        stop(12, BUY, 1, stop_price=102))
    events = engine.apply(market(20, BUY, 1))
    assert [e[1] for e in kinds(events) if e[0] == "TRIG"] == [11, 12, 10]


def test_a_stop_that_the_last_trade_already_reached_is_refused() -> None:
    engine = Engine(SPEC)
    assert kinds(engine.apply(stop(1, BUY, 1, stop_price=50))) == [("ACC", 1)]  # no trade yet
    traded_at(engine, 100)
    for command in (stop(2, BUY, 1, stop_price=100), stop(3, SELL, 1, stop_price=101)):
        assert kinds(engine.apply(command)) == [
            ("OrderRejected", command.order_id, "STOP_WOULD_TRIGGER")]
    assert [s.order_id for s in engine.stop_orders()] == []  # 1 was released by the trade


def test_a_stop_limit_rests_at_its_price_after_the_trigger_with_priority_from_then() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, SELL, 2, 101), limit(2, BUY, 5, 99, account="early"))
    run(engine, stop(10, BUY, 6, stop_price=101, price=99, account="s"))
    run(engine, limit(3, SELL, 10, 103))
    events = engine.apply(market(20, BUY, 1))
    # the trade at 101 releases it; its limit 99 does not cross 101: it rests behind "early"
    assert kinds(events) == [("ACC", 20), ("T", 101, 1, 1, 20), ("TRIG", 10, 101)]
    assert [o.order_id for o in engine.level_orders(BUY, 99)] == [2, 10]
    assert engine.best_bid() == (99, 11)


def test_a_stop_limit_that_crosses_on_trigger_takes_then_rests_the_rest() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, SELL, 2, 101), limit(2, SELL, 2, 102), limit(3, SELL, 2, 104))
    run(engine, stop(10, BUY, 5, stop_price=101, price=102))
    events = engine.apply(market(20, BUY, 1))
    assert kinds(events) == [("ACC", 20), ("T", 101, 1, 1, 20), ("TRIG", 10, 101),
                             ("T", 101, 1, 1, 10), ("T", 102, 2, 2, 10)]
    assert engine.best_bid() == (102, 2)


def test_stops_are_cancelled_and_amended() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, stop(10, BUY, 5, stop_price=105, price=106), stop(11, BUY, 5, stop_price=105))
    assert kinds(engine.apply(CancelOrder(11))) == [("OrderCanceled", 11, "CANCELED")]
    assert kinds(engine.apply(AmendOrder(10, quantity=3))) == [("AMEND", 10, True)]
    assert kinds(engine.apply(AmendOrder(10, stop_price=103, price=104))) == [
        ("AMEND", 10, False)]
    (changed,) = engine.stop_orders()
    assert (changed.quantity, changed.stop_price, changed.price) == (3, 103, 104)
    # a stop price the last trade already reached, a limit price on a plain stop: refused
    assert kinds(engine.apply(AmendOrder(10, stop_price=99))) == [
        ("OrderRejected", 10, "STOP_WOULD_TRIGGER")]
    run(engine, stop(12, SELL, 1, stop_price=90))
    assert kinds(engine.apply(AmendOrder(12, price=89))) == [
        ("OrderRejected", 12, "ORDER_NOT_FOUND")]
    assert kinds(engine.apply(CancelOrder(11))) == [("OrderRejected", 11, "ORDER_NOT_FOUND")]
    # an id of a waiting stop is taken
    assert kinds(engine.apply(limit(10, BUY, 1, 50))) == [
        ("OrderRejected", 10, "DUPLICATE_ORDER_ID")]
    assert kinds(engine.apply_batch([limit(12, BUY, 1, 50)])) == [
        ("OrderRejected", 12, "DUPLICATE_ORDER_ID")]


def test_a_stop_trigger_in_trigger_order_after_an_amend_moves_it_last() -> None:
    engine = Engine(SPEC)
    traded_at(engine, 100)
    run(engine, limit(1, SELL, 10, 105))
    run(engine, stop(10, BUY, 1, stop_price=102), stop(11, BUY, 1, stop_price=102))
    run(engine, AmendOrder(10, stop_price=102, quantity=2))  # not a decrease: to the end
    events = engine.apply(market(20, BUY, 1))
    assert [e[1] for e in kinds(events) if e[0] == "TRIG"] == [11, 10]


def test_an_iceberg_shows_its_display_and_refreshes_to_the_back() -> None:
    engine = Engine(SPEC)
    run(engine, limit(1, SELL, 10, 100, display_quantity=3), limit(2, SELL, 4, 100))
    assert engine.best_ask() == (100, 7)  # 3 shown + 4
    assert [(o.order_id, o.remaining, o.hidden) for o in engine.level_orders(SELL, 100)] == [
        (1, 3, 7), (2, 4, 0)]
    events = engine.apply(market(20, BUY, 4))
    assert kinds(events) == [("ACC", 20), ("T", 100, 3, 1, 20), ("REFRESH", 1, 3, 4),
                             ("T", 100, 1, 2, 20)]
    trade = events[1]
    assert isinstance(trade, TradeExecuted) and trade.maker_remaining == 7  # 3 shown + 4
    assert [(o.order_id, o.remaining) for o in engine.level_orders(SELL, 100)] == [(2, 3),
                                                                                 (1, 3)]


def test_a_sweep_takes_the_visible_orders_first_then_the_refreshed_parts() -> None:
    engine = Engine(SPEC)
    run(engine, limit(1, SELL, 6, 100, display_quantity=2), limit(2, SELL, 2, 100),
        limit(3, SELL, 5, 101))
    events = engine.apply(market(20, BUY, 9))
    assert kinds(events) == [
        ("ACC", 20), ("T", 100, 2, 1, 20), ("REFRESH", 1, 2, 2), ("T", 100, 2, 2, 20),
        ("T", 100, 2, 1, 20), ("REFRESH", 1, 2, 0), ("T", 100, 2, 1, 20),
        ("T", 101, 1, 3, 20)]
    assert engine.order(1) is None and engine.best_ask() == (101, 4)


def test_iceberg_amends_and_cancels_count_the_reserve() -> None:
    engine = Engine(SPEC)
    run(engine, limit(1, BUY, 10, 100, display_quantity=3), limit(2, BUY, 1, 100))
    # a decrease keeps priority and gives up hidden lots first
    events = engine.apply_batch([AmendOrder(1, quantity=5)])
    assert kinds(events) == [("AMEND", 1, True)]
    view = engine.order(1)
    assert view is not None and (view.remaining, view.hidden) == (3, 2)
    assert kinds(engine.apply(ReduceOrder(1, 4))) == [("AMEND", 1, True)]
    view = engine.order(1)
    assert view is not None and (view.remaining, view.hidden, view.quantity) == (1, 0, 1)
    # an increase goes to the back, shown again by its display
    assert kinds(engine.apply(AmendOrder(1, quantity=8))) == [("AMEND", 1, False)]
    assert [(o.order_id, o.remaining, o.hidden) for o in engine.level_orders(BUY, 100)] == [
        (2, 1, 0), (1, 3, 5)]
    (cancel,) = engine.apply_batch([CancelOrder(1)])
    assert isinstance(cancel, OrderCanceled) and cancel.remaining == 8


def test_a_replayed_execution_refreshes_an_iceberg() -> None:
    engine = Engine(SPEC)
    run(engine, limit(1, BUY, 5, 100, display_quantity=2), limit(2, BUY, 1, 100))
    assert kinds(engine.apply(ExecuteOrder(1, 2))) == [("T", 100, 2, 1, None),
                                                       ("REFRESH", 1, 2, 1)]
    assert [o.order_id for o in engine.level_orders(BUY, 100)] == [2, 1]


def test_gtd_and_day_orders_expire_on_expire_orders_and_only_then() -> None:
    engine = Engine(SPEC)
    gtd = TimeInForce.GTD
    run(engine, limit(1, BUY, 5, 100, time_in_force=gtd, expire_time=1_000),
        limit(2, BUY, 5, 99, time_in_force=TimeInForce.DAY, expire_time=2_000),
        limit(3, BUY, 5, 98),
        limit(4, SELL, 5, 110, time_in_force=gtd, expire_time=1_000, display_quantity=2),
        stop(5, SELL, 1, stop_price=90, time_in_force=gtd, expire_time=1_500))
    assert engine.next_expiry() == 1_000
    assert engine.apply(ExpireOrders(timestamp=999)) == []
    events = engine.apply(ExpireOrders(timestamp=1_500))
    assert kinds(events) == [("OrderExpired", 1, "GTD_EXPIRED"),
                             ("OrderExpired", 4, "GTD_EXPIRED"),
                             ("OrderExpired", 5, "GTD_EXPIRED")]
    assert [e.remaining for e in events if isinstance(e, OrderExpired)] == [5, 5, 1]
    assert engine.next_expiry() == 2_000
    assert kinds(engine.apply(ExpireOrders(timestamp=2_000))) == [
        ("OrderExpired", 2, "DAY_ENDED")]
    assert engine.next_expiry() is None and engine.best_bid() == (98, 5)


def test_a_partly_filled_gtd_order_expires_with_what_is_left() -> None:
    engine = Engine(SPEC)
    run(engine, limit(1, SELL, 5, 100, time_in_force=TimeInForce.GTD, expire_time=10),
        market(2, BUY, 2))
    (expired,) = engine.apply(ExpireOrders(timestamp=10))
    assert isinstance(expired, OrderExpired) and expired.remaining == 3


def test_a_snapshot_holds_every_order_type_and_the_restored_book_acts_the_same() -> None:
    def build() -> Engine:
        engine = Engine(SPEC)
        traded_at(engine, 100)
        run(engine, limit(1, SELL, 10, 101, display_quantity=2),
            limit(2, SELL, 3, 101, time_in_force=TimeInForce.GTD, expire_time=50),
            stop(3, BUY, 4, stop_price=101), stop(4, BUY, 2, stop_price=101, price=103),
            stop(5, SELL, 1, stop_price=95, time_in_force=TimeInForce.DAY, expire_time=60))
        return engine

    original = build()
    snapshot = original.snapshot()
    restored = Engine.restore(snapshot)
    assert restored.snapshot() == snapshot
    assert original.capture().image().snapshot() == snapshot
    future: list[AnyCommand] = [market(30, BUY, 1), ExpireOrders(timestamp=55),
                                market(31, BUY, 20), ExpireOrders(timestamp=60)]
    assert run(restored, *future) == run(original, *future)
    assert restored.snapshot() == original.snapshot()


def test_new_shapes_are_checked_when_built() -> None:
    import pytest

    from lobgw.errors import InvalidCommandError

    bad: list[dict[str, object]] = [
        {"order_type": OrderType.STOP, "stop_price": None},
        {"order_type": OrderType.STOP, "stop_price": 5, "price": 5},
        {"order_type": OrderType.STOP_LIMIT, "stop_price": 5},
        {"order_type": OrderType.STOP, "stop_price": 5, "time_in_force": TimeInForce.FOK},
        {"price": 5, "stop_price": 5},
        {"price": 5, "display_quantity": 0},
        {"price": 5, "display_quantity": 1, "time_in_force": TimeInForce.IOC},
        {"price": 5, "time_in_force": TimeInForce.GTD},
        {"price": 5, "expire_time": 10},
    ]
    for fields in bad:
        with pytest.raises(InvalidCommandError):
            SubmitOrder(1, "a", BUY, 2, **fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommandError):
        AmendOrder(1, stop_price=0)
    assert Reason.STOP_WOULD_TRIGGER.value == "STOP_WOULD_TRIGGER"
