"""From normalized market-data records to engine commands (sans-I/O).

`Translator` mirrors which historical orders are alive and how much each has left, so that
it never sends the engine a command about an order it does not have. The repairs it makes on
imperfect data are named and counted in `TranslationStats`:

* `unknown_orders` — a reduce/delete/execute/modify of an order the data never added (a file
  that starts mid-session). With a seeded initial book, such an event takes its quantity off
  the seeded level at its price instead (`seeded_hits`); otherwise it is skipped.
* `clipped` — an event asks for more than the order has left (because a backtest strategy
  already took that liquidity, or the data is inconsistent): it is cut to what is left, or
  skipped when nothing is left.
* `stale_removed` — historical orders an arriving historical add would have crossed. LOBSTER
  and Databento adds never cross the book (a marketable order shows up as executions of the
  resting orders instead), so an add that would has met orders whose removal the data did not
  show (a level-1 LOBSTER file leaves out what happens beyond level 1): the engine cancels them
  (self-trade prevention `cancel_maker` within the historical account) and the add rests whole,
  instead of printing trades that never happened. Not for csv, whose adds may cross.
* `prints` — trades that do not touch the visible book (LOBSTER 5 and 6, Databento T).
* `halts`, `clears` — LOBSTER halts and Databento book clears.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ExpireOrders,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import Event, OrderAccepted, OrderCanceled, OrderExpired, TradeExecuted
from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side
from lobgw.orders import trade_fills
from lobgw.sim.records import Kind, MarketRecord

_LIMIT = OrderType.LIMIT
_NO_STP = SelfTradePrevention.NONE
_CANCEL_TAKER = SelfTradePrevention.CANCEL_TAKER
_CANCEL_MAKER = SelfTradePrevention.CANCEL_MAKER
_STP_REASON = Reason.STP

MARKET_ACCOUNT = "market"
"""The account of every replayed historical order."""
SEED_ID_BASE = 1 << 59
"""Ids of the synthetic orders that stand for a seeded book's levels."""


# Enum members as module names: attribute access on an Enum class is slow in CPython 3.11.
_ADD, _PRINT, _NONE, _HALT, _CLEAR, _MARKET = (Kind.ADD, Kind.PRINT, Kind.NONE, Kind.HALT,
                                               Kind.CLEAR, Kind.MARKET)
_DELETE, _REDUCE, _EXECUTE, _MODIFY, _AMEND = (Kind.DELETE, Kind.REDUCE, Kind.EXECUTE,
                                               Kind.MODIFY, Kind.AMEND)
_ORDER = Kind.ORDER
NEVER = 1 << 63
"""No expiry pending."""


class TranslationStats(msgspec.Struct):
    """What the translator had to do besides the obvious."""

    unknown_orders: int = 0
    seeded_hits: int = 0
    clipped: int = 0
    stale_removed: int = 0
    prints: int = 0
    print_volume: int = 0
    halts: int = 0
    clears: int = 0


class Translator:
    """Turns records into commands for one symbol; see the module docstring."""

    def __init__(self, strict_unknown: bool = False, remove_stale: bool = True) -> None:
        self.alive: dict[int, int] = {}
        """Historical order id -> lots left, as the engine will have it once the commands
        sent so far are applied. A projection, not a reading of state: replay translates
        several chunks ahead of the engine (so the actor drains big batches), and a row must
        know what the rows before it did. `observe` corrects it from the engine's events for
        what the translator could not foresee (a strategy trading against historical
        orders, stale orders removed)."""
        self.where: dict[int, tuple[Side, int]] = {}
        """Where each synthetic seeded order stands."""
        self.seeded: dict[tuple[Side, int], int] = {}
        """(side, price) -> id of the synthetic order standing for a seeded level."""
        self.ever_added: set[int] = set()
        self.strict_unknown = strict_unknown
        """csv: an unknown order id is a bad row (raise KeyError) instead of a skip."""
        self.add_stp = _CANCEL_MAKER if remove_stale else _NO_STP
        """Self-trade prevention of historical adds without an account (see `stale_removed`)."""
        self.stats = TranslationStats()
        self._next_seed = SEED_ID_BASE
        self._expiries: list[int] = []
        """The expire times of the GTD and DAY orders sent (a heap)."""
        self.expire_at = NEVER
        """The earliest of them: a row at or after it first expires what is due."""

    @classmethod
    def for_format(cls, fmt: str) -> Translator:
        """The translator for a data format: csv is strict about unknown orders and lets its
        adds cross; LOBSTER and Databento skip unknown orders and remove stale ones."""
        return cls(strict_unknown=fmt == "csv", remove_stale=fmt != "csv")

    # -- seeding ---------------------------------------------------------------------------

    def seed(self, levels: Iterable[tuple[Side, int, int]], timestamp: int) -> list[AnyCommand]:
        """Stand one synthetic order in for each (side, price, size) level."""
        commands: list[AnyCommand] = []
        for side, price, size in levels:
            order_id = self._next_seed
            self._next_seed += 1
            self.seeded[side, price] = order_id
            self.alive[order_id] = size
            self.where[order_id] = (side, price)
            commands.append(SubmitOrder(order_id, MARKET_ACCOUNT, side, size, price=price,
                                        stp=SelfTradePrevention.NONE, timestamp=timestamp))
        return commands

    # -- records ---------------------------------------------------------------------------

    def translate(self, record: MarketRecord) -> list[AnyCommand]:
        """The commands for one record (often one, sometimes none or several)."""
        out: list[AnyCommand] = []
        self.translate_into(record, out)
        return out

    def translate_into(self, record: MarketRecord, out: list[AnyCommand]) -> None:
        """Append the record's commands to `out`. Adds and events on live orders — nearly every
        row — are handled first and without building lists."""
        kind = record.kind
        if record.timestamp >= self.expire_at:  # data time passed a GTD or DAY order's end
            self.expire_into(record.timestamp, out)
        if kind is _ADD:  # _add, inlined: half of all rows
            order_id = record.order_id
            self.alive[order_id] = record.quantity
            self.ever_added.add(order_id)
            account = record.account
            out.append(SubmitOrder(order_id, account or MARKET_ACCOUNT,
                                   record.side,  # type: ignore[arg-type]
                                   record.quantity, record.price, _LIMIT,
                                   record.time_in_force, record.post_only,
                                   self.add_stp if account is None else _CANCEL_TAKER,
                                   record.timestamp))
            return
        ts = record.timestamp
        if kind is _DELETE or kind is _EXECUTE or kind is _REDUCE:
            order_id = record.order_id
            left = self.alive.get(order_id)
            if left is None:
                target = self._target(record)
                if target is None:
                    return
                order_id, left = target, self.alive[target]
                if kind is _DELETE:  # an unknown order's delete takes from the seeded level
                    kind = _REDUCE
            if kind is _DELETE:
                del self.alive[order_id]  # _forget, inlined for an order never seeded
                if self.where:
                    self._unseed(order_id)
                out.append(CancelOrder(order_id, ts))
                return
            quantity = record.quantity
            if quantity > left:
                self.stats.clipped += 1
                quantity = left
            if quantity >= left:
                del self.alive[order_id]
                if self.where:
                    self._unseed(order_id)
                if kind is _REDUCE:  # a partial cancel of all that is left is a cancel
                    out.append(CancelOrder(order_id, ts))
                    return
            else:
                self.alive[order_id] = left - quantity
            out.append((ExecuteOrder if kind is _EXECUTE else ReduceOrder)(order_id, quantity, ts))
            return
        if kind is _PRINT:
            self.stats.prints += 1
            self.stats.print_volume += record.quantity
        elif kind is _HALT:
            self.stats.halts += 1
        elif kind is _CLEAR:
            self.stats.clears += 1
            out.extend(CancelOrder(order_id, ts) for order_id in self.alive)
            self.alive.clear()
            self.where.clear()
            self.seeded.clear()
        elif kind is _MARKET:
            assert record.side is not None
            out.append(SubmitOrder(record.order_id, record.account or MARKET_ACCOUNT,
                                   record.side, record.quantity, order_type=OrderType.MARKET,
                                   time_in_force=record.time_in_force,
                                   stp=_stp(record.account), timestamp=ts))
        elif kind is _ORDER:
            self._order(record, out)
        elif kind is _MODIFY or kind is _AMEND:
            target = self._target(record)
            if target is None:
                return
            if kind is _MODIFY:
                assert record.price is not None
                self.alive[target] = record.quantity
                out.append(AmendOrder(target, quantity=record.quantity, price=record.price,
                                      timestamp=ts))
            else:
                self.alive[target] = record.quantity or self.alive[target]
                out.append(AmendOrder(target, quantity=record.quantity or None,
                                      price=record.price, timestamp=ts))
        elif kind is not _NONE:
            raise ValueError(f"no translation for {kind}")

    def _order(self, record: MarketRecord, out: list[AnyCommand]) -> None:
        """A stop, stop-limit, iceberg, GTD or DAY order (csv)."""
        assert record.side is not None
        if record.stop_price is not None:
            order_type = OrderType.STOP if record.price is None else OrderType.STOP_LIMIT
        else:
            order_type = _LIMIT if record.price is not None else OrderType.MARKET
        self.alive[record.order_id] = record.quantity
        self.ever_added.add(record.order_id)
        out.append(SubmitOrder(record.order_id, record.account or MARKET_ACCOUNT, record.side,
                               record.quantity, record.price, order_type,
                               record.time_in_force, record.post_only, _stp(record.account),
                               record.timestamp, stop_price=record.stop_price,
                               display_quantity=record.display_quantity,
                               expire_time=record.expire_time))
        if record.expire_time is not None:
            self.expire_after(record.expire_time)

    def expire_after(self, expire_time: int) -> None:
        """Send an `ExpireOrders` with the first row at or after `expire_time` (a GTD or DAY
        order's end, in the data's time: runs stay deterministic)."""
        heapq.heappush(self._expiries, expire_time)
        self.expire_at = self._expiries[0]

    def expire_into(self, now: int, out: list[AnyCommand]) -> None:
        """Append the expiry of every order due by `now`."""
        expiries = self._expiries
        while expiries and expiries[0] <= now:
            heapq.heappop(expiries)
        self.expire_at = expiries[0] if expiries else NEVER
        out.append(ExpireOrders(now))

    def _target(self, record: MarketRecord) -> int | None:
        """The live order a record is about: itself, or the seeded level it must come from."""
        if record.order_id in self.alive:
            return record.order_id
        if self.strict_unknown and record.order_id not in self.ever_added:
            raise KeyError(f"order {record.order_id} was never added")
        if record.order_id in self.ever_added:
            self.stats.clipped += 1  # the order existed but its liquidity is already gone
            return None
        if record.side is not None and record.price is not None:
            seeded = self.seeded.get((record.side, record.price))
            if seeded is not None and seeded in self.alive:
                self.stats.seeded_hits += 1
                return seeded
        self.stats.unknown_orders += 1
        return None

    def _forget(self, order_id: int) -> None:
        self.alive.pop(order_id, None)
        if self.where:
            self._unseed(order_id)

    def _unseed(self, order_id: int) -> None:
        """Drop a seeded order's place, if it is one."""
        where = self.where.pop(order_id, None)
        if where is not None and self.seeded.get(where) == order_id:
            del self.seeded[where]

    # -- feedback --------------------------------------------------------------------------

    def observe(self, events: Iterable[Event]) -> int:
        """Learn from the engine what happened to historical orders besides our commands
        (a backtest strategy trading against them, or an order filling on arrival).

        Returns the number of trades among `events`.
        """
        alive = self.alive
        trades = 0
        for event in events:
            cls = event.__class__
            if cls is OrderAccepted:  # the most common event, and nothing to learn from it
                continue
            if cls is TradeExecuted:
                trades += 1
                trade: TradeExecuted = event  # type: ignore[assignment]
                if trade.taker_order_id is None:
                    continue  # a replayed execution: already mirrored when it was sent
                for fill in trade_fills(trade):
                    if fill is not None and fill.order_id in alive:
                        self._settle(fill.order_id, fill.remaining)
            elif cls is OrderCanceled or cls is OrderExpired:
                order_id = event.order_id  # type: ignore[attr-defined]
                if order_id in alive:
                    if event.reason is _STP_REASON:  # type: ignore[attr-defined]
                        self.stats.stale_removed += 1
                    self._forget(order_id)
        return trades

    def _settle(self, order_id: int, remaining: int) -> None:
        if remaining:
            self.alive[order_id] = remaining
        else:
            self._forget(order_id)


def _stp(account: str | None) -> SelfTradePrevention:
    # Replayed orders without an account all share one label: they must be able to trade.
    return SelfTradePrevention.NONE if account is None else SelfTradePrevention.CANCEL_TAKER
