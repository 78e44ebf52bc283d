"""Measured latencies for backtests: a table of (time, entry, response) rows, interpolated.

A file has a header `time,entry_us,response_us` and one row per measurement: `time` in the
data's own clock (seconds: after midnight for LOBSTER, since the epoch for Databento and
csv; or ISO-8601 text), the latencies in microseconds. Between rows the latencies are
interpolated linearly; before the first and after the last the nearest row holds.
"""

from __future__ import annotations

import bisect
import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lobgw.sim.records import iso_to_ns

NS_PER_US = 1_000


class LatencyTable:
    """Entry and response latency (ns) as functions of data time (ns)."""

    def __init__(self, rows: list[tuple[int, int, int]]) -> None:
        if not rows:
            raise ValueError("a latency table needs at least one row")
        rows = sorted(rows)
        for time, entry, response in rows:
            if entry < 0 or response < 0:
                raise ValueError(f"latencies are at least 0 (at time {time} ns: entry "
                                 f"{entry} ns, response {response} ns)")
        self.times = [row[0] for row in rows]
        self.rows = rows

    def at(self, time: int) -> tuple[int, int]:
        """(entry, response) latency at data time `time`."""
        index = bisect.bisect_right(self.times, time)
        if index == 0:
            return self.rows[0][1], self.rows[0][2]
        if index == len(self.rows):
            return self.rows[-1][1], self.rows[-1][2]
        (t0, e0, r0), (t1, e1, r1) = self.rows[index - 1], self.rows[index]
        share = (time - t0) / (t1 - t0)
        return round(e0 + (e1 - e0) * share), round(r0 + (r1 - r0) * share)

    @property
    def most(self) -> tuple[int, int]:
        """The largest entry and response latency in the table."""
        return max(row[1] for row in self.rows), max(row[2] for row in self.rows)


def read_latency_file(path: Path) -> LatencyTable:
    """Read a latency file (see the module docstring); a ValueError names the line, the
    column and the reason."""
    rows: list[tuple[int, int, int]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if header != ["time", "entry_us", "response_us"]:
            raise ValueError(f"{path}:1: the header must be time,entry_us,response_us")
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{line}: expected 3 columns, found {len(row)}")
            rows.append((_time(row[0], path, line), _micros(row[1], "entry_us", path, line),
                         _micros(row[2], "response_us", path, line)))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return LatencyTable(rows)


def _time(text: str, path: Path, line: int) -> int:
    text = text.strip()
    try:
        return int(Decimal(text) * 1_000_000_000)
    except InvalidOperation:
        pass
    try:
        return iso_to_ns(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: time {text!r} is neither seconds nor ISO-8601"
                         ) from None


def _micros(text: str, column: str, path: Path, line: int) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValueError(f"{path}:{line}: {column} {text.strip()!r} is not a number")
    if value < 0:
        raise ValueError(f"{path}:{line}: {column} {text.strip()} is negative")
    return int(value * NS_PER_US)
