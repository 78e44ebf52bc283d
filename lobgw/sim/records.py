"""One normalized market-data record, and one streaming reader per source format.

Every reader yields `MarketRecord`s in file order and never holds the file in memory. Prices
are integer ticks and quantities integer lots of the instrument spec the reader was given
(`natural_spec` says what a format implies when the symbol is not configured). A row that
cannot be read raises `BadRowError` with the file, the line number and the reason; the caller
decides whether to stop or skip (`--on-error`).

    format          rows                                     spec when not configured
    csv             lobgw's own: ts,msg_type,side,price,...   (must be configured)
    lobster         LOBSTER message files, types 1-7          tick 1, lot 1 (price x 10000)
    databento-mbo   Databento MBO as CSV                      tick from the price precision
"""

from __future__ import annotations

import csv
import datetime
import enum
import functools
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side, TimeInForce
from lobgw.errors import InputError

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


class BadRowError(Exception):
    """A row that cannot be read: where, and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
        self.kind = reason.split(":", 1)[0]


# -- LOBSTER ----------------------------------------------------------------------------------

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


def read_lobster(path: Path, skip_bad: bool = False,
                 spec: InstrumentSpec | None = None) -> Iterator[MarketRecord]:
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
    with path.open() as handle:  # universal newlines: CRLF files read the same
        line = 0
        for text in handle:
            line += 1
            row = text.split(",")  # LOBSTER never quotes: no csv module needed
            if len(row) < 6:
                if text.strip():
                    yield _bad(path, line, f"unparseable: expected 6 or 7 columns, got "
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
                yield _bad(path, line, f"unknown type: {row[1]!r}", skip_bad)
            except ValueError as error:
                yield _bad(path, line, f"unparseable: {error}", skip_bad)


_LOBSTER_KINDS = {"1": Kind.ADD, "2": Kind.REDUCE, "3": Kind.DELETE, "4": Kind.EXECUTE,
                  "5": Kind.PRINT, "6": Kind.PRINT, "7": Kind.HALT}


def read_lobster_book_row(path: Path, row_number: int = 1,
                          spec: InstrumentSpec | None = None) -> list[tuple[Side, int, int]]:
    """The levels of one row of a LOBSTER orderbook file as (side, price, size) in the
    spec's ticks and lots."""
    price_factor, size_factor = lobster_factors(spec) if spec is not None else (1, 1)
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if number < row_number:
                continue
            levels = []
            values = [int(value) for value in row]
            for index in range(0, len(values), 4):
                ask, ask_size, bid, bid_size = values[index:index + 4]
                if ask_size and ask != LOBSTER_EMPTY_ASK:
                    levels.append((Side.SELL, ask // price_factor, ask_size // size_factor))
                if bid_size and bid != LOBSTER_EMPTY_BID:
                    levels.append((Side.BUY, bid // price_factor, bid_size // size_factor))
            return levels
    raise ValueError(f"{path} has no row {row_number}")


# -- Databento MBO ------------------------------------------------------------------------------

_DATABENTO_ACTIONS = {"A": Kind.ADD, "C": Kind.REDUCE, "M": Kind.MODIFY, "R": Kind.CLEAR,
                      "T": Kind.PRINT, "F": Kind.NONE, "N": Kind.NONE}
_DATABENTO_SIDES = {"A": Side.SELL, "B": Side.BUY, "N": None}


def databento_tick(path: Path) -> Decimal:
    """The tick implied by the data: 10^-(most decimal places seen in the price column)."""
    places = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        column = header.index("price")
        for row in reader:
            if len(row) > column:
                _, _, fraction = row[column].partition(".")
                places = max(places, len(fraction.rstrip("0")))
    return Decimal(1).scaleb(-places)


def databento_spec(symbol: str, path: Path, tick_size: Decimal | None = None) -> InstrumentSpec:
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


def read_databento(path: Path, spec: InstrumentSpec,
                   skip_bad: bool = False) -> Iterator[MarketRecord]:
    """Databento MBO records as CSV, with or without the leading `ts_recv` column.

    Written out flat with two caches, because replay reads a lot of rows: a day repeats a few
    thousand prices (text -> ticks) and shares each second among many rows (the date and time
    -> epoch nanoseconds).
    """
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
        last = max(ts_at, action_at, side_at, price_at, size_at, id_at) + 1  # fields to split
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
                stamp = row[ts_at]
                # the common form, 2025-09-24 19:30:00.000860311+00:00, without parsing
                fraction = stamp[20:29]
                if len(stamp) == 35 and stamp[29:] == "+00:00" and stamp[19] == "." \
                        and fraction.isdigit():
                    base = seconds.get(stamp[:19])
                    if base is None:
                        base = seconds[stamp[:19]] = (_whole_seconds(stamp[:19], "+00:00")
                                                      * 1_000_000_000)
                    ts = base + int(fraction)
                else:
                    ts = iso_to_ns(stamp)
                if kind is clear or kind is none:
                    yield MarketRecord(line, ts, kind)
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
                                      False, None, kind is trade)
            except (ValueError, IndexError, InvalidOperation, InputError) as error:
                record = _bad(path, line, f"unparseable: {error}", skip_bad)
            yield record


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


# -- lobgw csv ------------------------------------------------------------------------------------

CSV_HEADER = ("ts", "msg_type", "side", "price", "qty", "order_id")
CSV_OPTIONAL = ("tif", "flags", "account")


def read_csv(path: Path, spec: InstrumentSpec, skip_bad: bool = False
             ) -> Iterator[MarketRecord]:
    """lobgw's own format (see README): ts,msg_type,side,price,qty,order_id[,tif,flags,account].

    `ts` is Unix nanoseconds; `msg_type` is ADD (limit), MARKET, CANCEL or AMEND; `price` and
    `qty` are decimals checked against the symbol's tick and lot; `flags` may be POST_ONLY.
    """
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if tuple(header[:6]) != CSV_HEADER or any(h not in CSV_OPTIONAL for h in header[6:]):
            raise BadRowError(path, 1, "header: expected " + ",".join(CSV_HEADER)
                         + "[," + ",".join(CSV_OPTIONAL) + "]")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                record = _csv_record(line, dict(zip(header, (v.strip() for v in row),
                                                    strict=False)), spec)
            except (ValueError, KeyError, InvalidOperation) as error:
                record = _bad(path, line, f"unparseable: {error}", skip_bad)
            except InputError as error:
                record = _bad(path, line, f"{error.code}: {error.field}: {error.reason}",
                              skip_bad)
            yield record


def _csv_record(line: int, row: dict[str, str], spec: InstrumentSpec) -> MarketRecord:
    kind = {"ADD": Kind.ADD, "MARKET": Kind.MARKET, "CANCEL": Kind.DELETE,
            "AMEND": Kind.AMEND}.get(row["msg_type"].upper())
    if kind is None:
        raise ValueError(f"unknown msg_type {row['msg_type']!r}")
    side = None
    if row.get("side"):
        side = Side(row["side"].upper())
    price = spec.price_to_ticks(Decimal(row["price"])) if row.get("price") else None
    quantity = spec.quantity_to_lots(Decimal(row["qty"]), "qty") if row.get("qty") else 0
    if kind in (Kind.ADD, Kind.MARKET) and (side is None or not quantity):
        raise ValueError(f"{row['msg_type']} needs a side and a quantity")
    if kind is Kind.ADD and price is None:
        raise ValueError("ADD needs a price")
    if kind is Kind.AMEND and price is None and not quantity:
        raise ValueError("AMEND needs a new price or quantity")
    tif = TimeInForce(row["tif"].upper()) if row.get("tif") else TimeInForce.GTC
    flags = {flag.strip().upper() for flag in row.get("flags", "").split("|") if flag.strip()}
    unknown = flags - {"POST_ONLY"}
    if unknown:
        raise ValueError(f"unknown flags {sorted(unknown)}")
    return MarketRecord(line, int(row["ts"]), kind, int(row["order_id"]), side, price, quantity,
                        tif, "POST_ONLY" in flags, row.get("account") or None)


def read_records(fmt: str, path: Path, spec: InstrumentSpec,
                 skip_bad: bool = False) -> Iterator[MarketRecord]:
    """The reader for `fmt`. With `skip_bad`, unreadable rows come out as INVALID records
    (in their place, so outputs keep one row per input row) instead of raising BadRowError."""
    if fmt == "lobster":
        return read_lobster(path, skip_bad, spec)
    if fmt == "databento-mbo":
        return read_databento(path, spec, skip_bad)
    if fmt == "csv":
        return read_csv(path, spec, skip_bad)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _bad(path: Path, line: int, reason: str, skip: bool) -> MarketRecord:
    """An INVALID record for a skipped row, or raise BadRowError."""
    if not skip:
        raise BadRowError(path, line, reason)
    return MarketRecord(line, 0, Kind.INVALID, error=reason)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

