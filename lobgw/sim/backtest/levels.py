"""Backtests on aggregated data: the book reset to the vendor's levels at every row, and a
queue-position model for the strategy's orders inside an aggregated level.

Aggregated data (LOBSTER orderbook files, MBP) gives each level's total size, not its
orders, so where a strategy order stands in a level's queue has to be estimated:

- `risk-averse`: the strategy joins at the back; only trades at its price move it forward
  (every other decrease of the level is assumed to be behind it).
- `probabilistic`: a decrease that is not a trade happens ahead of the strategy's order with
  probability f(front) / (f(front) + f(back)), f(x) = x**power, where front is the size
  ahead of it and back the size behind (hftbacktest's probabilistic queue models; at the
  back of the queue every decrease is ahead, at the front none is).

Order-by-order data keeps the exact queue (`lobgw.sim.backtest.core`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Literal

from lobgw.book.commands import AnyCommand, CancelOrder, SubmitOrder
from lobgw.book.types import SelfTradePrevention, Side
from lobgw.sim.records import MarketRecord
from lobgw.sim.translate import MARKET_ACCOUNT

QueueModelName = Literal["risk-averse", "probabilistic"]
QUEUE_MODELS: tuple[str, ...] = ("risk-averse", "probabilistic")
LEVEL_ID_BASE = 1 << 59
"""Ids of the synthetic orders that stand for the vendor's levels (below strategy ids)."""

Level = tuple[Side, int, int]
"""(side, price in ticks, size in lots)."""


class LevelReset:
    """Keeps one synthetic order per vendor level and says what changes make the book the
    vendor's: cancels first (so no new level can cross an old one), then new orders."""

    def __init__(self) -> None:
        self.levels: dict[tuple[Side, int], tuple[int, int]] = {}
        """(side, price) -> (synthetic order id, size)."""
        self._next_id = LEVEL_ID_BASE

    def size(self, side: Side, price: int) -> int:
        """The vendor's size at a level now (0 when it has none)."""
        found = self.levels.get((side, price))
        return found[1] if found is not None else 0

    def commands(self, levels: list[Level], timestamp: int) -> list[AnyCommand]:
        """The commands that turn the current levels into `levels`."""
        wanted = {(side, price): size for side, price, size in levels}
        cancels: list[AnyCommand] = []
        submits: list[AnyCommand] = []
        for key, (order_id, size) in list(self.levels.items()):
            if wanted.get(key) != size:
                cancels.append(CancelOrder(order_id, timestamp))
                del self.levels[key]
        for (side, price), size in wanted.items():
            if (side, price) not in self.levels:
                self._next_id += 1
                self.levels[side, price] = (self._next_id, size)
                submits.append(SubmitOrder(self._next_id, MARKET_ACCOUNT, side, size,
                                           price=price, stp=SelfTradePrevention.NONE,
                                           timestamp=timestamp))
        return cancels + submits


class QueueModel:
    """Where each strategy order stands in its aggregated level: the size ahead of it."""

    def __init__(self, kind: QueueModelName = "risk-averse", power: float = 2.0) -> None:
        if kind not in QUEUE_MODELS:
            raise ValueError(f"queue_model: {kind!r} is not one of {', '.join(QUEUE_MODELS)}")
        if not power > 0:
            raise ValueError(f"queue_power: {power} must be positive")
        self.kind = kind
        self.power = power
        self.ahead: dict[int, float] = {}

    def join(self, order_id: int, ahead: float) -> None:
        """An order rests (or was re-queued by an amend) behind `ahead` lots."""
        self.ahead[order_id] = ahead

    def leave(self, order_id: int) -> None:
        """The order is gone."""
        self.ahead.pop(order_id, None)

    def at_most(self, order_id: int, size: int) -> None:
        """No more can stand ahead of an order than its level holds."""
        if order_id in self.ahead and self.ahead[order_id] > size:
            self.ahead[order_id] = float(size)

    def trade(self, order_id: int, quantity: int) -> int:
        """A trade of `quantity` at the order's price: what reaches the order (the part past
        what stood ahead of it)."""
        ahead = self.ahead.get(order_id, 0.0)
        reached = max(0, quantity - math.ceil(ahead))
        self.ahead[order_id] = max(0.0, ahead - quantity)
        return reached

    def decrease(self, order_id: int, quantity: int, level_before: int) -> None:
        """The level lost `quantity` lots other than by trades (cancels): move the order
        forward by the share the model puts ahead of it."""
        if self.kind == "risk-averse" or order_id not in self.ahead:
            return
        front = self.ahead[order_id]
        back = max(0.0, level_before - front)
        weight_front, weight_back = front ** self.power, back ** self.power
        share_ahead = 1.0 if not weight_front + weight_back else (
            weight_front / (weight_front + weight_back))
        behind = min(back, (1 - share_ahead) * quantity)  # what cannot fit behind is ahead
        self.ahead[order_id] = max(0.0, front - (quantity - behind))


def split_levels(pairs: Iterable[tuple[MarketRecord, list[Level]]]
                 ) -> tuple[Iterator[MarketRecord], Iterator[list[Level]]]:
    """Records and their levels from one source (Databento MBP-10) as the two streams a
    backtest reads in lockstep: each record's levels are ready when it has been read."""
    waiting: deque[list[Level]] = deque()

    def records() -> Iterator[MarketRecord]:
        for record, levels in pairs:
            waiting.append(levels)
            yield record

    def levels() -> Iterator[list[Level]]:
        while waiting:
            yield waiting.popleft()

    return records(), levels()
