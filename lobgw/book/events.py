"""Events: what happened, in the order it happened. Past-tense names, frozen structs.

Every event carries the symbol's sequence number, which rises by exactly one per event, so a
consumer can tell it missed something. Prices are ticks and quantities lots, as in the engine.
"""

from __future__ import annotations

import msgspec

from lobgw.book.commands import SubmitOrder
from lobgw.book.types import Reason, Side


class Event(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    """Base of every engine event."""

    seq: int
    timestamp: int


class OrderAccepted(Event, frozen=True, gc=False, tag=True):
    """A new order passed every check; trades, a rest or an expiry may follow."""

    order: SubmitOrder


class OrderRejected(Event, frozen=True, gc=False, tag=True):
    """A command was refused; the book is exactly as it was before it.

    `order` is the refused new order (None for a refused cancel, amend or replay command),
    so a rejected order can be read back from the events alone, as an accepted one can.
    """

    order_id: int
    account: str | None
    reason: Reason
    order: SubmitOrder | None = None


class TradeExecuted(Event, frozen=True, gc=False, tag=True):
    """Two orders traded at the maker's price.

    For a replayed historical execution the aggressor is not known: `taker_order_id` and
    `taker_account` are None and `taker_remaining` is 0.
    """

    price: int
    quantity: int
    aggressor: Side
    maker_order_id: int
    taker_order_id: int | None
    maker_account: str
    taker_account: str | None
    maker_remaining: int
    taker_remaining: int


class OrderCanceled(Event, frozen=True, gc=False, tag=True):
    """An order left the book (or an incoming order stopped) with `remaining` lots unfilled."""

    order_id: int
    account: str
    side: Side
    price: int | None
    remaining: int
    reason: Reason


class OrderAmended(Event, frozen=True, gc=False, tag=True):
    """A resting order changed; `priority_kept` says whether it kept its place in the queue."""

    order_id: int
    account: str
    side: Side
    previous_price: int
    price: int
    quantity: int
    remaining: int
    priority_kept: bool
    stop_price: int | None = None
    """A waiting stop's stop price after the amend (None for an order in the book)."""


class OrderExpired(Event, frozen=True, gc=False, tag=True):
    """An order ended unfilled: an incoming order's remainder without resting (IOC, market
    rules), or a resting order or waiting stop at its expiry (GTD_EXPIRED, DAY_ENDED), with
    all it had left (hidden reserve included)."""

    order_id: int
    account: str
    remaining: int
    reason: Reason


class OrderTriggered(Event, frozen=True, gc=False, tag=True):
    """A waiting stop was released by a trade at `trade_price`: it enters now as a market
    order (`price` None) or a limit at `price`, with time priority from this moment."""

    order_id: int
    account: str
    side: Side
    stop_price: int
    trade_price: int
    price: int | None


class OrderRefreshed(Event, frozen=True, gc=False, tag=True):
    """An iceberg's visible part was filled and `visible` lots came out of its hidden reserve,
    at the back of its level (new time priority); `hidden` lots stay in reserve."""

    order_id: int
    account: str
    side: Side
    price: int
    visible: int
    hidden: int


AnyEvent = (
    OrderAccepted | OrderRejected | TradeExecuted | OrderCanceled | OrderAmended | OrderExpired
    | OrderTriggered | OrderRefreshed
)
