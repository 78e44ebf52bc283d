"""What the engine shows of itself: copies of resting orders, counters and snapshots.

Frozen structs, so a query's answer can leave the actor's turn without anyone changing the
book under it, and a snapshot round-trips through msgpack for the journal.
"""

from __future__ import annotations

import msgspec

from lobgw.book.commands import SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import SelfTradePrevention, Side, TimeInForce


class OrderView(msgspec.Struct, frozen=True, gc=False):
    """A copy of a resting order, as queries and snapshots expose it."""

    order_id: int
    account: str
    side: Side
    price: int
    quantity: int
    remaining: int
    timestamp: int
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: str | None = None
    cancel_on_disconnect: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_time: int | None = None
    display_quantity: int | None = None
    """An iceberg's visible part; `remaining` is what the book shows of it now."""
    hidden: int = 0
    """An iceberg's hidden reserve (never in market data)."""


class Counters(msgspec.Struct, frozen=True, gc=False):
    """Running totals since the book was created (restored with snapshots)."""

    messages: int = 0
    orders: int = 0
    rejections: int = 0
    trades: int = 0
    volume: int = 0


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """Everything needed to rebuild an identical book: orders in priority order per side."""

    spec: InstrumentSpec
    seq: int
    counters: Counters
    bids: list[OrderView]
    asks: list[OrderView]
    stops: list[SubmitOrder] = []
    """Waiting stops in trigger-time order."""
    last_price: int | None = None
    """The last trade's price (what stops trigger on)."""


class BookImage(msgspec.Struct, frozen=True, gc=False):
    """The book as its live orders in priority order, with each one's remaining lots: what a
    snapshot file stores. Cheaper to make than views, because the live orders already are
    immutable `SubmitOrder`s; `snapshot()` turns it into the `BookSnapshot` of the engine."""

    spec: InstrumentSpec
    seq: int
    counters: Counters
    bids: list[SubmitOrder]
    bid_remaining: list[int]
    asks: list[SubmitOrder]
    ask_remaining: list[int]
    hidden: dict[int, int] = {}
    """Icebergs' hidden reserves by order id."""
    stops: list[SubmitOrder] = []
    last_price: int | None = None

    def snapshot(self) -> BookSnapshot:
        """The same book as views (what `Engine.restore` takes)."""
        hidden = self.hidden

        def views(orders: list[SubmitOrder], remaining: list[int]) -> list[OrderView]:
            return [order_view(order, left, hidden.get(order.order_id, 0))
                    for order, left in zip(orders, remaining, strict=True)]
        return BookSnapshot(self.spec, self.seq, self.counters,
                            views(self.bids, self.bid_remaining),
                            views(self.asks, self.ask_remaining), self.stops, self.last_price)


def order_view(order: SubmitOrder, remaining: int, hidden: int = 0) -> OrderView:
    """The view of a live order showing `remaining` lots (and `hidden` in reserve)."""
    return OrderView(order.order_id, order.account, order.side, order.price or 0,
                     order.quantity, remaining, order.timestamp, order.post_only, order.stp,
                     order.client_order_id, order.cancel_on_disconnect, order.time_in_force,
                     order.expire_time, order.display_quantity, hidden)


class BookCapture:
    """A consistent copy of a book taken in two C-speed dict copies (about a millisecond for
    80,000 orders), so a snapshot holds its actor only that long; `image()` does the rest
    (ordering, listing) later, anywhere. Safe because live orders are immutable: an amend
    replaces the order, it never changes it."""

    __slots__ = ("counters", "hidden", "last_price", "levels", "orders", "seq", "spec",
                 "stops")

    def __init__(self, spec: InstrumentSpec, seq: int, counters: Counters,
                 levels: dict[int, dict[int, int]], orders: dict[int, SubmitOrder],
                 hidden: dict[int, int] | None = None, stops: list[SubmitOrder] | None = None,
                 last_price: int | None = None) -> None:
        self.hidden = hidden or {}
        self.stops = stops or []
        self.last_price = last_price
        self.spec = spec
        self.seq = seq
        self.counters = counters
        self.levels = levels
        """Level key (price x side sign) -> {order id: remaining lots}, in time order."""
        self.orders = orders

    def side_keys(self, buy: bool) -> list[int]:
        """One side's level keys, best first (bids have negative keys)."""
        return sorted(key for key in self.levels if (key < 0) == buy)

    def image(self) -> BookImage:
        """The captured book in priority order (best level first, then time)."""
        sides: list[tuple[list[SubmitOrder], list[int]]] = []
        orders = self.orders
        for keys in (self.side_keys(buy=True), self.side_keys(buy=False)):
            listed: list[SubmitOrder] = []
            remaining: list[int] = []
            for key in keys:
                queue = self.levels[key]
                listed += map(orders.__getitem__, queue)
                remaining += queue.values()
            sides.append((listed, remaining))
        (bids, bid_remaining), (asks, ask_remaining) = sides
        return BookImage(self.spec, self.seq, self.counters, bids, bid_remaining, asks,
                         ask_remaining, self.hidden, self.stops, self.last_price)
