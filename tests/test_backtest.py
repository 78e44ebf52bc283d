"""Backtests on hand-made scenarios with known answers, each strategy, determinism, the CLI."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side, TimeInForce
from lobgw.orders import Fill
from lobgw.sim.backtest import (
    BacktestEngine,
    BacktestResult,
    BaseStrategy,
    BookView,
    MarketMaker,
    Twap,
    Vwap,
    run_backtest,
)
from lobgw.sim.records import Kind, MarketRecord, lobster_spec, read_lobster

SPEC = InstrumentSpec("T", Decimal(1), Decimal(1))
BUY, SELL = Side.BUY, Side.SELL
S = 1_000_000_000
DATA = Path(__file__).parent / "data"


def add(ts: int, order_id: int, side: Side, price: int, quantity: int) -> MarketRecord:
    return MarketRecord(0, ts, Kind.ADD, order_id, side, price, quantity)


def execute(ts: int, order_id: int, side: Side, price: int, quantity: int) -> MarketRecord:
    return MarketRecord(0, ts, Kind.EXECUTE, order_id, side, price, quantity)


class OneOrder(BaseStrategy):
    """Places one order when the book first has both sides."""

    name = "one"

    def __init__(self, side: Side, quantity: int, price: int) -> None:
        super().__init__()
        self.order = (side, quantity, price)
        self.fills_seen: list[Fill] = []

    def on_start(self, view: BookView) -> None:
        side, quantity, price = self.order
        self.place(side, quantity, price)

    def on_fill(self, fill: Fill) -> None:
        self.fills_seen.append(fill)


async def test_execution_behind_the_strategy_fills_the_strategy_first() -> None:
    strategy = OneOrder(BUY, 5, 100)
    records = [
        add(1, 1, BUY, 100, 10),      # H1, ahead of the strategy
        add(2, 9, SELL, 105, 10),     # both sides now: the strategy joins behind H1
        add(3, 2, BUY, 100, 10),      # H2, behind the strategy
        execute(4, 1, BUY, 100, 10),  # H1 was at the front: the strategy waits
        execute(5, 2, BUY, 100, 8),   # the aggressor had to get through the strategy first
        execute(6, 2, BUY, 100, 2),
    ]
    result = await run_backtest(records, SPEC, strategy)
    assert [(f.quantity, f.price, f.timestamp, f.liquidity) for f in strategy.fills_seen] == [
        (5, 100, 5, "MAKER")]
    assert result.filled_quantity == "5"
    assert result.translation.clipped == 0
    assert result.final_position == "5"


async def test_liquidity_the_strategy_took_is_clipped_later() -> None:
    strategy = OneOrder(BUY, 10, 105)
    records = [
        add(1, 1, BUY, 100, 10),
        add(2, 9, SELL, 105, 10),
        add(3, 3, BUY, 99, 1),
        execute(4, 9, SELL, 105, 4),  # H9 is gone: the strategy bought it at t=2
        add(5, 4, BUY, 98, 1),
    ]
    result = await run_backtest(records, SPEC, strategy)
    assert [(f.quantity, f.price, f.liquidity) for f in strategy.fills_seen] == [
        (10, 105, "TAKER")]
    assert result.translation.clipped == 1


async def test_latency_delays_the_order_in_data_time() -> None:
    strategy = OneOrder(BUY, 10, 105)
    records = [
        add(1_000, 1, BUY, 100, 10),
        add(2_000, 9, SELL, 105, 10),   # the strategy decides here...
        execute(2_500, 9, SELL, 105, 10),  # ...but the ask is gone before it arrives
        add(9_000, 10, SELL, 106, 5),
    ]
    result = await run_backtest(records, SPEC, strategy, latency_us=1)
    assert strategy.fills_seen == []
    assert result.fills == 0 and result.translation.clipped == 0


def steady_book(seconds: int) -> list[MarketRecord]:
    """Deep liquidity at 100/105 and a quiet row every second."""
    records = [add(0, 1, BUY, 100, 1_000_000), add(0, 2, SELL, 105, 1_000_000)]
    records += [add(second * S, 10 + second, BUY, 90, 1) for second in range(1, seconds + 1)]
    return records


async def test_twap_slices_evenly_and_finishes() -> None:
    twap = Twap(BUY, 100, start=0, end=100 * S, slices=10)
    result = await run_backtest(steady_book(120), SPEC, twap, target=100, side=BUY,
                                strategy_name="twap")
    assert result.fills == 10
    assert [f.quantity for f in result.fill_list] == ["10"] * 10
    assert [f.timestamp // S for f in result.fill_list] == list(range(0, 100, 10))
    assert result.filled_quantity == "100" and result.average_price == "105"
    assert result.fill_ratio == 1.0
    assert result.implementation_shortfall_bps == round((105 - 102.5) / 102.5 * 10_000, 4)
    assert result.details["shortfall_quantity"] == 0


async def test_twap_limit_price_protects_and_reports_the_shortfall() -> None:
    twap = Twap(BUY, 100, start=0, end=100 * S, slices=10, limit_price=104)
    result = await run_backtest(steady_book(120), SPEC, twap, target=100, side=BUY)
    assert result.fills == 0  # the ask never came down to the limit
    assert result.details["shortfall_quantity"] == 100
    assert result.fill_ratio == 0.0


def test_vwap_schedules_follow_the_profile() -> None:
    lookahead = Vwap(BUY, 100, 0, 40 * S, 4, lookahead_volumes=[10, 30, 40, 20])
    assert [lookahead.target(0, k) for k in range(4)] == [10, 40, 80, 100]
    given = Vwap(BUY, 100, 0, 40 * S, 4, profile=[1, 1, 2, 0])
    assert [given.target(0, k) for k in range(4)] == [25, 50, 100, 100]
    causal = Vwap(BUY, 100, 0, 40 * S, 4, estimate="causal")
    assert causal.target(0, 0) == 25  # nothing seen yet: even
    causal.on_market_trade(1 * S, 100, 90)   # a heavy first slice
    causal.on_market_trade(11 * S, 100, 10)  # a light second one
    # seen 90, 10; the next two are expected like the recent ones (0.5*10 + 0.5*90 = 50)
    assert causal.target(0, 2) == int(100 * (90 + 10 + 50) / (90 + 10 + 50 + 50))
    assert lookahead.describe()["profile"] == "look-ahead"


async def test_vwap_lookahead_run_trades_where_the_volume_is() -> None:
    records = steady_book(45)
    prints = [(5, 10), (15, 30), (25, 40), (35, 20)]
    records += [MarketRecord(0, second * S, Kind.PRINT, 0, SELL, 103, volume)
                for second, volume in prints]
    records.sort(key=lambda r: r.timestamp)
    vwap = Vwap(BUY, 100, 0, 40 * S, 4, lookahead_volumes=[10, 30, 40, 20])
    result = await run_backtest(records, SPEC, vwap, target=100, side=BUY)
    assert [f.quantity for f in result.fill_list] == ["10", "30", "40", "20"]
    assert result.market_vwap == "103"
    assert result.details["profile"] == "look-ahead"


async def test_market_maker_quotes_skews_and_respects_limits() -> None:
    records = [add(0, 1, BUY, 100, 10), add(0, 2, SELL, 110, 10)]
    # Sellers keep hitting whatever bid is best: the maker keeps buying until its limit.
    for step in range(1, 30):
        records.append(MarketRecord(0, step * S, Kind.ADD, 100 + step, SELL, 101, 3))
        records.append(MarketRecord(0, step * S + 1, Kind.DELETE, 100 + step, SELL, 101, 3))
    mm = MarketMaker(size=3, half_spread=2, skew=0.5, max_inventory=9, min_requote_ns=0)
    result = await run_backtest(records, SPEC, mm)
    assert result.fills > 0
    assert all(f.side is BUY and f.liquidity == "MAKER" for f in result.fill_list)
    assert 0 < mm.position <= 9
    assert mm.max_abs_inventory <= 9
    quotes = result.orders_sent
    assert quotes >= 2  # both sides quoted at the start
    # skew: once long, the bid sits lower than the first bid (reservation below the mid)
    assert mm.quotes[BUY] is None or mm.position < 9


def test_same_inputs_give_an_identical_result_file() -> None:
    def once() -> bytes:
        strategy = MarketMaker(size=20, half_spread=100, skew=1.0, max_inventory=200,
                               min_requote_ns=10_000_000)
        records = read_lobster(DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv")
        result = BacktestEngine(records, lobster_spec("AMZN"), strategy, latency_us=250).run()
        return msgspec.json.encode(result)

    first, second = once(), once()
    assert first == second
    assert msgspec.json.decode(first, type=BacktestResult).orders_sent > 0


def test_backtest_command_writes_results_and_a_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "result.json", tmp_path / "report.png"
    process = subprocess.run(
        [sys.executable, "-m", "lobgw", "backtest",
         "--data", str(DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"),
         "--format", "lobster", "--symbol", "AMZN", "--strategy", "twap",
         "--param", "side=SELL", "--param", "quantity=300", "--param", "slices=5",
         "--initial-book", str(DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_5_subset.csv"),
         "--latency-us", "100", "--out", str(out), "--plot", str(plot)],
        capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    result = msgspec.json.decode(out.read_bytes(), type=BacktestResult)
    assert result.strategy == "twap" and result.orders_sent == 5
    # one unit convention: ns since the epoch and ISO-8601 (LOBSTER's date from the file
    # name, 09:30 New York = 13:30 UTC in June), decimal strings in the symbol's units
    assert result.start_time is not None and result.start_time.startswith("2012-06-21T13:30:")
    first = result.fill_list[0]
    assert first.timestamp // S >= 1_340_251_200 + 34_200 and first.time.startswith("2012-06-21T")
    assert Decimal(first.price) > 100 and first.time.endswith("Z")
    assert result.pnl[0].time.startswith("2012-06-21T13:30:")
    assert "implementation shortfall (bps)" in process.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(
        [sys.executable, "-m", "lobgw", "backtest", "--data", str(out), "--format", "lobster",
         "--symbol", "X", "--strategy", "mm", "--param", "colour=red", "--out",
         str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown parameter(s) for mm: colour" in bad.stderr
    for latency, reason in (("-100", "-100 is negative"), ("abc", "'abc' is not a whole")):
        refused = subprocess.run(
            [sys.executable, "-m", "lobgw", "backtest", "--data", str(out), "--format",
             "lobster", "--symbol", "X", "--strategy", "mm", "--latency-us", latency,
             "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "--latency-us" in refused.stderr, refused.stderr
        assert reason in refused.stderr and "Traceback" not in refused.stderr


class Watcher(OneOrder):
    """OneOrder that also keeps every view it was given."""

    def __init__(self, side: Side, quantity: int, price: int) -> None:
        super().__init__(side, quantity, price)
        self.views: list[BookView] = []

    def on_market_data(self, view: BookView) -> None:
        self.views.append(view)


THROUGH = [
    add(1, 1, BUY, 100, 10),      # the touch: 100
    add(2, 9, SELL, 105, 10),     # both sides: the strategy bids 102, better than the touch
    execute(3, 1, BUY, 100, 8),   # a seller hits 100: it would have hit 102 first
    add(4, 8, SELL, 106, 1),      # one more row, to see the book after
]


async def test_a_bid_better_than_the_touch_is_filled_first_by_a_sell_at_the_touch() -> None:
    strategy = Watcher(BUY, 5, 102)
    result = await run_backtest(THROUGH, SPEC, strategy)
    assert [(f.quantity, f.price, f.timestamp) for f in strategy.fills_seen] == [(5, 102, 3)]
    assert result.through_fills == 1 and result.market_impact == "none"
    assert [(p.timestamp, p.position) for p in result.pnl if p.position == "5"][:1] == [
        (3, "5")]  # the PnL point of the fill carries the fill's time, not the row before
    # no phantom liquidity: the historical bid keeps the size the data gives it (10 - 8)
    assert (strategy.views[-1].bid, strategy.views[-1].bid_size) == (100, 2)
    # the market's VWAP counts the whole execution; with the strategy's fill, separately
    assert result.market_vwap == "100"
    assert result.market_vwap_with_strategy == "100.7692"  # (100 x 8 + 102 x 5) / 13


async def test_the_queue_impact_model_takes_the_fill_out_of_the_historical_order() -> None:
    strategy = Watcher(BUY, 5, 102)
    result = await run_backtest(THROUGH, SPEC, strategy, impact="queue")
    assert [(f.quantity, f.price) for f in strategy.fills_seen] == [(5, 102)]
    assert result.market_impact == "queue"
    # the historical order got 8 - 5: 7 stay on the bid where the data has 2
    assert (strategy.views[-1].bid, strategy.views[-1].bid_size) == (100, 7)
    assert result.market_vwap == "100"  # still every share the data shows executed


async def test_the_strategy_sees_the_market_without_its_own_orders() -> None:
    strategy = Watcher(BUY, 5, 102)
    records = [add(1, 1, BUY, 100, 10), add(2, 9, SELL, 105, 10), add(3, 7, BUY, 99, 1),
               add(4, 6, BUY, 102, 4)]
    await run_backtest(records, SPEC, strategy)
    # after its bid at 102 rests (row 3), the market's best bid is still 100
    assert [(v.bid, v.bid_size) for v in strategy.views] == [(100, 10), (100, 10), (102, 4)]
    assert strategy.views[-1].mid == (102 + 105) / 2


async def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_us: -100 is negative"):
        await run_backtest(THROUGH, SPEC, Watcher(BUY, 5, 102), latency_us=-100)


@pytest.mark.parametrize(("strategy", "param", "message"), [
    ("twap", "quantity=abc", "quantity='abc': not a decimal number"),
    ("twap", "slices=2.5", "slices='2.5': not a whole number"),
    ("twap", "slices=0", "slices=0: must be at least 1"),
    ("twap", "side=HOLD", "side='HOLD': not one of BUY, SELL"),
    ("twap", "start=999999", "start=999999: at or after the data's end (the data spans 0 to"),
    ("vwap", "profile=lookahed", "profile=lookahed: not u-shape, causal, history, lookahead"),
    ("mm", "half_spread=x", "half_spread='x': not a whole number"),
    ("mm", "reference=last", "reference='last': not one of mid, micro"),
    ("mm", "size=NaN", "size='NaN': not a decimal number"),
])
def test_bad_parameters_name_the_parameter_value_and_what_is_allowed(
        strategy: str, param: str, message: str, tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "lobgw", "backtest",
         "--data", str(DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"),
         "--format", "lobster", "--symbol", "AMZN", "--strategy", strategy,
         "--param", param, "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=60)
    assert process.returncode == 2, process.stderr
    assert message in process.stderr and "Traceback" not in process.stderr, process.stderr


def test_markouts_per_fill_and_per_share() -> None:
    from lobgw.orders.tracker import Liquidity
    from lobgw.sim.backtest.results import markout

    def fill(ts: int, quantity: int, price: int) -> Fill:
        return Fill(order_id=1, account="strategy", side=BUY, price=price, quantity=quantity,
                    liquidity=Liquidity.MAKER, remaining=0, timestamp=ts, seq=ts)

    mids = [(0, 100.0), (1 * S, 101.0), (2 * S, 101.0)]
    fills = [fill(0, 1, 100), fill(1 * S, 3, 101)]  # after 1 s: +100 bps and 0 bps
    assert markout(mids, fills, 1) == pytest.approx(50.0)            # (100 + 0) / 2
    assert markout(mids, fills, 1, per_share=True) == pytest.approx(25.0)  # 100 x 1 / 4


async def test_maker_rebates_and_taker_fees_in_net_pnl() -> None:
    from lobgw.book import FeeSchedule

    schedule = FeeSchedule(maker_bps=Decimal("-2"), taker_bps=Decimal("5"),
                           maker_per_unit=Decimal("0.01"))
    maker = await run_backtest(THROUGH, SPEC, Watcher(BUY, 5, 102), fees=schedule)
    # 5 bought at 102 as maker: -2 bps of 510 = -0.102, plus 5 x 0.01 = 0.05
    assert maker.fees_paid == "-0.0520"
    assert Decimal(maker.net_mark_to_mid_pnl) == Decimal(maker.mark_to_mid_pnl) + Decimal("0.052")
    assert Decimal(maker.net_realized_pnl) == Decimal(maker.realized_pnl) + Decimal("0.052")
    taker = await run_backtest(THROUGH, SPEC, Watcher(SELL, 2, 100), fees=schedule)
    assert [(f.price, f.quantity, f.liquidity) for f in taker.fill_list] == [
        ("100", "2", "TAKER")]
    assert taker.fees_paid == "0.1000"  # 5 bps of 200
    untaxed = await run_backtest(THROUGH, SPEC, Watcher(SELL, 2, 100))
    assert (untaxed.fees_paid, untaxed.fee_schedule) == ("0.0000", None)
    assert untaxed.net_mark_to_mid_pnl == untaxed.mark_to_mid_pnl


def test_fees_from_the_command_line_or_the_config(tmp_path: Path) -> None:
    data = DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"
    base = [sys.executable, "-m", "lobgw", "backtest", "--data", str(data), "--format",
            "lobster", "--symbol", "AMZN", "--strategy", "mm"]
    config = tmp_path / "config.toml"
    config.write_text('[[symbols]]\nsymbol = "AMZN"\ntick_size = "0.0001"\nlot_size = "1"\n\n'
                      '[[fees]]\nsymbol = "AMZN"\nmaker_bps = "-0.2"\ntaker_bps = "0.3"\n')
    results = {}
    for label, extra in (("config", ["--config", str(config)]),
                         ("flag", ["--config", str(config), "--fees", "maker_bps=-1"])):
        out = tmp_path / f"{label}.json"
        done = subprocess.run([*base, *extra, "--out", str(out)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        results[label] = msgspec.json.decode(out.read_bytes(), type=BacktestResult)
    assert results["config"].fee_schedule is not None
    assert results["config"].fee_schedule.taker_bps == Decimal("0.3")
    assert results["flag"].fee_schedule is not None
    assert results["flag"].fee_schedule.maker_bps == Decimal("-1")
    assert results["flag"].fills > 0
    assert Decimal(results["flag"].fees_paid) < 0  # a market maker earns rebates
    bad = subprocess.run([*base, "--fees", "maker=1", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--fees" in bad.stderr and "maker_bps" in bad.stderr


def test_the_default_vwap_profile_is_the_documented_u_shape() -> None:
    from lobgw.sim.backtest.strategies import u_shape

    assert (u_shape(0), u_shape(0.5), u_shape(1)) == (4, 1, 4)
    vwap = Vwap(BUY, 100, 0, 40 * S, 4, session=(0, 40 * S))
    # slice midpoints at 1/8, 3/8, 5/8, 7/8 of the session: weights 2.6875, 1.1875, 1.1875,
    # 2.6875 (total 7.75)
    assert [vwap.target(0, k) for k in range(4)] == [34, 50, 65, 100]
    assert vwap.describe()["profile"] == "u-shape"


async def test_a_schedule_catches_up_by_the_end_when_the_data_goes_quiet() -> None:
    records = [add(0, 1, BUY, 100, 1_000_000), add(0, 2, SELL, 105, 1_000_000)]
    records += [add(second * S, 10 + second, BUY, 90, 1) for second in range(1, 11)]
    records += [add(second * S, 10 + second, BUY, 90, 1) for second in range(100, 103)]
    twap = Twap(BUY, 100, start=0, end=100 * S, slices=10)
    result = await run_backtest(records, SPEC, twap, target=100, side=BUY)
    # slices 0 and 1 traded 10 each; nothing came between 10 s and 100 s; at the end the
    # working order is cancelled and, once that is confirmed (the next row, so nothing can
    # fill twice), the remaining 80 go in one immediate-or-cancel order at the far touch
    assert [(f.quantity, f.timestamp // S) for f in result.fill_list] == [
        ("10", 0), ("10", 10), ("80", 101)]
    assert result.details["catch_up_quantity"] == 80
    assert result.details["finished_on_time"] is True
    assert result.details["incomplete_reason"] is None
    no_catch_up = await run_backtest(records, SPEC, Twap(BUY, 100, 0, 100 * S, 10,
                                                         catch_up=False), target=100, side=BUY)
    assert no_catch_up.details["shortfall_quantity"] == 80
    assert no_catch_up.details["incomplete_reason"] == "no liquidity"


async def test_the_participation_cap_limits_and_is_reported() -> None:
    records = steady_book(120)
    records += [MarketRecord(0, second * S + 1, Kind.PRINT, 0, SELL, 103, 1)
                for second in range(0, 100)]
    records.sort(key=lambda r: r.timestamp)
    twap = Twap(BUY, 100, start=0, end=100 * S, slices=10, max_participation=0.5)
    result = await run_backtest(records, SPEC, twap, target=100, side=BUY)
    filled = int(result.filled_quantity)
    assert 0 < filled <= 50  # half of the 100 the market traded in the window, at most
    assert result.details["incomplete_reason"] == "participation cap"
    assert result.details["shortfall_quantity"] == 100 - filled


class Clocked(OneOrder):
    """OneOrder that notes when (in data time) it saw each view and learnt of each fill."""

    def __init__(self, side: Side, quantity: int, price: int) -> None:
        super().__init__(side, quantity, price)
        self.seen: list[tuple[int, int]] = []     # (when seen, the view's data time)
        self.learnt: list[tuple[int, int, int]] = []  # (when, fill time, position then)

    def on_market_data(self, view: BookView) -> None:
        self.seen.append((self.now, view.timestamp))

    def on_fill(self, fill: Fill) -> None:
        super().on_fill(fill)
        self.learnt.append((self.now, fill.timestamp, self.position))


LATE = [add(0, 1, BUY, 100, 10), add(1 * S, 9, SELL, 105, 10), add(2 * S, 2, BUY, 99, 1),
        add(3 * S, 3, BUY, 98, 1), add(4 * S, 4, BUY, 97, 1)]


async def test_feed_latency_delays_what_the_strategy_sees() -> None:
    strategy = Clocked(SELL, 2, 100)  # crosses the bid when it acts
    result = await run_backtest(LATE, SPEC, strategy, feed_latency_us=1_500_000)
    half = S // 2
    assert strategy.seen[:3] == [(2 * S + half, 1 * S), (3 * S + half, 2 * S),
                                 (4 * S + half, 3 * S)]
    # it decided on the first view at 2.5 s, so it trades then, not at 1 s
    assert [(f.timestamp, f.price) for f in result.fill_list] == [(2 * S + half, "100")]
    assert result.feed_latency_us == 1_500_000


async def test_response_latency_delays_fills_reaching_the_strategy() -> None:
    strategy = Clocked(SELL, 2, 100)
    result = await run_backtest(LATE, SPEC, strategy, response_latency_us=2_000_000)
    (fill,) = result.fill_list
    assert fill.timestamp == 1 * S  # the book traded at once
    assert strategy.learnt == [(3 * S, 1 * S, -2)]  # the strategy knew 2 s later
    assert result.final_position == "-2" and result.response_latency_us == 2_000_000


def test_feed_latency_starts_from_databento_ts_recv(tmp_path: Path) -> None:
    path = tmp_path / "mbo.csv"
    rows = [("00.000300000", "00.000000000", "A", "B", "100.00", "10", "1"),
            ("00.000900000", "00.000500000", "A", "A", "100.05", "10", "2"),
            ("01.000200000", "01.000000000", "A", "B", "99.99", "1", "3")]
    path.write_text(
        "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,"
        "order_id,flags,ts_in_delta,sequence,symbol\n" + "".join(
            f"2025-09-24 19:30:{recv}+00:00,2025-09-24 19:30:{event}+00:00,160,1,1,{action},"
            f"{side},{price},{size},0,{oid},128,0,{oid},T\n"
            for recv, event, action, side, price, size, oid in rows))
    spec = InstrumentSpec("T", Decimal("0.01"), Decimal(1))
    strategy = Clocked(BUY, 1, 9000)
    BacktestEngine(path, spec, strategy, format="databento-mbo",
                   feed_latency_us=100).run()
    base = 1758742200 * S  # 2025-09-24 19:30:00 UTC
    assert strategy.seen == [(base + 900_000 + 100_000, base + 500_000),
                             (base + S + 200_000 + 100_000, base + S)]


def test_a_latency_table_interpolates_and_refuses_bad_rows(tmp_path: Path) -> None:
    from lobgw.sim.backtest.latency import LatencyTable, read_latency_file

    table = LatencyTable([(2 * S, 3_000, 30), (0, 1_000, 10)])
    assert [table.at(t) for t in (-S, 0, S, 2 * S, 9 * S)] == [
        (1_000, 10), (1_000, 10), (2_000, 20), (3_000, 30), (3_000, 30)]
    path = tmp_path / "lat.csv"
    path.write_text("time,entry_us,response_us\n0,500,50\n2.5,1500,150\n")
    assert read_latency_file(path).at(1_250_000_000) == (1_000_000, 100_000)
    for body, reason in (("time,entry,response\n", "the header must be"),
                         ("time,entry_us,response_us\n0,-5,1\n", ":2: entry_us -5 is negative"),
                         ("time,entry_us,response_us\n0,1,x\n", ":2: response_us 'x' is not"),
                         ("time,entry_us,response_us\nnoon,1,1\n", ":2: time 'noon' is neither")):
        path.write_text(body)
        with pytest.raises(ValueError, match=reason):
            read_latency_file(path)


async def test_entry_latency_follows_the_table() -> None:
    from lobgw.sim.backtest.latency import LatencyTable

    strategy = Clocked(SELL, 2, 100)
    table = LatencyTable([(0, S // 2, 0), (2 * S, 3 * S // 2, 0)])  # 1 s at t = 1 s
    result = await run_backtest(LATE, SPEC, strategy, latency_table=table)
    assert [f.timestamp for f in result.fill_list] == [2 * S]  # decided at 1 s, +1 s


def test_vwap_profile_from_other_days_at_the_same_time_of_day(tmp_path: Path) -> None:
    from lobgw.sim.backtest import build_strategy

    def day(name: str, rows: list[str]) -> Path:
        path = tmp_path / name
        path.write_text("".join(f"{row}\n" for row in rows))
        return path

    # time, type (1 add, 4 execute), order id, size, price x 10000, direction (1 buy)
    today = day("T_2012-06-22_message_1.csv", ["34200.0,1,1,100,1000000,1",
                                               "34200.0,1,2,100,1010000,-1",
                                               "34203.0,1,3,1,990000,1"])
    monday = day("T_2012-06-18_message_1.csv", ["34200.1,1,1,100,1000000,1",
                                                "34200.5,4,1,30,1000000,1",
                                                "34201.5,4,1,10,1000000,1"])
    tuesday = day("T_2012-06-19_message_1.csv", ["34200.1,1,1,100,1000000,1",
                                                 "34200.2,4,1,10,1000000,1",
                                                 "34201.7,4,1,50,1000000,1"])
    spec = lobster_spec("T")
    vwap, _, _ = build_strategy("vwap", {"side": "BUY", "quantity": "100", "slices": "2",
                                         "end": "2"}, spec, "lobster", today,
                                [monday, tuesday])
    assert isinstance(vwap, Vwap) and vwap.profile == [40, 60]  # 30 + 10, then 10 + 50
    assert vwap.describe()["profile"] == "history (2 day(s))"
    assert [vwap.target(0, k) for k in range(2)] == [40, 100]
    with pytest.raises(ValueError, match=r"history .*missing\.csv"):
        build_strategy("vwap", {"slices": "2", "end": "2"}, spec, "lobster", today,
                       [tmp_path / "missing.csv"])


QUEUE_ROWS = [  # message rows (only the trades matter on aggregated data) and the vendor's book
    (add(1 * S, 1, BUY, 100, 10), [(BUY, 100, 10)]),
    (add(2 * S, 2, SELL, 105, 10), [(BUY, 100, 10), (SELL, 105, 10)]),  # the strategy joins
    (add(3 * S, 3, BUY, 100, 10), [(BUY, 100, 20), (SELL, 105, 10)]),   # 10 join behind it
    (add(4 * S, 4, BUY, 99, 1), [(BUY, 100, 12), (SELL, 105, 10)]),     # 8 cancelled
    (execute(5 * S, 1, BUY, 100, 8), [(BUY, 100, 4), (SELL, 105, 10)]),  # a trade of 8
    (execute(6 * S, 1, BUY, 100, 3), [(BUY, 100, 1), (SELL, 105, 10)]),  # a trade of 3
]


async def test_queue_models_on_aggregated_levels() -> None:
    from lobgw.sim.backtest.levels import QueueModel

    records = [record for record, _ in QUEUE_ROWS]
    levels = [row for _, row in QUEUE_ROWS]
    fills = {}
    for kind in ("risk-averse", "probabilistic"):
        strategy = Watcher(BUY, 5, 100)
        await run_backtest(records, SPEC, strategy, levels=levels,
                           queue_model=QueueModel(kind, power=2))
        fills[kind] = [(f.quantity, f.timestamp // S) for f in strategy.fills_seen]
        # the book is the vendor's on every row (the strategy's own bid left out)
        assert [(v.bid, v.bid_size, v.ask) for v in strategy.views] == [
            (100, size, 105) for size in (10, 20, 12, 4, 1)]
    # risk-averse: 10 ahead; cancels never ahead; the trade of 8 leaves 2 ahead, the trade
    # of 3 reaches 1 lot
    assert fills["risk-averse"] == [(1, 6)]
    # probabilistic (x^2): the 8 cancelled split by front 10 / back 10: 4 ahead of it, so 6
    # ahead; the trade of 8 reaches 2, the trade of 3 the other 3
    assert fills["probabilistic"] == [(2, 5), (3, 6)]


async def test_a_level_book_replay_is_the_vendors_book_on_every_row() -> None:
    from lobgw.sim.records import read_lobster_levels

    class Recorder(BaseStrategy):
        def __init__(self) -> None:
            super().__init__()
            self.views: list[BookView] = []

        def on_market_data(self, view: BookView) -> None:
            self.views.append(view)

    spec = lobster_spec("AMZN")
    messages = DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"
    book = DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_5_subset.csv"
    recorder = Recorder()
    await run_backtest(read_lobster(messages, spec), spec, recorder,
                       levels=read_lobster_levels(book, spec))
    expected = []
    for levels in read_lobster_levels(book, spec):
        bids = [(p, q) for side, p, q in levels if side is BUY]
        asks = [(p, q) for side, p, q in levels if side is SELL]
        expected.append((max(bids)[0], max(bids)[1], min(asks)[0], min(asks)[1]))
    seen = [(v.bid, v.bid_size, v.ask, v.ask_size) for v in recorder.views]
    assert len(seen) == len(expected) == 1000
    assert seen == expected  # reset to the vendor's levels: right on every row


def test_backtest_command_on_aggregated_levels(tmp_path: Path) -> None:
    data = DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"
    book = DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_5_subset.csv"
    base = [sys.executable, "-m", "lobgw", "backtest", "--data", str(data), "--format",
            "lobster", "--symbol", "AMZN", "--strategy", "mm", "--book-levels", str(book)]
    fills = {}
    for model in ("risk-averse", "probabilistic"):
        out = tmp_path / f"{model}.json"
        done = subprocess.run([*base, "--queue-model", model, "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        fills[model] = msgspec.json.decode(out.read_bytes(), type=BacktestResult).fills
    assert 0 < fills["risk-averse"] <= fills["probabilistic"]  # cancels can only help it
    short = tmp_path / "short.csv"
    short.write_text("".join(book.read_text().splitlines(keepends=True)[:10]))
    done = subprocess.run([*base[:-1], str(short), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "the book levels end before the messages" in done.stderr
    assert "Traceback" not in done.stderr


def write_mbp10(path: Path, rows: list[tuple[str, str, str, str, list[tuple[str, int]],
                                              list[tuple[str, int]]]]) -> None:
    """A Databento MBP-10 CSV: (ts second, action, side, price, size) and bid/ask levels."""
    head = ["ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side",
            "depth", "price", "size", "flags", "ts_in_delta", "sequence"]
    for n in range(10):
        head += [f"bid_px_{n:02d}", f"ask_px_{n:02d}", f"bid_sz_{n:02d}", f"ask_sz_{n:02d}",
                 f"bid_ct_{n:02d}", f"ask_ct_{n:02d}"]
    lines = [",".join([*head, "symbol"])]
    for second, action, side, price_size, bids, asks in rows:
        price, size = price_size.split("x")
        stamp = f"2025-09-24 19:30:{second}.000000000+00:00"
        fields = [stamp, stamp, "10", "1", "1", action, side, "0", price, size, "0", "0", "0"]
        for n in range(10):
            bid = bids[n] if n < len(bids) else ("", 0)
            ask = asks[n] if n < len(asks) else ("", 0)
            fields += [bid[0], ask[0], str(bid[1]), str(ask[1]), "1", "1"]
        lines.append(",".join([*fields, "T"]))
    path.write_text("\n".join(lines) + "\n")


async def test_databento_mbp10_levels_and_a_queue_model(tmp_path: Path) -> None:
    from lobgw.sim.backtest.levels import QueueModel, split_levels
    from lobgw.sim.records import read_databento_mbp

    path = tmp_path / "mbp.csv"
    write_mbp10(path, [
        ("00", "A", "B", "100.00x10", [("100.00", 10)], [("100.05", 10)]),
        ("01", "A", "B", "100.00x10", [("100.00", 20)], [("100.05", 10)]),
        ("02", "T", "A", "100.00x12", [("100.00", 8)], [("100.05", 10)]),  # sell aggressor
    ])
    spec = InstrumentSpec("T", Decimal("0.01"), Decimal(1))
    records, levels = split_levels(read_databento_mbp(path, spec))
    strategy = Watcher(BUY, 5, 10_000)  # joins behind the 10 at 100.00
    result = await run_backtest(records, spec, strategy, levels=levels,
                                queue_model=QueueModel("risk-averse"))
    assert [(v.bid, v.bid_size) for v in strategy.views] == [(10_000, 10), (10_000, 20),
                                                             (10_000, 8)]
    # the trade of 12 went through the 10 ahead of it: 2 reach the strategy
    assert [(f.quantity, f.price) for f in strategy.fills_seen] == [(2, 10_000)]
    assert result.market_vwap == "100"


def test_backtest_command_on_databento_mbp10(tmp_path: Path) -> None:
    path = tmp_path / "mbp.csv"
    rows = [(f"{second:02d}", "A", "B", "100.00x10", [("100.00", 10), ("99.99", 5)],
             [("100.05", 10)]) for second in range(0, 30)]
    rows += [(f"{second:02d}", "T", "B", "100.05x3", [("100.00", 10), ("99.99", 5)],
              [("100.05", 7)]) for second in range(30, 40)]
    write_mbp10(path, rows)
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "lobgw", "backtest", "--data", str(path), "--format",
         "databento-mbp10", "--symbol", "T", "--tick-size", "0.01", "--strategy", "twap",
         "--param", "side=SELL", "--param", "quantity=6", "--param", "slices=2",
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = msgspec.json.decode(out.read_bytes(), type=BacktestResult)
    assert result.filled_quantity == "6" and result.start_time is not None
    assert result.start_time.startswith("2025-09-24T19:30:00")


async def test_a_crossing_historical_add_keeps_its_size_without_impact() -> None:
    records = [add(1, 1, BUY, 100, 10), add(2, 9, SELL, 105, 10),
               add(3, 2, SELL, 101, 10),   # a seller at 101 meets the strategy's bid at 102
               add(4, 8, BUY, 99, 1)]
    fills = {}
    for impact in ("none", "queue"):
        strategy = Watcher(BUY, 5, 102)
        await run_backtest(records, SPEC, strategy, impact=impact)
        fills[impact] = [(f.quantity, f.price, f.liquidity) for f in strategy.fills_seen]
        last = strategy.views[-1]
        expected = 10 if impact == "none" else 5  # the data's size, or what is left of it
        assert (last.ask, last.ask_size) == (101, expected), impact
    assert fills["none"] == fills["queue"] == [(5, 102, "MAKER")]


def reduce(ts: int, order_id: int, side: Side, price: int, quantity: int) -> MarketRecord:
    return MarketRecord(0, ts, Kind.REDUCE, order_id, side, price, quantity)


class CancelAt(Watcher):
    """Watcher that cancels its order once data time reaches `at`."""

    def __init__(self, side: Side, quantity: int, price: int, at: int) -> None:
        super().__init__(side, quantity, price)
        self.at = at

    def on_market_data(self, view: BookView) -> None:
        super().on_market_data(view)
        if view.timestamp >= self.at and self.open_orders:
            self.cancel_all()


async def test_an_add_the_strategy_takes_in_full_stays_in_the_market_without_impact() -> None:
    records = [add(1, 1, BUY, 100, 10), add(2, 9, SELL, 105, 10),
               add(3, 2, SELL, 101, 4),     # all 4 trade with the strategy's bid at 102
               reduce(4, 2, SELL, 101, 1),  # the data's order lives on: 3 left
               execute(5, 2, SELL, 101, 1),  # a buyer lifts it: 2 left, a market trade
               add(6, 7, BUY, 99, 1),       # the strategy cancels here (its bid leaves)
               add(7, 6, BUY, 98, 1),       # the data's order is back in the book
               execute(8, 2, SELL, 101, 2),  # and trades there as the data says
               add(9, 5, BUY, 97, 1)]
    strategy = CancelAt(BUY, 10, 102, at=6)
    result = await run_backtest(records, SPEC, strategy)
    assert [(f.quantity, f.price, f.liquidity) for f in strategy.fills_seen] == [
        (4, 102, "MAKER")]
    asks = [(v.timestamp, v.ask, v.ask_size) for v in strategy.views]
    assert asks == [(2, 105, 10), (3, 101, 4), (4, 101, 3), (5, 101, 2), (6, 101, 2),
                    (7, 101, 2), (8, 105, 10), (9, 105, 10)]
    assert result.translation.clipped == 0
    assert result.market_vwap == "101"  # the two lifts of the data's order: 1 + 2 at 101
    # under the queue model the strategy displaced the order: the data's later events on it
    # find nothing left
    queued = CancelAt(BUY, 10, 102, at=6)
    result = await run_backtest(records, SPEC, queued, impact="queue")
    assert [(v.ask, v.ask_size) for v in queued.views][1:3] == [(105, 10), (105, 10)]
    assert result.translation.clipped == 3


async def test_an_add_that_fills_the_strategy_exactly_goes_straight_back_into_the_book() -> None:
    records = [add(1, 1, BUY, 100, 10), add(2, 9, SELL, 105, 10),
               add(3, 2, SELL, 101, 5),     # fills the strategy's 5 at 102, and is all taken
               execute(4, 2, SELL, 101, 5),  # the data's order trades in the book
               add(5, 7, BUY, 99, 1)]
    strategy = Watcher(BUY, 5, 102)
    result = await run_backtest(records, SPEC, strategy)
    assert [(f.quantity, f.price) for f in strategy.fills_seen] == [(5, 102)]
    assert [(v.ask, v.ask_size) for v in strategy.views] == [(105, 10), (101, 5), (105, 10),
                                                             (105, 10)]
    assert result.translation.clipped == 0 and result.market_vwap == "101"


class EveryType(BaseStrategy):
    """On start: a GTD bid that expires in data time, a sell stop below the market, an
    iceberg offer; records what its orders went through."""

    name = "every-type"

    def __init__(self) -> None:
        super().__init__()
        self.fills_seen: list[Fill] = []

    def on_start(self, view: BookView) -> None:
        self.gtd = self.place(BUY, 3, 98, TimeInForce.GTD, expire_time=view.timestamp + 2 * S)
        self.stop = self.place(SELL, 4, stop_price=99)
        self.iceberg = self.place(SELL, 5, 103, display_quantity=1)

    def on_fill(self, fill: Fill) -> None:
        self.fills_seen.append(fill)


async def test_a_strategy_places_stops_icebergs_and_gtd_orders_in_data_time() -> None:
    strategy = EveryType()
    records = [
        add(1, 1, BUY, 100, 10),
        add(2, 2, SELL, 104, 10),     # both sides: the strategy places its three orders
        add(3, 3, BUY, 99, 5),
        execute(4, 3, BUY, 99, 1),    # a trade at 99 releases the stop: it sells into 100
        add(S, 4, BUY, 90, 1),
        add(3 * S, 5, BUY, 90, 1),    # past the GTD's end: it expired at this row
    ]
    result = await run_backtest(records, SPEC, strategy)
    assert [(f.order_id, f.quantity, f.price, f.liquidity) for f in strategy.fills_seen] == [
        (strategy.stop, 4, 100, "TAKER")]
    assert result.final_position == "-4"
    assert strategy.gtd not in strategy.open_orders  # expired in data time
    iceberg = strategy.open_orders[strategy.iceberg]
    assert (iceberg.remaining, iceberg.display_quantity) == (5, 1)
    assert strategy.stop not in strategy.open_orders


class QuotesKept(MarketMaker):
    def on_end(self, view: BookView) -> None:
        """Leave the quotes in the book, to look at them."""


async def test_the_market_maker_quotes_icebergs() -> None:
    strategy = QuotesKept(size=5, half_spread=1, skew=0, max_inventory=50,
                          min_requote_ns=0, display=2)
    records = [add(1, 1, BUY, 100, 10), add(2, 2, SELL, 110, 10),
               execute(3, 2, SELL, 110, 1)]
    await run_backtest(records, SPEC, strategy)
    placed = list(strategy.orders.open.values())
    assert strategy.orders_sent >= 2 and placed
    assert all(order.display_quantity == 2 for order in placed)
    with pytest.raises(ValueError, match="display"):
        MarketMaker(size=5, half_spread=1, skew=0, max_inventory=50, min_requote_ns=0,
                    display=6)
