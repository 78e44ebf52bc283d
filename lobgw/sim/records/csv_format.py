"""lobgw's own csv format: ts,msg_type,side,price,qty,order_id[,tif,flags,account].

`ts` is Unix nanoseconds; `msg_type` is ADD (limit), MARKET, CANCEL or AMEND; `price` and
`qty` are decimals checked against the symbol's tick and lot; `flags` may be POST_ONLY.
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
CSV_OPTIONAL = ("tif", "flags", "account")


def read_csv(path: PathLike, spec: InstrumentSpec | None = None, skip_bad: bool = False
             ) -> Iterator[MarketRecord]:
    """lobgw's own format (see README): ts,msg_type,side,price,qty,order_id[,tif,flags,account].

    `ts` is Unix nanoseconds; `msg_type` is ADD (limit), MARKET, CANCEL or AMEND; `price` and
    `qty` are decimals checked against the symbol's tick and lot; `flags` may be POST_ONLY.
    """
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
    if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
        raise ValueError(f"tif {tif.value} is not in the csv format (GTC, IOC or FOK)")
    flags = {flag.strip().upper() for flag in row.get("flags", "").split("|") if flag.strip()}
    unknown = flags - {"POST_ONLY"}
    if unknown:
        raise ValueError(f"unknown flags {sorted(unknown)}")
    return MarketRecord(line, int(row["ts"]), kind, int(row["order_id"]), side, price, quantity,
                        tif, "POST_ONLY" in flags, row.get("account") or None)
