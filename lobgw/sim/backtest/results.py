"""What a backtest measured, in decimal units, and the arithmetic of its series.

Same inputs, same result: the result JSON is byte-identical between runs.
"""

from __future__ import annotations

import bisect
import datetime
import math
from collections.abc import Sequence
from decimal import Decimal

import msgspec

from lobgw.book.instrument import FeeSchedule, InstrumentSpec
from lobgw.book.types import Side
from lobgw.orders import Fill
from lobgw.sim.translate import TranslationStats

NS = 1_000_000_000


class PnlPoint(msgspec.Struct, frozen=True, array_like=True):
    """[timestamp, position, realized, mark_to_mid, time] (money in price units; the
    timestamp in ns since the epoch, `time` the same as ISO-8601 UTC)."""

    timestamp: int
    position: str
    realized: str
    mark_to_mid: str
    time: str = ""


class FillReport(msgspec.Struct, frozen=True):
    """One strategy fill in the result's units: decimal strings in the symbol's units, the
    time as ns since the epoch and as ISO-8601 UTC."""

    order_id: int
    side: Side
    price: str
    quantity: str
    liquidity: str
    timestamp: int
    time: str


def iso_time(ns: int) -> str:
    """ns since the epoch as ISO-8601 UTC with all nine digits (`...T13:30:00.000000001Z`)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


class BacktestResult(msgspec.Struct):
    """Everything a backtest measured, in decimal units. Same inputs, same result."""

    strategy: str
    symbol: str
    parameters: dict[str, str]
    latency_us: int
    response_latency_us: int
    feed_latency_us: int
    start: int | None
    """ns since the epoch (LOBSTER: from the date in the file name, New York time)."""
    end: int | None
    start_time: str | None
    end_time: str | None
    fills: int
    filled_quantity: str
    average_price: str | None
    arrival_price: str | None
    implementation_shortfall_bps: float | None
    market_vwap: str | None
    """Of every execution the data shows in the window (those the strategy's fills came out
    of included), without the strategy's own fills."""
    market_vwap_with_strategy: str | None
    """The same with the strategy's fills added: the window's VWAP as the strategy moved it."""
    slippage_vs_vwap_bps: float | None
    market_impact: str
    """The market-impact model: `none` (the book stays the data's) or `queue`."""
    through_fills: int
    """Strategy fills by executions at a worse price than the strategy's order (price
    priority: the aggressor reached the better-priced strategy order first)."""
    fill_ratio: float | None
    orders_sent: int
    amends_sent: int
    cancels_sent: int
    rejections: dict[str, int]
    final_position: str
    realized_pnl: str
    mark_to_mid_pnl: str
    """Both gross: before fees."""
    fees_paid: str
    """Fees the fills cost under `fee_schedule` (negative: rebates received on balance)."""
    net_realized_pnl: str
    net_mark_to_mid_pnl: str
    fee_schedule: FeeSchedule | None
    max_drawdown: str
    markouts_bps: dict[str, float | None]
    """Per fill, from the market-only mid."""
    markouts_per_share_bps: dict[str, float | None]
    """The same weighted by each fill's quantity."""
    pnl: list[PnlPoint]
    fill_list: list[FillReport]
    translation: TranslationStats
    details: dict[str, object]

    def table(self) -> str:
        """A human-readable summary."""
        def show(value: object) -> str:
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:,.2f}"
            return str(value)

        rows = [
            ("strategy", self.strategy), ("symbol", self.symbol),
            ("fills", self.fills), ("filled quantity", self.filled_quantity),
            ("average price", self.average_price), ("arrival price", self.arrival_price),
            ("implementation shortfall (bps)", self.implementation_shortfall_bps),
            ("market VWAP", self.market_vwap),
            ("market VWAP with the strategy", self.market_vwap_with_strategy),
            ("market impact model", self.market_impact),
            ("through-fills", self.through_fills),
            ("slippage vs VWAP (bps)", self.slippage_vs_vwap_bps),
            ("fill ratio", self.fill_ratio),
            ("orders / amends / cancels",
             f"{self.orders_sent} / {self.amends_sent} / {self.cancels_sent}"),
            ("final position", self.final_position),
            ("realized PnL", self.realized_pnl), ("mark-to-mid PnL", self.mark_to_mid_pnl),
            ("fees paid", self.fees_paid), ("net realized PnL", self.net_realized_pnl),
            ("net mark-to-mid PnL", self.net_mark_to_mid_pnl),
            ("max drawdown", self.max_drawdown),
        ]
        rows += [(f"markout {h} (bps)", v) for h, v in self.markouts_bps.items()]
        rows += [(f"markout {h} per share (bps)", v)
                 for h, v in self.markouts_per_share_bps.items()]
        rows += [(key, value) for key, value in self.details.items()]
        rows += [("clipped historical events", self.translation.clipped)]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {show(value)}" for name, value in rows)


Sample = tuple[int, int, int, float | None]
"""(timestamp, position in lots, cash in tick-lots, mid in ticks)."""


def pnl_series(samples: Sequence[Sample], fills: Sequence[Fill], spec: InstrumentSpec,
               epoch_offset: int = 0) -> tuple[list[PnlPoint], float, float]:
    """Realized (average cost) and mark-to-mid PnL at each sample; max drawdown of the latter.
    Points are stamped in ns since the epoch (data time + `epoch_offset`)."""
    money = spec.tick_size * spec.lot_size
    fills = sorted(fills, key=lambda f: f.timestamp)
    position = 0
    cost = 0.0  # average-cost basis of the open position, in tick-lots
    realized = 0.0
    points: list[PnlPoint] = []
    peak = -math.inf
    drawdown = 0.0
    index = 0
    last_mid: float | None = None
    for ts, held, cash, mid in samples:
        last_mid = mid if mid is not None else last_mid
        while index < len(fills) and fills[index].timestamp <= ts:
            fill = fills[index]
            index += 1
            signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
            if position == 0 or (position > 0) == (signed > 0):
                cost += signed * fill.price
                position += signed
                continue
            closing = min(abs(signed), abs(position))
            average_cost = cost / position
            realized += closing * (fill.price - average_cost) * (1 if position > 0 else -1)
            cost -= average_cost * closing * (1 if position > 0 else -1)
            position += signed
            if position == 0:
                cost = 0.0
            elif abs(signed) > closing:  # flipped: the rest opens at the fill price
                cost = position * fill.price
        mark = cash if last_mid is None else cash + held * last_mid
        peak = max(peak, mark)
        drawdown = max(drawdown, peak - mark)
        points.append(PnlPoint(ts + epoch_offset, money_text(held, spec.lot_size),
                               money_value_text(realized, money), money_value_text(mark, money),
                               iso_time(ts + epoch_offset)))
    return points, realized, drawdown


def fill_reports(fills: Sequence[Fill], spec: InstrumentSpec, epoch_offset: int
                 ) -> list[FillReport]:
    """The strategy's fills in the result's units."""
    return [FillReport(fill.order_id, fill.side, price_text(Decimal(fill.price),
                                                            spec.tick_size) or "",
                       money_text(fill.quantity, spec.lot_size), str(fill.liquidity),
                       fill.timestamp + epoch_offset, iso_time(fill.timestamp + epoch_offset))
            for fill in fills]


def markout(mids: Sequence[tuple[int, float]], fills: Sequence[Fill], horizon: int,
            per_share: bool = False) -> float | None:
    """Mean of (market mid after `horizon` seconds - fill price) x side, in bps of the fill
    price: per fill, or weighted by each fill's quantity (`per_share`)."""
    if not mids or not fills:
        return None
    times = [ts for ts, _ in mids]
    total = weight = 0.0
    for fill in fills:
        later = fill.timestamp + horizon * NS
        if later > times[-1]:
            continue  # the data ends before the horizon
        index = bisect.bisect_right(times, later) - 1
        sign = 1 if fill.side is Side.BUY else -1
        share = fill.quantity if per_share else 1
        total += share * sign * (mids[index][1] - fill.price) / fill.price * 10_000
        weight += share
    return total / weight if weight else None


def price_text(value: Decimal | None, tick: Decimal) -> str | None:
    if value is None:
        return None
    return format((value * tick).quantize(tick * Decimal("0.0001")).normalize(), "f")


def money_text(value: int, unit: Decimal) -> str:
    return format(unit * value, "f")


def fees_paid(fills: Sequence[Fill], spec: InstrumentSpec,
              schedule: FeeSchedule | None) -> Decimal:
    """What the fills cost in fees (negative: rebates), in the price's currency."""
    if schedule is None:
        return Decimal(0)
    return sum((schedule.fee(fill.liquidity == "MAKER", fill.price * spec.tick_size,
                             fill.quantity * spec.lot_size) for fill in fills), Decimal(0))


def money_value_text(value: float, unit: Decimal) -> str:
    return format((Decimal(repr(value)) * unit).quantize(Decimal("0.0001")), "f")


def rounded(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)
