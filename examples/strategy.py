"""A strategy of your own: buy a quantity by resting at the best bid, re-pegging as it moves.

    python examples/strategy.py [LOBSTER_MESSAGE_FILE]

Subclass `BaseStrategy`, react in `on_market_data` / `on_fill`, act with `place`, `amend`
and `cancel`; the backtest replays real order-level data through the same matching engine
the gateway runs, with your orders in the real queue.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lobgw.book import Side
from lobgw.orders import Fill
from lobgw.sim.backtest import BacktestEngine, BaseStrategy, BookView
from lobgw.sim.records import lobster_spec

DATA = (Path(__file__).parent.parent / "tests" / "data"
        / "AMZN_2012-06-21_34200000_57600000_message_1.csv")


class JoinTheBid(BaseStrategy):
    """Work a buy order at the best bid; never cross the spread."""

    name = "join-the-bid"

    def __init__(self, quantity: int, clip: int) -> None:
        super().__init__()
        self.quantity = quantity
        self.side = Side.BUY
        self.clip = clip
        self.filled = 0
        self.working: int | None = None

    def on_market_data(self, view: BookView) -> None:
        """Keep one order of at most `clip` lots at the current best bid."""
        if view.bid is None or self.is_done():
            return
        order = self.orders.get(self.working) if self.working is not None else None
        if order is None:
            size = min(self.clip, self.quantity - self.filled)
            self.working = self.place(Side.BUY, size, view.bid, post_only=True)
        elif order.price != view.bid and order.order_id in self.open_orders:
            self.amend(order.order_id, price=view.bid)

    def on_fill(self, fill: Fill) -> None:
        """Count what is done; the next market data places the next clip."""
        self.filled += fill.quantity
        if fill.remaining == 0:
            self.working = None

    def is_done(self) -> bool:
        """Stop once the quantity is bought."""
        return self.filled >= self.quantity

    def describe(self) -> dict[str, object]:
        """What the report shows beside the standard figures."""
        return {"clip": self.clip, "filled": self.filled}


def main() -> None:
    """Backtest JoinTheBid on a LOBSTER day and print the summary."""
    path = sys.argv[1] if len(sys.argv) > 1 else DATA
    result = BacktestEngine(path, lobster_spec("AMZN"), JoinTheBid(quantity=2_000, clip=100),
                            latency_us=500).run()
    print(result.table())


if __name__ == "__main__":
    main()
