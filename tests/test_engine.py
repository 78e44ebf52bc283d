"""Engine rules, one test each: commands in, the exact events out (synchronous, no I/O)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from lobgw.book import Counters, Engine
from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side, TimeInForce
from lobgw.errors import InputError, InvalidCommandError, SnapshotError, UnknownCommandError

BUY, SELL = Side.BUY, Side.SELL
MARKET = OrderType.MARKET
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK
SPEC = InstrumentSpec("TEST", Decimal("0.01"), Decimal("1"))


def limit(order_id: int, side: Side, quantity: int, price: int, account: str = "a",
          **extra: object) -> SubmitOrder:
    return SubmitOrder(order_id, account, side, quantity, price=price, **extra)  # type: ignore[arg-type]


def market(order_id: int, side: Side, quantity: int, account: str = "t",
           **extra: object) -> SubmitOrder:
    return SubmitOrder(order_id, account, side, quantity, order_type=MARKET, **extra)  # type: ignore[arg-type]


def book(*commands: SubmitOrder, spec: InstrumentSpec = SPEC) -> Engine:
    engine = Engine(spec)
    for command in commands:
        events = engine.apply(command)
        assert not any(isinstance(e, OrderRejected) for e in events)
    return engine


def trade(seq: int, price: int, quantity: int, aggressor: Side, maker: int, taker: int,
          maker_left: int, taker_left: int, maker_account: str = "a",
          taker_account: str = "t") -> TradeExecuted:
    return TradeExecuted(seq, 0, price, quantity, aggressor, maker, taker, maker_account,
                         taker_account, maker_left, taker_left)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- resting and price-time priority ---------------------------------------------------------

def test_passive_limit_rests_and_is_accepted() -> None:
    engine = Engine(SPEC)
    command = limit(1, BUY, 10, 100)
    assert engine.apply(command) == [OrderAccepted(1, 0, command)]
    assert engine.best_bid() == (100, 10)
    assert engine.best_ask() is None
    assert engine.depth() == ([(100, 10)], [])


def test_buy_sweeps_levels_in_price_then_time_order_at_maker_prices() -> None:
    engine = book(limit(1, SELL, 5, 101), limit(2, SELL, 5, 100), limit(3, SELL, 5, 100),
                  limit(4, SELL, 5, 102))
    taker = limit(9, BUY, 12, 101, account="t")
    assert engine.apply(taker) == [
        OrderAccepted(5, 0, taker),
        trade(6, 100, 5, BUY, 2, 9, 0, 7),
        trade(7, 100, 5, BUY, 3, 9, 0, 2),
        trade(8, 101, 2, BUY, 1, 9, 3, 0),
    ]
    assert engine.depth() == ([], [(101, 3), (102, 5)])


def test_limit_remainder_rests_after_sweeping() -> None:
    engine = book(limit(1, SELL, 5, 100))
    taker = limit(2, BUY, 8, 101, account="t")
    events = engine.apply(taker)
    assert events[1:] == [trade(3, 100, 5, BUY, 1, 2, 0, 3)]
    assert engine.depth() == ([(101, 3)], [])
    view = engine.order(2)
    assert view is not None and (view.remaining, view.quantity) == (3, 8)


def test_sell_matches_only_bids_at_or_above_its_limit() -> None:
    engine = book(limit(1, BUY, 5, 99), limit(2, BUY, 5, 98))
    taker = limit(3, SELL, 10, 99, account="t")
    assert engine.apply(taker)[1:] == [trade(4, 99, 5, SELL, 1, 3, 0, 5)]
    assert engine.depth() == ([(98, 5)], [(99, 5)])


def test_level_orders_are_fifo() -> None:
    engine = book(limit(1, BUY, 1, 100), limit(2, BUY, 2, 100), limit(3, BUY, 3, 100))
    assert [o.order_id for o in engine.level_orders(BUY, 100)] == [1, 2, 3]
    engine.apply(CancelOrder(2))
    assert [o.order_id for o in engine.level_orders(BUY, 100)] == [1, 3]
    assert engine.level_size(BUY, 100) == 4


# -- market orders -------------------------------------------------------------------------

def test_market_sweeps_and_remainder_ends_insufficient_liquidity() -> None:
    engine = book(limit(1, SELL, 3, 100), limit(2, SELL, 4, 105))
    taker = market(3, BUY, 10)
    assert engine.apply(taker) == [
        OrderAccepted(3, 0, taker),
        trade(4, 100, 3, BUY, 1, 3, 0, 7),
        trade(5, 105, 4, BUY, 2, 3, 0, 3),
        OrderExpired(6, 0, 3, "t", 3, Reason.INSUFFICIENT_LIQUIDITY),
    ]
    assert engine.depth() == ([], [])


def test_market_into_empty_side_is_accepted_then_expires() -> None:
    engine = Engine(SPEC)
    taker = market(1, SELL, 5)
    assert engine.apply(taker) == [
        OrderAccepted(1, 0, taker),
        OrderExpired(2, 0, 1, "t", 5, Reason.INSUFFICIENT_LIQUIDITY),
    ]


# -- time in force ----------------------------------------------------------------------------

def test_ioc_trades_what_it_can_and_expires_the_rest() -> None:
    engine = book(limit(1, SELL, 4, 100))
    taker = limit(2, BUY, 10, 100, account="t", time_in_force=IOC)
    assert engine.apply(taker) == [
        OrderAccepted(2, 0, taker),
        trade(3, 100, 4, BUY, 1, 2, 0, 6),
        OrderExpired(4, 0, 2, "t", 6, Reason.IOC_REMAINDER),
    ]
    assert engine.depth() == ([], [])


def test_ioc_that_cannot_trade_expires_whole() -> None:
    engine = book(limit(1, SELL, 4, 101))
    taker = limit(2, BUY, 10, 100, account="t", time_in_force=IOC)
    assert engine.apply(taker) == [
        OrderAccepted(2, 0, taker),
        OrderExpired(3, 0, 2, "t", 10, Reason.IOC_REMAINDER),
    ]
    assert engine.depth() == ([], [(101, 4)])


def test_fok_rejected_when_not_fully_fillable_and_nothing_trades() -> None:
    engine = book(limit(1, SELL, 4, 100), limit(2, SELL, 4, 101), limit(3, SELL, 9, 102))
    taker = limit(4, BUY, 10, 101, account="t", time_in_force=FOK)
    assert engine.apply(taker) == [OrderRejected(4, 0, 4, "t", Reason.FOK_NOT_FILLED, taker)]
    assert engine.depth() == ([], [(100, 4), (101, 4), (102, 9)])


def test_fok_fills_completely_when_possible() -> None:
    engine = book(limit(1, SELL, 4, 100), limit(2, SELL, 6, 101))
    taker = limit(3, BUY, 10, 101, account="t", time_in_force=FOK)
    assert engine.apply(taker) == [
        OrderAccepted(3, 0, taker),
        trade(4, 100, 4, BUY, 1, 3, 0, 6),
        trade(5, 101, 6, BUY, 2, 3, 0, 0),
    ]


def test_fok_market_into_empty_book_is_rejected() -> None:
    engine = Engine(SPEC)
    taker = market(1, BUY, 1, time_in_force=FOK)
    assert engine.apply(taker) == [OrderRejected(1, 0, 1, "t", Reason.FOK_NOT_FILLED, taker)]


# -- post only ------------------------------------------------------------------------------

def test_post_only_rejected_when_it_would_take() -> None:
    engine = book(limit(1, SELL, 5, 100))
    maker = limit(2, BUY, 5, 100, account="t", post_only=True)
    assert engine.apply(maker) == [OrderRejected(2, 0, 2, "t", Reason.POST_ONLY_WOULD_TAKE, maker)]
    assert engine.depth() == ([], [(100, 5)])


def test_post_only_rests_when_passive() -> None:
    engine = book(limit(1, SELL, 5, 100))
    command = limit(2, BUY, 5, 99, account="t", post_only=True)
    assert engine.apply(command) == [OrderAccepted(2, 0, command)]
    assert engine.depth() == ([(99, 5)], [(100, 5)])


def test_post_only_with_ioc_or_fok_or_market_cannot_be_built() -> None:
    with pytest.raises(InvalidCommandError):
        limit(1, BUY, 5, 99, post_only=True, time_in_force=IOC)
    with pytest.raises(InvalidCommandError):
        limit(1, BUY, 5, 99, post_only=True, time_in_force=FOK)
    with pytest.raises(InvalidCommandError):
        market(1, BUY, 5, post_only=True)


# -- self-trade prevention ---------------------------------------------------------------------

def test_stp_cancel_taker_is_a_rejection_when_nothing_traded() -> None:
    engine = book(limit(1, SELL, 5, 100, account="me"))
    taker = limit(2, BUY, 5, 100, account="me")
    assert engine.apply(taker) == [OrderRejected(2, 0, 2, "me", Reason.STP, taker)]
    assert engine.depth() == ([], [(100, 5)])


def test_stp_cancel_taker_cancels_the_remainder_after_trading() -> None:
    engine = book(limit(1, SELL, 3, 100, account="other"), limit(2, SELL, 5, 100, account="me"))
    taker = limit(3, BUY, 10, 101, account="me")
    assert engine.apply(taker) == [
        OrderAccepted(3, 0, taker),
        trade(4, 100, 3, BUY, 1, 3, 0, 7, maker_account="other", taker_account="me"),
        OrderCanceled(5, 0, 3, "me", BUY, 101, 7, Reason.STP),
    ]
    assert engine.depth() == ([], [(100, 5)])


def test_stp_cancel_maker_cancels_own_resting_and_keeps_matching() -> None:
    engine = book(limit(1, SELL, 5, 100, account="me"), limit(2, SELL, 5, 100, account="other"))
    taker = limit(3, BUY, 4, 100, account="me", stp=SelfTradePrevention.CANCEL_MAKER)
    assert engine.apply(taker) == [
        OrderAccepted(3, 0, taker),
        OrderCanceled(4, 0, 1, "me", SELL, 100, 5, Reason.STP),
        trade(5, 100, 4, BUY, 2, 3, 1, 0, maker_account="other", taker_account="me"),
    ]
    assert engine.depth() == ([], [(100, 1)])
    assert engine.order(1) is None


def test_stp_cancel_both_cancels_maker_and_rejects_untraded_taker() -> None:
    engine = book(limit(1, SELL, 5, 100, account="me"), limit(2, SELL, 5, 100, account="other"))
    taker = limit(3, BUY, 4, 100, account="me", stp=SelfTradePrevention.CANCEL_BOTH)
    assert engine.apply(taker) == [
        OrderCanceled(3, 0, 1, "me", SELL, 100, 5, Reason.STP),
        OrderRejected(4, 0, 3, "me", Reason.STP, taker),
    ]
    assert engine.depth() == ([], [(100, 5)])


def test_stp_cancel_both_after_a_trade_cancels_both_remainders() -> None:
    engine = book(limit(1, SELL, 2, 100, account="other"), limit(2, SELL, 5, 100, account="me"))
    taker = limit(3, BUY, 6, 100, account="me", stp=SelfTradePrevention.CANCEL_BOTH)
    assert engine.apply(taker) == [
        OrderAccepted(3, 0, taker),
        trade(4, 100, 2, BUY, 1, 3, 0, 4, maker_account="other", taker_account="me"),
        OrderCanceled(5, 0, 2, "me", SELL, 100, 5, Reason.STP),
        OrderCanceled(6, 0, 3, "me", BUY, 100, 4, Reason.STP),
    ]
    assert engine.depth() == ([], [])


def test_stp_none_allows_self_trades() -> None:
    engine = book(limit(1, SELL, 5, 100, account="feed"))
    taker = limit(2, BUY, 5, 100, account="feed", stp=SelfTradePrevention.NONE)
    assert engine.apply(taker)[1:] == [
        trade(2 + 1, 100, 5, BUY, 1, 2, 0, 0, maker_account="feed", taker_account="feed")
    ]


# -- cancel -----------------------------------------------------------------------------------

def test_cancel_removes_the_order_and_empty_level() -> None:
    engine = book(limit(1, BUY, 5, 100), limit(2, BUY, 5, 99))
    assert engine.apply(CancelOrder(1, timestamp=7)) == [
        OrderCanceled(3, 7, 1, "a", BUY, 100, 5, Reason.CANCELED)
    ]
    assert engine.best_bid() == (99, 5)


def test_cancel_of_unknown_or_finished_order_is_order_not_found() -> None:
    engine = book(limit(1, SELL, 5, 100))
    engine.apply(market(2, BUY, 5))
    assert engine.apply(CancelOrder(1)) == [OrderRejected(4, 0, 1, None, Reason.ORDER_NOT_FOUND)]
    assert engine.apply(CancelOrder(42)) == [OrderRejected(5, 0, 42, None, Reason.ORDER_NOT_FOUND)]


# -- amend ------------------------------------------------------------------------------------

def test_amend_down_keeps_priority() -> None:
    engine = book(limit(1, BUY, 10, 100), limit(2, BUY, 10, 100))
    assert engine.apply(AmendOrder(1, quantity=4)) == [
        OrderAmended(3, 0, 1, "a", BUY, 100, 100, 4, 4, True)
    ]
    assert [o.order_id for o in engine.level_orders(BUY, 100)] == [1, 2]
    assert engine.best_bid() == (100, 14)


def test_amend_up_loses_priority() -> None:
    engine = book(limit(1, BUY, 10, 100), limit(2, BUY, 10, 100))
    assert engine.apply(AmendOrder(1, quantity=12)) == [
        OrderAmended(3, 0, 1, "a", BUY, 100, 100, 12, 12, False)
    ]
    assert [o.order_id for o in engine.level_orders(BUY, 100)] == [2, 1]
    assert engine.best_bid() == (100, 22)


def test_amend_price_loses_priority_and_can_trade() -> None:
    engine = book(limit(1, BUY, 10, 99), limit(2, SELL, 4, 101, account="s"))
    assert engine.apply(AmendOrder(1, price=101)) == [
        OrderAmended(3, 0, 1, "a", BUY, 99, 101, 10, 10, False),
        TradeExecuted(4, 0, 101, 4, BUY, 2, 1, "s", "a", 0, 6),
    ]
    assert engine.depth() == ([(101, 6)], [])


def test_amend_quantity_counts_fills() -> None:
    engine = book(limit(1, SELL, 10, 100))
    engine.apply(market(2, BUY, 4))
    # total 8 with 4 filled leaves 4
    assert engine.apply(AmendOrder(1, quantity=8))[0] == OrderAmended(
        4, 0, 1, "a", SELL, 100, 100, 8, 4, True)
    # at or below what already filled: the order is cancelled
    assert engine.apply(AmendOrder(1, quantity=4)) == [
        OrderCanceled(5, 0, 1, "a", SELL, 100, 4, Reason.AMENDED_BELOW_FILLED)
    ]
    assert engine.depth() == ([], [])


def test_amend_of_unknown_order_is_order_not_found() -> None:
    assert Engine(SPEC).apply(AmendOrder(5, quantity=1)) == [
        OrderRejected(1, 0, 5, None, Reason.ORDER_NOT_FOUND)
    ]


def test_post_only_amend_that_would_take_is_rejected_and_order_kept() -> None:
    engine = book(limit(1, BUY, 5, 99, post_only=True), limit(2, SELL, 5, 101, account="s"))
    assert engine.apply(AmendOrder(1, price=101)) == [
        OrderRejected(3, 0, 1, "a", Reason.POST_ONLY_WOULD_TAKE)
    ]
    assert engine.best_bid() == (99, 5)


# -- replayed market data ----------------------------------------------------------------------

def test_execute_fills_a_resting_order_without_an_aggressor() -> None:
    engine = book(limit(1, BUY, 10, 100))
    assert engine.apply(ExecuteOrder(1, 4, timestamp=3)) == [
        TradeExecuted(2, 3, 100, 4, SELL, 1, None, "a", None, 6, 0)
    ]
    assert engine.apply(ExecuteOrder(1, 6)) == [
        TradeExecuted(3, 0, 100, 6, SELL, 1, None, "a", None, 0, 0)
    ]
    assert engine.depth() == ([], [])
    assert engine.apply(ExecuteOrder(1, 1))[0].__class__ is OrderRejected


def test_reduce_keeps_priority_and_deletes_at_zero() -> None:
    engine = book(limit(1, SELL, 10, 100), limit(2, SELL, 10, 100))
    assert engine.apply(ReduceOrder(1, 3)) == [
        OrderAmended(3, 0, 1, "a", SELL, 100, 100, 7, 7, True)
    ]
    assert [o.order_id for o in engine.level_orders(SELL, 100)] == [1, 2]
    assert engine.apply(ReduceOrder(1, 7)) == [
        OrderCanceled(4, 0, 1, "a", SELL, 100, 7, Reason.CANCELED)
    ]
    assert engine.best_ask() == (100, 10)


# -- bad input -------------------------------------------------------------------------------

BOUNDED = InstrumentSpec("B", Decimal("0.05"), Decimal("10"), min_quantity=Decimal("20"),
                         max_quantity=Decimal("1000"), price_band_low=Decimal("9"),
                         price_band_high=Decimal("11"))


@pytest.mark.parametrize(("command", "reason"), [
    (limit(1, BUY, 1, 200), Reason.QUANTITY_BELOW_MINIMUM),
    (limit(1, BUY, 101, 200), Reason.QUANTITY_ABOVE_MAXIMUM),
    (limit(1, BUY, 5, 179), Reason.PRICE_OUT_OF_BAND),
    (limit(1, BUY, 5, 221), Reason.PRICE_OUT_OF_BAND),
])
def test_instrument_limits_reject_and_leave_the_book_unchanged(
    command: SubmitOrder, reason: Reason
) -> None:
    engine = book(limit(7, SELL, 5, 200), spec=BOUNDED)
    before = engine.snapshot()
    assert engine.apply(command) == [OrderRejected(2, 0, 1, "a", reason, command)]
    assert engine.snapshot().bids == before.bids and engine.snapshot().asks == before.asks


HUGE = InstrumentSpec("H", Decimal("1"), Decimal("1"), max_quantity=Decimal(2**40),
                     price_band_high=Decimal(2**40))
"""Limits beyond 2**30, where the engine's quick bound checks hand over to the exact ones."""


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize(("spec", "quantity", "price", "reason"), [
    (SPEC, 2**31, 2**31, None),             # no limits: big orders rest
    (HUGE, 2**40, 2**40, None),             # exactly at the limits
    (HUGE, 2**40 + 1, 100, Reason.QUANTITY_ABOVE_MAXIMUM),
    (HUGE, 5, 2**40 + 1, Reason.PRICE_OUT_OF_BAND),
])
def test_limits_beyond_small_ints_are_exact(
    spec: InstrumentSpec, quantity: int, price: int, reason: Reason | None, batched: bool
) -> None:
    engine = Engine(spec)
    command = limit(1, BUY, quantity, price)
    events = engine.apply_batch([command]) if batched else engine.apply(command)
    if reason is None:
        assert events == [OrderAccepted(1, 0, command)]
        assert engine.best_bid() == (price, quantity)
        # Big amends (a decrease, then an increase back) are exact too; a big seller trades.
        for amended in (quantity - 1, quantity):
            amend = AmendOrder(1, quantity=amended)
            assert kinds(engine.apply_batch([amend]) if batched else engine.apply(amend)) == [
                "OrderAmended"]
        sell = market(2, SELL, quantity)
        assert kinds(engine.apply_batch([sell]) if batched else engine.apply(sell)) == [
            "OrderAccepted", "TradeExecuted"]
        assert engine.counters().volume == quantity
    else:
        assert events == [OrderRejected(1, 0, 1, "a", reason, command)]
        assert engine.best_bid() is None


def test_duplicate_live_order_id_is_rejected() -> None:
    engine = book(limit(1, BUY, 5, 100))
    duplicate = limit(1, SELL, 5, 105)
    assert engine.apply(duplicate) == [
        OrderRejected(2, 0, 1, "a", Reason.DUPLICATE_ORDER_ID, duplicate)]
    assert engine.depth() == ([(100, 5)], [])


@pytest.mark.parametrize("build", [
    lambda: SubmitOrder(1, "a", BUY, 0, price=100),
    lambda: SubmitOrder(1, "a", BUY, -3, price=100),
    lambda: SubmitOrder(1, "a", BUY, 5),
    lambda: SubmitOrder(1, "a", BUY, 5, price=0),
    lambda: SubmitOrder(1, "a", BUY, 5, price=100, order_type=MARKET),
    lambda: AmendOrder(1),
    lambda: AmendOrder(1, quantity=0),
    lambda: ExecuteOrder(1, 0),
    lambda: ReduceOrder(1, -1),
])
def test_malformed_commands_cannot_be_built(build: object) -> None:
    with pytest.raises(InvalidCommandError):
        build()  # type: ignore[operator]


def test_malformed_command_from_the_wire_is_a_validation_error() -> None:
    decoder = msgspec.json.Decoder(SubmitOrder)
    with pytest.raises(msgspec.ValidationError, match="quantity must be positive"):
        decoder.decode(b'{"type":"SubmitOrder","order_id":1,"account":"a","side":"BUY",'
                       b'"quantity":0,"price":5}')
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'UP'"):
        decoder.decode(b'{"type":"SubmitOrder","order_id":1,"account":"a","side":"UP",'
                       b'"quantity":1,"price":5}')


@pytest.mark.parametrize(("value", "code"), [
    ("10.02", "PRICE_OFF_TICK"), ("0", "INVALID_PRICE"), ("-1", "INVALID_PRICE"),
    ("NaN", "INVALID_PRICE"), ("Infinity", "INVALID_PRICE"),
])
def test_edge_refuses_prices_off_the_tick_grid(value: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        BOUNDED.price_to_ticks(Decimal(value))
    assert (caught.value.code, caught.value.field) == (code, "price")


def test_edge_refuses_quantities_off_the_lot_grid() -> None:
    with pytest.raises(InputError) as caught:
        BOUNDED.quantity_to_lots(Decimal("25"), "qty")
    assert (caught.value.code, caught.value.field) == ("QUANTITY_OFF_LOT", "qty")
    with pytest.raises(InputError) as caught:
        BOUNDED.quantity_to_lots(Decimal("0"))
    assert caught.value.code == "INVALID_QUANTITY"


def test_edge_conversion_is_exact_both_ways() -> None:
    assert BOUNDED.price_to_ticks(Decimal("10.05")) == 201
    assert BOUNDED.ticks_to_price(201) == Decimal("10.05")
    assert BOUNDED.quantity_to_lots(Decimal("30")) == 3
    assert str(BOUNDED.lots_to_quantity(3)) == "30"
    assert str(SPEC.ticks_to_price(12345)) == "123.45"


def test_instrument_spec_validates_itself() -> None:
    decoder = msgspec.json.Decoder(InstrumentSpec)
    with pytest.raises(msgspec.ValidationError, match="tick_size must be a positive decimal"):
        decoder.decode(b'{"symbol":"X","tick_size":"0","lot_size":"1"}')
    with pytest.raises(msgspec.ValidationError, match=r"min_quantity: .* not a multiple"):
        decoder.decode(b'{"symbol":"X","tick_size":"1","lot_size":"2","min_quantity":"3"}')
    with pytest.raises(msgspec.ValidationError, match="price_band_low must not exceed"):
        decoder.decode(b'{"symbol":"X","tick_size":"1","lot_size":"1",'
                       b'"price_band_low":"5","price_band_high":"4"}')


def test_unknown_command_is_a_programming_error() -> None:
    with pytest.raises(UnknownCommandError):
        Engine(SPEC).apply("cancel everything")  # type: ignore[arg-type]


def test_batch_with_an_unknown_command_keeps_what_came_before_and_counts_only_it() -> None:
    engine = Engine(SPEC)
    events: list[Event] = []
    batch = [limit(1, BUY, 5, 99), limit(2, SELL, 2, 101), "not a command",
             limit(3, BUY, 1, 98)]
    with pytest.raises(UnknownCommandError):
        engine.apply_batch(batch, events)  # type: ignore[arg-type]
    # the two commands before it were applied and their events are in the caller's hands
    assert kinds(events) == ["OrderAccepted", "OrderAccepted"]
    assert engine.seq == events[-1].seq == 2
    assert engine.counters().messages == 2  # the unknown command and the one after: not counted
    assert engine.order(3) is None
    # the book goes on from there: no gap and no repeated sequence number
    assert [e.seq for e in engine.apply(limit(4, BUY, 1, 97))] == [3]


class FaultyEngine(Engine):
    """An engine with a bug planted in one handler: it emits an event, then raises."""

    def _amend(self, cmd: AmendOrder, events: list[Event]) -> None:
        super()._amend(cmd, events)
        raise RuntimeError("planted bug")


def test_batch_whose_handler_raises_repairs_the_sequence_number() -> None:
    engine = FaultyEngine(SPEC)
    events: list[Event] = []
    batch: list[AnyCommand] = [
        limit(1, BUY, 5, 99),               # inline path
        CancelOrder(1),                     # inline path
        limit(2, SELL, 3, 101),             # inline path
        AmendOrder(2, price=102),           # a handler: moves the order, then raises
        limit(3, BUY, 1, 98),               # never applied
    ]
    with pytest.raises(RuntimeError, match="planted bug"):
        engine.apply_batch(batch, events)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "OrderAccepted",
                             "OrderAmended"]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert engine.seq == 4  # the inline events before the handler are accounted for
    assert engine.counters().messages == 5
    assert engine.order(3) is None and engine.best_ask() == (102, 3)
    assert [e.seq for e in engine.apply(limit(4, BUY, 1, 97))] == [5]


def test_batch_raising_on_the_inline_path_keeps_the_sequence_of_its_events() -> None:
    engine = FaultyEngine(SPEC)
    events: list[Event] = []
    engine.apply_batch([limit(1, BUY, 5, 99)], events)
    with pytest.raises(RuntimeError):
        engine.apply_batch([limit(2, BUY, 1, 98), AmendOrder(1, quantity=9)], events)
    assert [e.seq for e in events] == [1, 2, 3]
    assert engine.seq == 3


# -- queries -----------------------------------------------------------------------------------

def test_queries_spread_mid_depth_and_counters() -> None:
    engine = book(limit(1, BUY, 5, 99), limit(2, BUY, 7, 98), limit(3, SELL, 2, 102),
                  limit(4, SELL, 3, 103), limit(5, SELL, 1, 104))
    assert engine.spread() == 3
    assert engine.mid() == Decimal("100.5")
    assert engine.depth(2) == ([(99, 5), (98, 7)], [(102, 2), (103, 3)])
    engine.apply(market(6, BUY, 4))
    engine.apply(CancelOrder(77))
    assert engine.counters() == Counters(messages=7, orders=6, rejections=1, trades=2, volume=4)
    view = engine.order(4)
    assert view is not None and view.remaining == 1 and view.quantity == 3
    assert Engine(SPEC).spread() is None and Engine(SPEC).mid() is None


def test_sequence_numbers_rise_by_one_per_event() -> None:
    engine = book(limit(1, SELL, 1, 100), limit(2, SELL, 1, 101))
    events = engine.apply(market(3, BUY, 5)) + engine.apply(CancelOrder(9))
    assert [e.seq for e in events] == [3, 4, 5, 6, 7]
    assert engine.seq == 7


def test_restore_rejects_inconsistent_snapshots() -> None:
    engine = book(limit(1, BUY, 5, 100), limit(2, SELL, 5, 101))
    snapshot = engine.snapshot()
    crossed = msgspec.structs.replace(
        snapshot, asks=[msgspec.structs.replace(snapshot.asks[0], price=99)])
    with pytest.raises(SnapshotError, match="crossed"):
        Engine.restore(crossed)
    duplicated = msgspec.structs.replace(snapshot, bids=snapshot.bids * 2)
    with pytest.raises(SnapshotError, match="duplicated"):
        Engine.restore(duplicated)


def test_apply_batch_equals_apply_one_by_one() -> None:
    commands: list[AnyCommand] = [limit(1, SELL, 5, 100), limit(2, SELL, 5, 101),
                                  market(3, BUY, 7), CancelOrder(2), limit(4, BUY, 3, 99)]
    one = Engine(SPEC)
    single = [event for command in commands for event in one.apply(command)]
    many = Engine(SPEC)
    assert many.apply_batch(commands) == single
    assert kinds(single).count("TradeExecuted") == 2
    assert many.counters() == one.counters()


@pytest.mark.parametrize("unit", ["0.01", "0.5", "0.50", "1", "10", "0.0001", "25", "1E+1",
                                  "0.00000001"])
@pytest.mark.parametrize("count", [0, 1, 7, 99, 100, 101, 12345, 10**12 + 3])
def test_format_units_matches_decimal_text(unit: str, count: int) -> None:
    from lobgw.book.instrument import format_units

    assert format_units(count, Decimal(unit)) == format(Decimal(unit) * count, "f")
