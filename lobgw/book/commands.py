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
_GTC = TimeInForce.GTC


class Command(msgspec.Struct, frozen=True, gc=False, tag_field="type", forbid_unknown_fields=True):
    """Base of every engine command; the tag names the command on the wire and in the journal."""


class SubmitOrder(Command, frozen=True, gc=False, tag=True):
    """Enter a new order. `price` is required for LIMIT and forbidden for MARKET."""

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

    def __post_init__(self) -> None:
        # One cheap test for the common case; enum members come from module globals because
        # attribute access on an Enum class is slow in CPython 3.11. Replay builds millions.
        price = self.price
        if self.quantity > 0 and (
            (price is not None and price > 0 and self.order_type is _LIMIT)
            if not self.post_only else
            (price is not None and price > 0 and self.order_type is _LIMIT
             and self.time_in_force is _GTC)
        ):
            return
        if self.order_type is _MARKET and price is None and self.quantity > 0 \
                and not self.post_only:
            return
        if self.quantity <= 0:
            raise InvalidCommandError(f"order {self.order_id}: quantity must be positive")
        if self.order_type is _LIMIT and (price is None or price <= 0):
            raise InvalidCommandError(f"order {self.order_id}: a limit order needs a price > 0")
        if self.order_type is _MARKET and price is not None:
            raise InvalidCommandError(f"order {self.order_id}: a market order has no price")
        raise InvalidCommandError(f"order {self.order_id}: post-only must be a GTC limit")


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
    """Change a resting order's total quantity and/or price.

    `quantity` is the new total order quantity, fills included (as FIX OrderQty): a decrease
    keeps queue priority, an increase or a new price sends the order to the back of its level.
    """

    order_id: int
    quantity: int | None = None
    price: int | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.quantity is None and self.price is None:
            raise InvalidCommandError(f"amend of {self.order_id}: nothing to change")
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


AnyCommand = SubmitOrder | CancelOrder | AmendOrder | ExecuteOrder | ReduceOrder
