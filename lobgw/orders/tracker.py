"""Per-order state from a symbol's events: the one reading of what happened to an order.

Pure and synchronous, like the engine: feed it a symbol's events in sequence order and it
keeps each tracked order's status (through the lifecycle table), filled and remaining lots,
notional (for the average price) and reason, and tells an observer what changed. The
gateway's registry, the backtest and the replay tools read order state through one of these
instead of keeping their own; `trade_fills` is the one place a trade is split into its maker
and taker sides.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable

import msgspec

from lobgw.book.commands import SubmitOrder
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
from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side, TimeInForce
from lobgw.book.views import OrderView
from lobgw.orders.lifecycle import ExecutionKind, OrderStatus, transition


class Liquidity(enum.StrEnum):
    """Which side of a trade an order was on: resting (MAKER) or arriving (TAKER)."""

    MAKER = "MAKER"
    TAKER = "TAKER"


class Fill(msgspec.Struct, frozen=True, gc=False):
    """One trade from one order's point of view (price in ticks, quantity in lots)."""

    order_id: int
    account: str
    side: Side
    price: int
    quantity: int
    liquidity: Liquidity
    remaining: int
    """What the order has left to fill after this trade."""
    timestamp: int
    seq: int
    """The trade's sequence number."""


_NEW = OrderStatus.NEW
_MAKER = Liquidity.MAKER
_TAKER = Liquidity.TAKER


def trade_fills(trade: TradeExecuted) -> tuple[Fill, Fill | None]:
    """The maker's and the taker's side of a trade (no taker for a replayed execution)."""
    maker = Fill(trade.maker_order_id, trade.maker_account, trade.aggressor.opposite,
                 trade.price, trade.quantity, _MAKER, trade.maker_remaining, trade.timestamp,
                 trade.seq)
    if trade.taker_order_id is None or trade.taker_account is None:
        return maker, None
    return maker, Fill(trade.taker_order_id, trade.taker_account, trade.aggressor, trade.price,
                       trade.quantity, _TAKER, trade.taker_remaining, trade.timestamp,
                       trade.seq)


def fills_for(order_id: int, events: Iterable[Event]) -> list[Fill]:
    """The fills of one order among `events`."""
    fills = []
    for event in events:
        if isinstance(event, TradeExecuted) and order_id in (event.maker_order_id,
                                                              event.taker_order_id):
            for fill in trade_fills(event):
                if fill is not None and fill.order_id == order_id:
                    fills.append(fill)
    return fills


class OrderState(msgspec.Struct, gc=False):
    """One order as its events tell it (prices in ticks, quantities in lots).

    `gc=False`: a gateway keeps many of these, and tracked objects would make every full
    garbage collection walk them all. They hold only numbers, strings and enums.
    """

    order_id: int
    account: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int
    remaining: int
    post_only: bool
    stp: SelfTradePrevention
    client_order_id: str | None
    created_at: int
    updated_at: int
    filled: int = 0
    notional: int = 0
    """Sum of price x quantity over the fills; -1 when fills before a restart are unknown."""
    status: OrderStatus = OrderStatus.NEW
    reason: Reason | None = None
    """Why the order was rejected, cancelled or expired."""
    cancel_on_disconnect: bool = False
    stop_price: int | None = None
    """STOP, STOP_LIMIT: the trigger price (ticks)."""
    triggered: bool = False
    """A stop that a trade released (it is in the book, or done, since)."""
    display_quantity: int | None = None
    """An iceberg's visible part (lots)."""
    expire_time: int | None = None
    """GTD, DAY: when the order expires (Unix ns, or data time in replays)."""

    @classmethod
    def submitted(cls, symbol: str, command: SubmitOrder) -> OrderState:
        """A new order as the engine will see it."""
        return cls(command.order_id, command.account, symbol, command.side, command.order_type,
                   command.time_in_force, command.price, command.quantity, command.quantity,
                   command.post_only, command.stp, command.client_order_id, command.timestamp,
                   command.timestamp, 0, 0, _NEW, None, command.cancel_on_disconnect,
                   command.stop_price, False, command.display_quantity, command.expire_time)

    @classmethod
    def resting(cls, symbol: str, view: OrderView) -> OrderState:
        """A resting order a snapshot brought back (its fills are known by quantity only;
        `remaining` counts an iceberg's hidden reserve)."""
        remaining = view.remaining + view.hidden
        filled = view.quantity - remaining
        return cls(view.order_id, view.account, symbol, view.side, OrderType.LIMIT,
                   view.time_in_force, view.price, view.quantity, remaining, view.post_only,
                   view.stp, view.client_order_id, view.timestamp, view.timestamp,
                   filled=filled, notional=-1,
                   status=OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW,
                   cancel_on_disconnect=view.cancel_on_disconnect,
                   display_quantity=view.display_quantity, expire_time=view.expire_time)


Observer = Callable[[ExecutionKind, OrderState, Event, Fill | None], None]
"""Told each change of a tracked order: what happened, the order after it, the event, and
for a fill the order's side of the trade."""

_ACCEPTED, _REJECTED, _FILL = ExecutionKind.ACCEPTED, ExecutionKind.REJECTED, ExecutionKind.FILL
_CANCELED, _EXPIRED, _AMENDED = (ExecutionKind.CANCELED, ExecutionKind.EXPIRED,
                                 ExecutionKind.AMENDED)
_TRIGGERED, _REFRESHED = ExecutionKind.TRIGGERED, ExecutionKind.REFRESHED


class OrderTracker:
    """The live orders of one or more symbols, kept from their events.

    `accounts`: track only these accounts' orders (a backtest follows its strategy, not the
    market); None tracks every order the events name.
    """

    def __init__(self, accounts: Collection[str] | None = None) -> None:
        self.accounts = accounts
        self.pending: dict[int, OrderState] = {}
        """Orders sent to an engine and not answered yet: their first event finds them here."""
        self.open: dict[int, OrderState] = {}
        """Accepted orders that are not final."""

    def expect(self, order: OrderState) -> None:
        """Hold a new order until the engine answers it (accepted or rejected)."""
        self.pending[order.order_id] = order

    def forget(self, order_id: int) -> OrderState | None:
        """Drop an expected order that never reached an engine."""
        return self.pending.pop(order_id, None)

    def restore(self, symbol: str, views: Iterable[OrderView],
                stops: Iterable[SubmitOrder] = ()) -> list[OrderState]:
        """Open the resting orders and waiting stops a snapshot brought back; return them."""
        restored = [OrderState.resting(symbol, view) for view in views
                    if (self.accounts is None or view.account in self.accounts)
                    and view.order_id not in self.open]
        restored += [OrderState.submitted(symbol, stop) for stop in stops
                     if (self.accounts is None or stop.account in self.accounts)
                     and stop.order_id not in self.open]
        for order in restored:
            self.open[order.order_id] = order
        return restored

    def get(self, order_id: int) -> OrderState | None:
        """A pending or open order."""
        return self.open.get(order_id) or self.pending.get(order_id)

    def apply(self, symbol: str, events: Iterable[Event], observe: Observer | None = None
              ) -> None:
        """Follow one symbol's events; tell `observe` about every change of a tracked order."""
        open_orders = self.open
        for event in events:
            cls = event.__class__
            if cls is TradeExecuted:
                trade: TradeExecuted = event  # type: ignore[assignment]
                taker_id = trade.taker_order_id
                if trade.maker_order_id not in open_orders and (
                        taker_id is None or taker_id not in open_orders):
                    continue
                for fill in trade_fills(trade):
                    order = open_orders.get(fill.order_id) if fill is not None else None
                    if order is None or fill is None:
                        continue
                    order.filled += fill.quantity
                    if order.notional >= 0:  # -1: fills from before a restart
                        order.notional += fill.quantity * fill.price
                    order.remaining = fill.remaining
                    order.updated_at = fill.timestamp
                    order.status = transition(order.status, _FILL, fill.remaining)
                    if not fill.remaining:
                        del open_orders[order.order_id]
                    if observe is not None:
                        observe(_FILL, order, event, fill)
            elif cls is OrderAccepted:
                command = event.order  # type: ignore[attr-defined]
                order = self.pending.pop(command.order_id, None)
                if order is None:  # another driver's order, or one read back from a journal
                    if self.accounts is not None and command.account not in self.accounts:
                        continue
                    order = OrderState.submitted(symbol, command)
                open_orders[order.order_id] = order
                if observe is not None:
                    observe(_ACCEPTED, order, event, None)
            elif cls is OrderRejected:
                rejection: OrderRejected = event  # type: ignore[assignment]
                order = self.pending.pop(rejection.order_id, None)
                if order is None:
                    refused = rejection.order
                    if refused is None or refused.order_id in open_orders or (
                            self.accounts is not None and refused.account not in self.accounts):
                        continue  # a refused cancel or amend: the order is unchanged
                    order = OrderState.submitted(symbol, refused)  # read back (a journal)
                order.status = OrderStatus.REJECTED
                order.reason = event.reason  # type: ignore[attr-defined]
                order.updated_at = event.timestamp
                if observe is not None:
                    observe(_REJECTED, order, event, None)
            elif cls is OrderCanceled or cls is OrderExpired:
                order = open_orders.pop(event.order_id, None)  # type: ignore[attr-defined]
                if order is None:
                    continue
                kind = _CANCELED if cls is OrderCanceled else _EXPIRED
                order.reason = event.reason  # type: ignore[attr-defined]
                order.updated_at = event.timestamp
                order.status = transition(order.status, kind)
                if observe is not None:
                    observe(kind, order, event, None)
            elif cls is OrderAmended:
                amended: OrderAmended = event  # type: ignore[assignment]
                order = open_orders.get(amended.order_id)
                if order is None:
                    continue
                if order.price is not None:  # (a stop-market's amend says price 0)
                    order.price = amended.price
                if amended.stop_price is not None:
                    order.stop_price = amended.stop_price
                order.quantity = amended.quantity
                order.remaining = amended.remaining
                order.updated_at = amended.timestamp
                order.status = transition(order.status, _AMENDED)
                if observe is not None:
                    observe(_AMENDED, order, event, None)
            elif cls is OrderTriggered or cls is OrderRefreshed:
                order = open_orders.get(event.order_id)  # type: ignore[attr-defined]
                if order is None:
                    continue
                order.updated_at = event.timestamp
                if cls is OrderTriggered:
                    order.triggered = True
                    kind = _TRIGGERED
                else:
                    kind = _REFRESHED
                order.status = transition(order.status, kind)
                if observe is not None:
                    observe(kind, order, event, None)
