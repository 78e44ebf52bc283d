"""lobgw's own csv format: ts,msg_type,side,price,qty,order_id[,tif,flags,account,
stop_price,display_qty,expire_ts].

`ts` is Unix nanoseconds; `msg_type` is ADD (limit), MARKET, CANCEL, AMEND, STOP (a
stop-market: `stop_price`, no `price`) or STOP_LIMIT (`price` and `stop_price`); `price`,
`qty`, `stop_price` and `display_qty` are decimals checked against the symbol's tick and lot;
`flags` may be POST_ONLY; `tif` is GTC, IOC, FOK, GTD or DAY, the last two with `expire_ts`
(ns, the data's time: a file has no session, so a DAY row says when its day ends);
`display_qty` makes an ADD an iceberg.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side, TimeInForce
from lobgw.errors import BadRowError, InputError
from lobgw.sim.records.base import Kind, MarketRecord, PathLike, bad_row

CSV_HEADER = ("ts", "msg_type", "side", "price", "qty", "order_id")
CSV_OPTIONAL = ("tif", "flags", "account", "stop_price", "display_qty", "expire_ts")


def read_csv(path: PathLike, spec: InstrumentSpec | None = None, skip_bad: bool = False
             ) -> Iterator[MarketRecord]:
    """lobgw's own format (see the module docstring and README): ts,msg_type,side,price,
    qty,order_id[,tif,flags,account,stop_price,display_qty,expire_ts]."""
    if spec is None:
        raise ValueError("the csv format needs the symbol's spec (its tick and lot sizes)")
    path = Path(path)
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
                record = bad_row(path, line, f"unparseable: {error}", skip_bad)
            except InputError as error:
                record = bad_row(path, line, f"{error.code}: {error.field}: {error.reason}",
                              skip_bad)
            yield record


def _csv_record(line: int, row: dict[str, str], spec: InstrumentSpec) -> MarketRecord:
    msg_type = row["msg_type"].upper()
    kind = {"ADD": Kind.ADD, "MARKET": Kind.MARKET, "CANCEL": Kind.DELETE,
            "AMEND": Kind.AMEND, "STOP": Kind.ORDER, "STOP_LIMIT": Kind.ORDER}.get(msg_type)
    if kind is None:
        raise ValueError(f"unknown msg_type {row['msg_type']!r}")
    side = None
    if row.get("side"):
        side = Side(row["side"].upper())
    price = spec.price_to_ticks(Decimal(row["price"])) if row.get("price") else None
    quantity = spec.quantity_to_lots(Decimal(row["qty"]), "qty") if row.get("qty") else 0
    if kind in (Kind.ADD, Kind.MARKET, Kind.ORDER) and (side is None or not quantity):
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
    stop_price = (spec.price_to_ticks(Decimal(row["stop_price"]), "stop_price")
                  if row.get("stop_price") else None)
    display = (spec.quantity_to_lots(Decimal(row["display_qty"]), "display_qty")
               if row.get("display_qty") else None)
    expire = int(row["expire_ts"]) if row.get("expire_ts") else None
    if kind is Kind.ORDER:
        if stop_price is None:
            raise ValueError(f"{msg_type} needs a stop_price")
        if (msg_type == "STOP_LIMIT") != (price is not None):
            raise ValueError("STOP_LIMIT needs a price; STOP has none")
    elif stop_price is not None:
        raise ValueError("only STOP and STOP_LIMIT take a stop_price")
    if display is not None:
        if kind is not Kind.ADD:
            raise ValueError("display_qty is for ADD (an iceberg)")
        if not 0 < display <= quantity:
            raise ValueError("display_qty must be above 0 and at most qty")
    if (tif in (TimeInForce.GTD, TimeInForce.DAY)) != (expire is not None):
        raise ValueError("expire_ts is required for GTD and DAY, and only for them")
    if expire is not None and kind is Kind.MARKET:
        raise ValueError("a market order cannot be GTD or DAY")
    if display is not None or expire is not None:
        kind = Kind.ORDER
    return MarketRecord(line, int(row["ts"]), kind, int(row["order_id"]), side, price, quantity,
                        tif, "POST_ONLY" in flags, row.get("account") or None,
                        stop_price=stop_price, display_quantity=display, expire_time=expire)
