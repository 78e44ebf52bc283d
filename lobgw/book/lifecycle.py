"""An order's lifecycle as a transition table.

    NEW ──fill──▶ PARTIALLY_FILLED ──fill──▶ FILLED
     │  └─fill (complete)─────────────────▶ FILLED
     ├──cancel──▶ CANCELED        PARTIALLY_FILLED ──cancel──▶ CANCELED
     ├──expire──▶ EXPIRED         PARTIALLY_FILLED ──expire──▶ EXPIRED
     └─(amend keeps the status)

A rejected order never enters the table: it is REJECTED from the start. Anything not in the
table raises `InvalidTransitionError` ("X cannot happen in state Y"): a bug, never client input.
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


class Happening(enum.Enum):
    """What can happen to an accepted order."""

    PARTIAL_FILL = "partial fill"
    FILL = "fill"
    CANCEL = "cancel"
    EXPIRE = "expire"
    AMEND = "amend"

    __hash__ = object.__hash__


_FINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})

TRANSITIONS: dict[tuple[OrderStatus, Happening], OrderStatus] = {
    (OrderStatus.NEW, Happening.PARTIAL_FILL): OrderStatus.PARTIALLY_FILLED,
    (OrderStatus.NEW, Happening.FILL): OrderStatus.FILLED,
    (OrderStatus.NEW, Happening.CANCEL): OrderStatus.CANCELED,
    (OrderStatus.NEW, Happening.EXPIRE): OrderStatus.EXPIRED,
    (OrderStatus.NEW, Happening.AMEND): OrderStatus.NEW,
    (OrderStatus.PARTIALLY_FILLED, Happening.PARTIAL_FILL): OrderStatus.PARTIALLY_FILLED,
    (OrderStatus.PARTIALLY_FILLED, Happening.FILL): OrderStatus.FILLED,
    (OrderStatus.PARTIALLY_FILLED, Happening.CANCEL): OrderStatus.CANCELED,
    (OrderStatus.PARTIALLY_FILLED, Happening.EXPIRE): OrderStatus.EXPIRED,
    (OrderStatus.PARTIALLY_FILLED, Happening.AMEND): OrderStatus.PARTIALLY_FILLED,
}


def transition(status: OrderStatus, happening: Happening) -> OrderStatus:
    """The status after `happening`; raise InvalidTransitionError if it cannot happen."""
    try:
        return TRANSITIONS[status, happening]
    except KeyError:
        raise InvalidTransitionError(
            f"{happening.value} cannot happen in state {status.value}") from None
