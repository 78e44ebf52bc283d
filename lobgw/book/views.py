"""What the engine shows of itself: copies of resting orders, counters and snapshots.

Frozen structs, so a query's answer can leave the actor's turn without anyone changing the
book under it, and a snapshot round-trips through msgpack for the journal.
"""

from __future__ import annotations

import msgspec

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import SelfTradePrevention, Side


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
