"""An order's lifecycle as a transition table.

    NEW ──fill──▶ PARTIALLY_FILLED ──fill──▶ FILLED
     │  └─fill (nothing left)─────────────▶ FILLED
     ├──cancel──▶ CANCELED        PARTIALLY_FILLED ──cancel──▶ CANCELED
     ├──expire──▶ EXPIRED         PARTIALLY_FILLED ──expire──▶ EXPIRED
     └─(amend, a stop's trigger and an iceberg's refresh keep the status)

The alphabet is `ExecutionKind`, the same word an execution report carries. A fill leads to
the table's status while something is left and to FILLED once nothing is. A rejected order
never enters the table: it is REJECTED from the start. Anything not in the table raises
`InvalidTransitionError` ("X cannot happen in state Y"): a bug, never client input.
"""

from __future__ import annotations

import enum

from lobgw.errors import InvalidTransitionError


class OrderStatus(enum.Enum):
    """Where an order is in its life; the last four are final."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    # Members are singletons compared by identity: hash them by identity too, in C, instead
    # of Enum's Python-level hash of the name (status lookups happen for every event).
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        """True once nothing more can happen to the order."""
        return self in _FINAL


class ExecutionKind(enum.Enum):
    """What happened to an order: the lifecycle's alphabet and an execution report's `event`."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FILL = "fill"
    CANCELED = "canceled"
    AMENDED = "amended"
    EXPIRED = "expired"
    TRIGGERED = "triggered"
    """A waiting stop was released by a trade and entered the book as a market or limit."""
    REFRESHED = "refreshed"
    """An iceberg showed its next part from the hidden reserve (new time priority)."""

    __hash__ = object.__hash__


_FINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})

NEW, PARTIALLY_FILLED, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
FILL = ExecutionKind.FILL

TRANSITIONS: dict[tuple[OrderStatus, ExecutionKind], OrderStatus] = {
    (NEW, FILL): PARTIALLY_FILLED,
    (NEW, ExecutionKind.CANCELED): OrderStatus.CANCELED,
    (NEW, ExecutionKind.EXPIRED): OrderStatus.EXPIRED,
    (NEW, ExecutionKind.AMENDED): NEW,
    (PARTIALLY_FILLED, FILL): PARTIALLY_FILLED,
    (PARTIALLY_FILLED, ExecutionKind.CANCELED): OrderStatus.CANCELED,
    (PARTIALLY_FILLED, ExecutionKind.EXPIRED): OrderStatus.EXPIRED,
    (PARTIALLY_FILLED, ExecutionKind.AMENDED): PARTIALLY_FILLED,
    (NEW, ExecutionKind.TRIGGERED): NEW,
    (PARTIALLY_FILLED, ExecutionKind.REFRESHED): PARTIALLY_FILLED,
}


def transition(status: OrderStatus, kind: ExecutionKind, remaining: int = 1) -> OrderStatus:
    """The status after `kind` happens to an order with `remaining` lots left after it;
    raise InvalidTransitionError if it cannot happen in `status`."""
    try:
        after = TRANSITIONS[status, kind]
    except KeyError:
        raise InvalidTransitionError(
            f"{kind.value} cannot happen in state {status.value}") from None
    return FILLED if kind is FILL and not remaining else after
