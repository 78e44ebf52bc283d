"""The normalized market-data record every reader yields, and what readers share."""

from __future__ import annotations

import enum
import os
from pathlib import Path

import msgspec

from lobgw.book.types import Side, TimeInForce
from lobgw.errors import BadRowError

PathLike = str | os.PathLike[str]
"""What every reader and the backtest accept as a file name."""

FORMATS = ("csv", "lobster", "databento-mbo")


class Kind(enum.Enum):
    """What a record does to the book."""

    ADD = "ADD"                # a new resting limit order
    REDUCE = "REDUCE"          # take `quantity` off an order (partial cancel)
    DELETE = "DELETE"          # remove an order
    EXECUTE = "EXECUTE"        # a visible execution of `quantity` against an order
    MODIFY = "MODIFY"          # new price and/or size (Databento M): priority rules apply
    PRINT = "PRINT"            # a trade that does not touch the visible book (hidden, cross)
    CLEAR = "CLEAR"            # remove every order (Databento R)
    HALT = "HALT"              # trading halt / resume indicator (LOBSTER 7)
    NONE = "NONE"              # nothing for the book (Databento F/N)
    MARKET = "MARKET"          # csv: a market order
    AMEND = "AMEND"            # csv: amend to a new total quantity and/or price
    ORDER = "ORDER"            # csv: a stop, stop-limit, iceberg, GTD or DAY order
    INVALID = "INVALID"        # a row that could not be read (with --on-error skip)

    __hash__ = object.__hash__


class MarketRecord(msgspec.Struct, frozen=True, gc=False):
    """One row of any source, normalized."""

    line: int
    timestamp: int
    """Nanoseconds: since midnight for LOBSTER, since the Unix epoch for Databento and csv."""
    kind: Kind
    order_id: int = 0
    side: Side | None = None
    price: int | None = None
    quantity: int = 0
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    account: str | None = None
    aggressor: bool = False
    """For PRINT: the record is the aggressor's side of a trade (Databento T)."""
    error: str | None = None
    """For INVALID: why the row could not be read."""
    received: int | None = None
    """When the data's recorder received the row (Databento `ts_recv`), where the format
    says: what a feed-latency model starts from."""
    stop_price: int | None = None
    """ORDER: a stop's trigger price (with `price`: a stop-limit; without: a stop-market)."""
    display_quantity: int | None = None
    """ORDER: an iceberg's visible part."""
    expire_time: int | None = None
    """ORDER: when a GTD or DAY order expires, in the data's time."""


def bad_row(path: Path, line: int, reason: str, skip: bool) -> MarketRecord:
    """An INVALID record for a skipped row, or raise BadRowError."""
    if not skip:
        raise BadRowError(path, line, reason)
    return MarketRecord(line, 0, Kind.INVALID, error=reason)
