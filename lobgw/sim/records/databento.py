"""Databento MBO (market by order) data as CSV, with or without the `ts_recv` column.

Actions: A add, C cancel (of `size`), M modify, R clear the book, T trade, F fill, N none.
"""

from __future__ import annotations

import csv
import datetime
import functools
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side, TimeInForce
from lobgw.errors import BadRowError, InputError
from lobgw.sim.records.base import Kind, MarketRecord, PathLike, bad_row

_DATABENTO_ACTIONS = {"A": Kind.ADD, "C": Kind.REDUCE, "M": Kind.MODIFY, "R": Kind.CLEAR,
                      "T": Kind.PRINT, "F": Kind.NONE, "N": Kind.NONE}
_DATABENTO_SIDES = {"A": Side.SELL, "B": Side.BUY, "N": None}


def databento_tick(path: PathLike) -> Decimal:
    """The tick implied by the data: 10^-(most decimal places seen in the price column)."""
    places = 0
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        column = header.index("price")
        for row in reader:
            if len(row) > column:
                _, _, fraction = row[column].partition(".")
                places = max(places, len(fraction.rstrip("0")))
    return Decimal(1).scaleb(-places)


def databento_spec(symbol: str, path: PathLike, tick_size: Decimal | None = None
                   ) -> InstrumentSpec:
    """The spec a Databento file implies: its price precision, whole contracts."""
    return InstrumentSpec(symbol, tick_size or databento_tick(path), Decimal(1))


def iso_to_ns(text: str) -> int:
    """'2025-09-24 19:30:00.000860311+00:00' (or a plain integer) -> Unix nanoseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    zone = "+00:00"
    if text.endswith("Z"):
        text = text[:-1]
    else:
        for position in range(len(text) - 1, 10, -1):  # a +hh:mm / -hh:mm after the time
            if text[position] in "+-":
                text, zone = text[:position], text[position:]
                break
    head, _, digits = text.partition(".")
    if digits and not digits.isdigit():
        raise ValueError(f"bad fraction of a second in {text!r}")
    return _whole_seconds(head, zone) * 1_000_000_000 + int(digits.ljust(9, "0")[:9])


@functools.lru_cache(maxsize=4096)
def _whole_seconds(head: str, zone: str) -> int:
    """Epoch seconds of '2025-09-24 19:30:00' in `zone` (cached: rows share seconds)."""
    moment = datetime.datetime.fromisoformat(head.replace("T", " ") + zone)
    return int(moment.timestamp())


def read_databento(path: PathLike, spec: InstrumentSpec | None = None,
                   skip_bad: bool = False) -> Iterator[MarketRecord]:
    """Databento MBO records as CSV, with or without the leading `ts_recv` column.

    Written out flat with two caches, because replay reads a lot of rows: a day repeats a few
    thousand prices (text -> ticks) and shares each second among many rows (the date and time
    -> epoch nanoseconds).
    """
    path = Path(path)
    if spec is None:
        spec = databento_spec(path.stem, path)
    with path.open() as handle:  # universal newlines: every line ends in a plain \n
        header = [name.strip() for name in _csv_fields(handle.readline())]
        if header == [""]:
            return
        try:
            ts_at, action_at, side_at, price_at, size_at, id_at = (
                header.index(name) for name in
                ("ts_event", "action", "side", "price", "size", "order_id"))
        except ValueError as missing:
            raise BadRowError(path, 1, f"header: missing column ({missing})") from None
        recv_at = header.index("ts_recv") if "ts_recv" in header else None
        last = max(ts_at, action_at, side_at, price_at, size_at, id_at,
                   -1 if recv_at is None else recv_at) + 1  # fields to split
        actions, sides = _DATABENTO_ACTIONS, _DATABENTO_SIDES
        gtc = TimeInForce.GTC
        clear, none, add, modify, trade = Kind.CLEAR, Kind.NONE, Kind.ADD, Kind.MODIFY, Kind.PRINT
        prices: dict[str, int | None] = {}
        seconds: dict[str, int] = {}
        # The newline stays on the unsplit rest of the line unless a column we read is last.
        strip = last >= len(header)
        for line, text in enumerate(handle, start=2):
            if strip and text[-1:] == "\n":
                text = text[:-1]
            if not text or text == "\n":
                continue
            # Databento writes no quotes; a line that has some goes through the csv module
            row = text.split(",", last) if '"' not in text else _csv_fields(text)
            try:
                kind = actions.get(row[action_at])
                side_code = row[side_at]
                if kind is None or side_code not in sides:  # perhaps padded: check strictly
                    kind, side_code = _databento_codes(row[action_at], side_code)
                ts = _epoch_ns(row[ts_at], seconds)
                received = None if recv_at is None else _epoch_ns(row[recv_at], seconds)
                if kind is clear or kind is none:
                    yield MarketRecord(line, ts, kind, received=received)
                    continue
                text = row[price_at]
                if text in prices:
                    price = prices[text]
                else:
                    price = spec.price_to_ticks(Decimal(text)) if text.strip() else None
                    if len(prices) < 1_000_000:
                        prices[text] = price
                size = int(row[size_at])
                side = sides[side_code]
                if (kind is add or kind is modify) and (side is None or price is None
                                                         or size <= 0):
                    raise ValueError(f"{row[action_at].strip()} needs a side, a price and a "
                                     "positive size")
                record = MarketRecord(line, ts, kind, int(row[id_at]), side, price, size, gtc,
                                      False, None, kind is trade, received=received)
            except (ValueError, IndexError, InvalidOperation, InputError) as error:
                record = bad_row(path, line, f"unparseable: {error}", skip_bad)
            yield record


def _epoch_ns(stamp: str, seconds: dict[str, int]) -> int:
    """A Databento timestamp as epoch ns: the common form, 2025-09-24 19:30:00.000860311
    +00:00, without parsing (whole seconds cached in `seconds`), any other ISO form parsed."""
    fraction = stamp[20:29]
    if len(stamp) == 35 and stamp[29:] == "+00:00" and stamp[19] == "." and fraction.isdigit():
        base = seconds.get(stamp[:19])
        if base is None:
            base = seconds[stamp[:19]] = _whole_seconds(stamp[:19], "+00:00") * 1_000_000_000
        return base + int(fraction)
    return iso_to_ns(stamp)


def _csv_fields(text: str) -> list[str]:
    """One line's fields, quotes and all."""
    return next(csv.reader([text.rstrip("\r\n")]), [""])


def _databento_codes(action: str, side: str) -> tuple[Kind, str]:
    """The action and side codes of a row, allowing padding; a ValueError names a bad one."""
    kind = _DATABENTO_ACTIONS.get(action.strip())
    if kind is None:
        raise ValueError(f"unknown action {action.strip()!r}")
    if side.strip() not in _DATABENTO_SIDES:
        raise ValueError(f"unknown side {side.strip()!r}")
    return kind, side.strip()


MBP_LEVELS = 10
_RESTING = {"A": Side.BUY, "B": Side.SELL}
"""A trade's `side` is its aggressor's: a sell aggressor (A) takes the resting bids."""


def read_databento_mbp(path: PathLike, spec: InstrumentSpec | None = None
                       ) -> Iterator[tuple[MarketRecord, list[tuple[Side, int, int]]]]:
    """Databento MBP-10 records as CSV: each row's event and the top ten levels after it.

    A trade (`T`) becomes an EXECUTE on the resting side at its price and size (a PRINT when
    the aggressor side is `N`); every other action is NONE: the levels carry the book. Levels
    are (side, price in ticks, size) with empty ones left out; `ts_recv`, when present,
    becomes the record's `received`."""
    path = Path(path)
    if spec is None:
        spec = databento_spec(path.stem, path)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        try:
            ts_at, action_at, side_at, price_at, size_at = (
                header.index(name) for name in ("ts_event", "action", "side", "price", "size"))
            columns = [(header.index(f"bid_px_{n:02d}"), header.index(f"bid_sz_{n:02d}"),
                        header.index(f"ask_px_{n:02d}"), header.index(f"ask_sz_{n:02d}"))
                       for n in range(MBP_LEVELS)]
        except ValueError as missing:
            raise BadRowError(path, 1, f"header: missing column ({missing})") from None
        recv_at = header.index("ts_recv") if "ts_recv" in header else None
        seconds: dict[str, int] = {}
        prices: dict[str, int] = {}

        def ticks(text: str) -> int:
            found = prices.get(text)
            if found is None:
                found = prices[text] = spec.price_to_ticks(Decimal(text))
            return found

        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                ts = _epoch_ns(row[ts_at], seconds)
                received = None if recv_at is None else _epoch_ns(row[recv_at], seconds)
                levels: list[tuple[Side, int, int]] = []
                for bid_px, bid_sz, ask_px, ask_sz in columns:
                    for side, px, sz in ((Side.BUY, row[bid_px], row[bid_sz]),
                                         (Side.SELL, row[ask_px], row[ask_sz])):
                        if px.strip() and int(sz or 0) > 0:
                            levels.append((side, ticks(px.strip()), int(sz)))
                if row[action_at].strip() == "T":
                    resting = _RESTING.get(row[side_at].strip())
                    record = MarketRecord(line, ts, Kind.EXECUTE if resting else Kind.PRINT,
                                          0, resting, ticks(row[price_at].strip()),
                                          int(row[size_at]), received=received)
                else:
                    record = MarketRecord(line, ts, Kind.NONE, received=received)
            except (ValueError, IndexError, InvalidOperation, InputError) as error:
                raise BadRowError(path, line, f"unparseable: {error}") from None
            yield record, levels
