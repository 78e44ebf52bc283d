"""`--book-out`: the top levels after every input row, in LOBSTER's orderbook layout.

Per level: ask price, ask size, bid price, bid size; an empty level is 9999999999 /
-9999999999 with size 0. Prices in LOBSTER's integer units for LOBSTER data (so the output
compares with LOBSTER's own orderbook file), else decimals in the symbol's units.
"""

from __future__ import annotations

from typing import IO

from lobgw.actors import BookReader
from lobgw.book.events import Event
from lobgw.book.instrument import InstrumentSpec, SpecFormat
from lobgw.sim.records import LOBSTER_EMPTY_ASK, LOBSTER_EMPTY_BID


class BookWriter:
    """Writes the top `levels` after each input row in LOBSTER's orderbook layout."""

    def __init__(self, handle: IO[str], levels: int, spec: InstrumentSpec,
                 lobster_units: tuple[int, int] | None) -> None:
        """`lobster_units`: (price, size) factors to write LOBSTER's integer units, else
        decimals in the spec's units."""
        self.handle = handle
        self.levels = levels
        self.fmt = SpecFormat(spec)
        self.lobster_units = lobster_units
        self.pending: list[str] = []

    def capture(self, book: BookReader) -> str:
        """The current top levels as one CSV line."""
        bids, asks = book.depth(self.levels)
        fields: list[str] = []
        price, quantity = self._price, self._quantity
        for index in range(self.levels):
            if index < len(asks):
                fields += (price(asks[index][0]), quantity(asks[index][1]))
            else:
                fields += (str(LOBSTER_EMPTY_ASK), "0")
            if index < len(bids):
                fields += (price(bids[index][0]), quantity(bids[index][1]))
            else:
                fields += (str(LOBSTER_EMPTY_BID), "0")
        return ",".join(fields)

    def _price(self, ticks: int) -> str:
        if self.lobster_units is not None:
            return str(ticks * self.lobster_units[0])
        return self.fmt.price(ticks)

    def _quantity(self, lots: int) -> str:
        if self.lobster_units is not None:
            return str(lots * self.lobster_units[1])
        return self.fmt.quantity(lots)

    def after_row(self, index: int, events: list[Event], book: BookReader) -> None:
        """Actor row hook: capture the book after one input row."""
        self.pending.append(self.capture(book))

    def flush(self) -> None:
        """Write out the captured rows."""
        if self.pending:
            self.handle.write("\n".join(self.pending) + "\n")
            self.pending.clear()
