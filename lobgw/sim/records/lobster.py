"""LOBSTER message files (NASDAQ order-level data) and their orderbook files.

Message columns: time (seconds after midnight), type, order id, size, price (USD x 10000),
direction (1 buy, -1 sell), optionally an MPID. Types: 1 add, 2 partial cancel, 3 delete,
4 visible execution, 5 hidden execution, 6 cross, 7 halt.
"""

from __future__ import annotations

import csv
import datetime
import re
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.sim.records.base import Kind, MarketRecord, PathLike, bad_row

LOBSTER_EMPTY_ASK = 9_999_999_999
LOBSTER_EMPTY_BID = -9_999_999_999


def lobster_spec(symbol: str) -> InstrumentSpec:
    """LOBSTER's natural units: a tick of 0.0001 USD (one unit of its integer prices), shares."""
    return InstrumentSpec(symbol, Decimal("0.0001"), Decimal(1))


def lobster_factors(spec: InstrumentSpec) -> tuple[int, int]:
    """How many LOBSTER price units (USD x 10000) make one tick, and shares one lot.

    (1, 1) for the natural spec; a configured spec must have a tick and lot that are whole
    multiples of LOBSTER's units.
    """
    price = spec.tick_size * LOBSTER_PRICE_SCALE
    if price != price.to_integral_value() or spec.lot_size != spec.lot_size.to_integral_value():
        raise ValueError(f"{spec.symbol}: tick {spec.tick_size} / lot {spec.lot_size} are not "
                         "whole multiples of LOBSTER's units (0.0001 USD, 1 share)")
    return int(price), int(spec.lot_size)


LOBSTER_PRICE_SCALE = 10_000


def read_lobster(path: PathLike, spec: InstrumentSpec | None = None,
                 skip_bad: bool = False) -> Iterator[MarketRecord]:
    """LOBSTER message rows: time, type, order id, size, price, direction[, mpid].

    Accepts a header row, CRLF line ends, a missing final newline and a 7th column. Prices and
    sizes are converted to `spec`'s ticks and lots (unchanged for the natural spec). The loop
    is written out flat because replay reads hundreds of thousands of rows per second.
    """
    price_factor, size_factor = lobster_factors(spec) if spec is not None else (1, 1)
    convert = price_factor != 1 or size_factor != 1
    kinds = _LOBSTER_KINDS
    # The direction is the last column unless an MPID follows: accept it with its newline.
    sides = {"1": Side.BUY, "-1": Side.SELL, "1\n": Side.BUY, "-1\n": Side.SELL}
    halt = Kind.HALT
    path = Path(path)
    with path.open() as handle:  # universal newlines: CRLF files read the same
        line = 0
        for text in handle:
            line += 1
            row = text.split(",")  # LOBSTER never quotes: no csv module needed
            if len(row) < 6:
                if text.strip():
                    yield bad_row(path, line, f"unparseable: expected 6 or 7 columns, got "
                               f"{len(row)}", skip_bad)
                continue
            side = sides.get(row[5])
            kind = kinds.get(row[1])
            try:
                if side is None or kind is None:
                    if line == 1 and not _is_number(row[0]):
                        continue  # a header row
                    if kind is None:
                        raise KeyError(row[1])
                    raise ValueError(f"direction must be 1 or -1, got {row[5].rstrip()!r}")
                whole, _, fraction = row[0].partition(".")
                size = int(row[3])
                price = int(row[4])
                if size <= 0 and kind is not halt:
                    raise ValueError(f"size must be positive, got {size}")
                if convert:
                    if price % price_factor and kind is not halt:
                        raise ValueError(f"price {price} is off the tick ({price_factor} units)")
                    if size % size_factor:
                        raise ValueError(f"size {size} is off the lot ({size_factor} shares)")
                    price //= price_factor
                    size //= size_factor
                # seconds.fraction -> nanoseconds in one int(): the fraction padded to 9 digits
                # (most rows already have exactly 9)
                yield MarketRecord(line, int(whole + fraction) if len(fraction) == 9
                                   else int(whole + fraction.ljust(9, "0")[:9]), kind,
                                   int(row[2]), side, price, size)
            except KeyError:
                yield bad_row(path, line, f"unknown type: {row[1]!r}", skip_bad)
            except ValueError as error:
                yield bad_row(path, line, f"unparseable: {error}", skip_bad)


_LOBSTER_KINDS = {"1": Kind.ADD, "2": Kind.REDUCE, "3": Kind.DELETE, "4": Kind.EXECUTE,
                  "5": Kind.PRINT, "6": Kind.PRINT, "7": Kind.HALT}


def read_lobster_book_row(path: PathLike, row_number: int = 1,
                          spec: InstrumentSpec | None = None) -> list[tuple[Side, int, int]]:
    """The levels of one row of a LOBSTER orderbook file as (side, price, size) in the
    spec's ticks and lots."""
    for number, levels in enumerate(read_lobster_levels(path, spec), start=1):
        if number == row_number:
            return levels
    raise ValueError(f"{path} has no row {row_number}")


def read_lobster_levels(path: PathLike, spec: InstrumentSpec | None = None
                        ) -> Iterator[list[tuple[Side, int, int]]]:
    """Every row of a LOBSTER orderbook file (row i is the book after message i) as
    (side, price, size) levels in the spec's ticks and lots; empty levels left out."""
    price_factor, size_factor = lobster_factors(spec) if spec is not None else (1, 1)
    with Path(path).open(newline="") as handle:
        for row in csv.reader(handle):
            levels = []
            values = [int(value) for value in row]
            for index in range(0, len(values), 4):
                ask, ask_size, bid, bid_size = values[index:index + 4]
                if ask_size and ask != LOBSTER_EMPTY_ASK:
                    levels.append((Side.SELL, ask // price_factor, ask_size // size_factor))
                if bid_size and bid != LOBSTER_EMPTY_BID:
                    levels.append((Side.BUY, bid // price_factor, bid_size // size_factor))
            yield levels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_DATE_IN_NAME = re.compile(r"(?:^|_)(\d{4}-\d{2}-\d{2})(?:_|$)")
LOBSTER_ZONE = "America/New_York"
"""LOBSTER's times are seconds after midnight, exchange (New York) time."""


def lobster_epoch_offset(path: PathLike) -> int | None:
    """ns since the epoch of midnight (New York) on the date in a LOBSTER file's name
    (`AMZN_2012-06-21_34200000_57600000_message_1.csv`); None when the name has no date.
    Adding it to a LOBSTER timestamp gives ns since the epoch."""
    found = _DATE_IN_NAME.search(Path(path).stem)
    if found is None:
        return None
    day = datetime.date.fromisoformat(found.group(1))
    midnight = datetime.datetime(day.year, day.month, day.day,
                                 tzinfo=zoneinfo.ZoneInfo(LOBSTER_ZONE))
    return int(midnight.timestamp()) * 1_000_000_000
