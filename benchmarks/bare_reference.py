"""A bare matching loop for calibrating a machine: dict + deque + SortedList, no events,
no checks, no self-trade prevention, cancels marked lazily. It is NOT a correct engine; it only
shows what the cheapest price-time matching in CPython costs on the machine at hand, so the
real engine's figures can be read against it (the issue quotes about 1.2M commands/s for such
a loop on the reference machine)."""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedList

from lobgw.book.commands import AmendOrder, AnyCommand, CancelOrder, SubmitOrder
from lobgw.book.types import Side, TimeInForce


class BareBook:
    """Price-time matching with nothing else."""

    def __init__(self) -> None:
        self.levels: tuple[dict[int, deque[list[int]]], dict[int, deque[list[int]]]] = ({}, {})
        self.prices = (SortedList(), SortedList())  # bids, asks
        self.orders: dict[int, list[int]] = {}

    def apply(self, command: AnyCommand) -> None:
        """Apply one command; return nothing."""
        kind = command.__class__
        if kind is SubmitOrder:
            self._submit(command)  # type: ignore[arg-type]
        elif kind is CancelOrder:
            order = self.orders.pop(command.order_id, None)  # type: ignore[union-attr]
            if order is not None:
                order[1] = 0
        elif kind is AmendOrder:
            order = self.orders.get(command.order_id)  # type: ignore[union-attr]
            if order is not None and command.quantity is not None:  # type: ignore[union-attr]
                order[1] = min(order[1], command.quantity)  # type: ignore[union-attr]

    def _submit(self, command: SubmitOrder) -> None:
        buy = command.side is Side.BUY
        quantity, price = command.quantity, command.price
        levels, prices = self.levels[buy], self.prices[buy]  # the opposite side
        while quantity and prices:
            best = prices[0] if buy else prices[-1]
            if price is not None and (best > price if buy else best < price):
                break
            queue = levels[best]
            while queue and quantity:
                maker = queue[0]
                fill = min(maker[1], quantity)
                maker[1] -= fill
                quantity -= fill
                if not maker[1]:
                    queue.popleft()
                    self.orders.pop(maker[0], None)
            if not queue:
                del levels[best]
                prices.remove(best)
        if quantity and price is not None and command.time_in_force is TimeInForce.GTC:
            own_levels, own_prices = self.levels[not buy], self.prices[not buy]
            order = [command.order_id, quantity]
            resting = own_levels.get(price)
            if resting is None:
                own_levels[price] = deque([order])
                own_prices.add(price)
            else:
                resting.append(order)
            self.orders[command.order_id] = order
