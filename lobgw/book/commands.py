"""Commands: what a driver asks one symbol's engine to do. Imperative names, frozen structs.

Prices are integer ticks and quantities integer lots; the edge has already converted decimals
and checked the instrument's limits. Each command checks its own shape when it is built (a
positive quantity, a price exactly when the order type needs one), so the engine can trust it
and spend its time on business rules. Time and ids arrive with the command.
"""

from __future__ import annotations

import msgspec

from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side, TimeInForce
from lobgw.errors import InvalidCommandError

_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_GTD = TimeInForce.GTD
_DAY = TimeInForce.DAY
_RESTING_TIF = frozenset({TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY})


class Command(msgspec.Struct, frozen=True, gc=False, tag_field="type", forbid_unknown_fields=True):
    """Base of every engine command; the tag names the command on the wire and in the journal."""


class SubmitOrder(Command, frozen=True, gc=False, tag=True):
    """Enter a new order. `price` is required for LIMIT and STOP_LIMIT and forbidden for
    MARKET and STOP; `stop_price` exactly for STOP and STOP_LIMIT; `display_quantity` (an
    iceberg's visible part) only on a resting limit; `expire_time` exactly for GTD and DAY."""

    order_id: int
    account: str
    side: Side
    quantity: int
    price: int | None = None
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    timestamp: int = 0
    client_order_id: str | None = None
    """Carried for the gateway (journaled with the order); the engine ignores it."""
    cancel_on_disconnect: bool = False
    """Carried for the gateway: cancel the order when its session ends, also by a crash
    (journaled with the order, so recovery knows); the engine ignores it."""
    stop_price: int | None = None
    """STOP, STOP_LIMIT: the last trade price that releases the order (ticks)."""
    display_quantity: int | None = None
    """Iceberg: the lots shown at a time; the rest is a hidden reserve."""
    expire_time: int | None = None
    """GTD, DAY: when an `ExpireOrders` at or after this time ends the order (ns)."""

    def __post_init__(self) -> None:
        # One cheap test for the common case; enum members come from module globals because
        # attribute access on an Enum class is slow in CPython 3.11. Replay builds millions.
        price = self.price
        if self.quantity > 0 and self.stop_price is None and self.display_quantity is None \
                and self.expire_time is None and (
            (price is not None and price > 0 and self.order_type is _LIMIT
             and self.time_in_force is not _GTD and self.time_in_force is not _DAY)
            if not self.post_only else
            (price is not None and price > 0 and self.order_type is _LIMIT
             and self.time_in_force is _GTC)
        ):
            return
        if self.order_type is _MARKET and price is None and self.quantity > 0 \
                and not self.post_only and self.stop_price is None \
                and self.display_quantity is None and self.expire_time is None \
                and self.time_in_force is not _GTD and self.time_in_force is not _DAY:
            return
        problem = self._problem()
        if problem is not None:
            raise InvalidCommandError(f"order {self.order_id}: {problem}")

    def _problem(self) -> str | None:
        """What is wrong with this order's shape, if anything (the rare path)."""
        kind, price, tif = self.order_type, self.price, self.time_in_force
        if self.quantity <= 0:
            return "quantity must be positive"
        if kind in _PRICED and (price is None or price <= 0):
            return f"a {kind.value.lower()} order needs a price > 0"
        if kind not in _PRICED and price is not None:
            return f"a {kind.value.lower()} order has no price"
        if kind in _STOPS:
            if self.stop_price is None or self.stop_price <= 0:
                return "a stop order needs a stop price > 0"
            if tif is _FOK:
                return "a stop order cannot be FOK"
            if self.display_quantity is not None:
                return "a stop order cannot be an iceberg"
        elif self.stop_price is not None:
            return "only a stop order has a stop price"
        if self.post_only and (kind is not _LIMIT or tif is not _GTC):
            return "post-only must be a GTC limit"
        if self.display_quantity is not None and (
                kind is not _LIMIT or tif not in _RESTING_TIF or self.display_quantity <= 0):
            # (not checked against the quantity: amends and reduces may take the total below
            # it; the edge refuses a new order showing more than it has)
            return "display quantity needs a resting limit and a positive size"
        if (tif is _GTD or tif is _DAY) != (self.expire_time is not None):
            return "expire_time is required for GTD and DAY, and only for them"
        return None


class ExpireOrders(Command, frozen=True, gc=False, tag=True):
    """End every resting order and waiting stop whose `expire_time` is at or before
    `timestamp` (the engine has no clock: the actor sends this on a timer, replay and
    backtests from the data's time)."""

    timestamp: int = 0


class CancelOrder(Command, frozen=True, gc=False, tag=True):
    """Remove a resting order (also a market-data delete during replay).

    `reason` is what the cancel event says: CANCELED, CANCEL_ON_DISCONNECT when the gateway
    cancels the orders of a session that ended, or CANCEL_AFTER when an account's
    dead-man's switch fired.
    """

    order_id: int
    timestamp: int = 0
    reason: Reason = Reason.CANCELED


class AmendOrder(Command, frozen=True, gc=False, tag=True):
    """Change a resting order's total quantity and/or price (and a waiting stop's stop price).

    `quantity` is the new total order quantity, fills included (as FIX OrderQty): a decrease
    keeps queue priority, an increase or a new price sends the order to the back of its level.
    """

    order_id: int
    quantity: int | None = None
    price: int | None = None
    timestamp: int = 0
    stop_price: int | None = None
    """A waiting stop's new stop price."""

    def __post_init__(self) -> None:
        if self.quantity is None and self.price is None and self.stop_price is None:
            raise InvalidCommandError(f"amend of {self.order_id}: nothing to change")
        if self.stop_price is not None and self.stop_price <= 0:
            raise InvalidCommandError(f"amend of {self.order_id}: stop price must be positive")
        if self.quantity is not None and self.quantity <= 0:
            raise InvalidCommandError(f"amend of {self.order_id}: quantity must be positive")
        if self.price is not None and self.price <= 0:
            raise InvalidCommandError(f"amend of {self.order_id}: price must be positive")


class ExecuteOrder(Command, frozen=True, gc=False, tag=True):
    """Replay a historical execution of `quantity` against a resting order (aggressor unknown)."""

    order_id: int
    quantity: int
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise InvalidCommandError(f"execution of {self.order_id}: quantity must be positive")


class ReduceOrder(Command, frozen=True, gc=False, tag=True):
    """Replay a partial cancel: take `quantity` off a resting order, keeping its priority."""

    order_id: int
    quantity: int
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise InvalidCommandError(f"reduce of {self.order_id}: quantity must be positive")


AnyCommand = (SubmitOrder | CancelOrder | AmendOrder | ExecuteOrder | ReduceOrder
              | ExpireOrders)
