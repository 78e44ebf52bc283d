"""Domain vocabulary shared by the engine and every edge: sides, order kinds, reason codes.

Enum values are the strings that appear on the wire, so a value never changes once published.
"""

from __future__ import annotations

import enum


class Side(enum.Enum):
    """Which side of the book an order rests on or takes from.

    `sign` orders a side's prices so that "better" is always "smaller": an order's level key
    in the engine is `price * side.sign` (asks by price, bids by minus the price). A plain
    member attribute, not a property: it is read on every command.
    """

    BUY = "BUY"
    SELL = "SELL"

    sign: int

    def __init__(self, value: str) -> None:
        self.sign = 1 if value == "SELL" else -1

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.Enum):
    """LIMIT orders carry a price; MARKET orders take whatever the other side offers.

    STOP and STOP_LIMIT wait, outside the visible book, for the last trade price to reach
    their `stop_price` (a buy at or above it, a sell at or below), then enter as a MARKET or
    a LIMIT order at `price`.
    """

    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.Enum):
    """How long an order may live: rest (GTC), trade now then cancel (IOC), all or nothing
    (FOK), rest until `expire_time` (GTD) or until the symbol's session ends (DAY)."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    """Good till `expire_time` (ns, the data's or the venue's clock)."""
    DAY = "DAY"
    """Good for the symbol's session: the edge sets `expire_time` to the session's end."""


class SelfTradePrevention(enum.Enum):
    """What happens when an order would trade against a resting order of the same account."""

    CANCEL_TAKER = "CANCEL_TAKER"
    CANCEL_MAKER = "CANCEL_MAKER"
    CANCEL_BOTH = "CANCEL_BOTH"
    NONE = "NONE"
    """Allow the trade (replayed market data, where one label covers many real traders)."""


class Reason(enum.Enum):
    """Why the engine refused a command, cancelled an order or ended an incoming one.

    Only what the engine emits: codes for input refused at the edge (off-tick prices, a
    missing price, ...) are in `lobgw.errors.ErrorCode`, which repeats the rejection reasons
    with the same text, so `ErrorCode(reason.value)` is the client-facing code.
    """

    # rejections of a new order (the book is unchanged)
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    QUANTITY_BELOW_MINIMUM = "QUANTITY_BELOW_MINIMUM"
    QUANTITY_ABOVE_MAXIMUM = "QUANTITY_ABOVE_MAXIMUM"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLED = "FOK_NOT_FILLED"
    STOP_WOULD_TRIGGER = "STOP_WOULD_TRIGGER"
    # rejections of cancel / amend / replay commands
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    # self-trade prevention: a rejection when nothing traded, else a cancel of the remainder
    STP = "STP"
    # cancels of resting orders
    CANCELED = "CANCELED"
    CANCEL_ON_DISCONNECT = "CANCEL_ON_DISCONNECT"
    CANCEL_AFTER = "CANCEL_AFTER"
    AMENDED_BELOW_FILLED = "AMENDED_BELOW_FILLED"
    # expiry of an incoming order's unfilled remainder
    INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
    IOC_REMAINDER = "IOC_REMAINDER"
    # expiry of a resting order (or a waiting stop) on ExpireOrders
    GTD_EXPIRED = "GTD_EXPIRED"
    DAY_ENDED = "DAY_ENDED"

    __hash__ = object.__hash__


REJECTIONS = frozenset({
    Reason.DUPLICATE_ORDER_ID, Reason.QUANTITY_BELOW_MINIMUM, Reason.QUANTITY_ABOVE_MAXIMUM,
    Reason.PRICE_OUT_OF_BAND, Reason.POST_ONLY_WOULD_TAKE, Reason.FOK_NOT_FILLED,
    Reason.STOP_WOULD_TRIGGER, Reason.ORDER_NOT_FOUND, Reason.STP})
"""The reasons an `OrderRejected` can carry."""

RESTING = frozenset({TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY})
"""Times in force whose remainder rests in the book."""
