"""One normalized market-data record, and one streaming reader per source format.

Every reader yields `MarketRecord`s in file order and never holds the file in memory. Prices
are integer ticks and quantities integer lots of the instrument spec the reader was given
(`natural_spec` says what a format implies when the symbol is not configured). A row that
cannot be read raises `BadRowError` with the file, the line number and the reason; the caller
decides whether to stop or skip (`--on-error`). Every reader takes the same arguments,
`read_<format>(path, spec, skip_bad=False)`; a path may be a `str` or any `os.PathLike`.

    format          module        rows                               spec when not configured
    csv             csv_format    lobgw's own: ts,msg_type,side,...  (must be configured)
    lobster         lobster       LOBSTER message files, types 1-7   tick 0.0001 USD, shares
    databento-mbo   databento     Databento MBO as CSV               tick from the prices seen
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from lobgw.book.instrument import InstrumentSpec
from lobgw.errors import BadRowError
from lobgw.sim.records.base import FORMATS, Kind, MarketRecord, PathLike, bad_row
from lobgw.sim.records.csv_format import CSV_HEADER, CSV_OPTIONAL, read_csv
from lobgw.sim.records.databento import (
    databento_spec,
    databento_tick,
    iso_to_ns,
    read_databento,
    read_databento_mbp,
)
from lobgw.sim.records.lobster import (
    LOBSTER_EMPTY_ASK,
    LOBSTER_EMPTY_BID,
    LOBSTER_PRICE_SCALE,
    lobster_epoch_offset,
    lobster_factors,
    lobster_spec,
    read_lobster,
    read_lobster_book_row,
    read_lobster_levels,
)

__all__ = [
    "CSV_HEADER", "CSV_OPTIONAL", "FORMATS", "LOBSTER_EMPTY_ASK", "LOBSTER_EMPTY_BID",
    "LOBSTER_PRICE_SCALE", "BadRowError", "Kind", "MarketRecord", "PathLike", "bad_row",
    "data_time_range", "databento_spec", "databento_tick", "iso_to_ns", "lobster_epoch_offset",
    "lobster_factors", "lobster_spec", "natural_spec", "read_csv", "read_databento",
    "read_databento_mbp", "read_lobster",
    "read_lobster_book_row", "read_lobster_levels", "read_records",
]


def read_records(fmt: str, path: PathLike, spec: InstrumentSpec | None = None,
                 skip_bad: bool = False) -> Iterator[MarketRecord]:
    """The reader for `fmt`. With `skip_bad`, unreadable rows come out as INVALID records
    (in their place, so outputs keep one row per input row) instead of raising BadRowError."""
    if fmt == "lobster":
        return read_lobster(path, spec, skip_bad)
    if fmt == "databento-mbo":
        return read_databento(path, spec, skip_bad)
    if fmt == "csv":
        return read_csv(path, spec, skip_bad)
    if fmt == "databento-mbp10":  # backtests on levels only: the events, without the book
        return (record for record, _ in read_databento_mbp(path, spec))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def natural_spec(fmt: str, symbol: str, path: PathLike,
                 tick_size: Decimal | None = None) -> InstrumentSpec:
    """The spec a format implies for a symbol that is not configured (csv has none)."""
    if fmt == "lobster":
        return lobster_spec(symbol)
    if fmt in ("databento-mbo", "databento-mbp10"):
        return databento_spec(symbol, path, tick_size)
    raise ValueError(f"the {fmt} format needs the symbol's tick and lot sizes "
                     "(add it to config.toml)")


def data_time_range(fmt: str, path: PathLike, spec: InstrumentSpec) -> tuple[int, int]:
    """First and last timestamps of a data file (streamed once)."""
    first = last = None
    for record in read_records(fmt, path, spec):
        if first is None:
            first = record.timestamp
        last = record.timestamp
    if first is None or last is None:
        raise ValueError(f"{path} has no rows")
    return first, last
