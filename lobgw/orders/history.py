"""What happened to one symbol's orders, kept for a retention window (pure, like the engine).

Finished orders (filled, cancelled, expired, rejected) and every account's executions
(accepted, fill, amended, canceled, expired, rejected) in event order. Retention is by count
and by age measured in *event* time (the commands' timestamps, which the journal keeps), so
a history rebuilt from a snapshot and the journal tail is the one that was lost, entry for
entry. `encode` / `decode` carry it in the symbol's snapshots.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable

import msgspec

from lobgw.book.types import Reason, Side
from lobgw.encoding import Pieces, array_pieces, map_pieces
from lobgw.orders.lifecycle import ExecutionKind, OrderStatus
from lobgw.orders.tracker import Fill, OrderState


class Execution(msgspec.Struct, frozen=True, gc=False):
    """One execution report of an account: what happened to one of its orders, and after it
    the order's status, filled and remaining lots (prices in ticks, quantities in lots)."""

    symbol: str
    seq: int
    timestamp: int
    kind: ExecutionKind
    order_id: int
    account: str
    client_order_id: str | None
    side: Side
    price: int | None
    status: OrderStatus
    filled: int
    remaining: int
    reason: Reason | None
    fill: Fill | None

    @classmethod
    def of(cls, kind: ExecutionKind, order: OrderState, seq: int, timestamp: int,
           fill: Fill | None) -> Execution:
        """The report of `kind` happening to `order` (its state after it)."""
        return cls(order.symbol, seq, timestamp, kind, order.order_id, order.account,
                   order.client_order_id, order.side, order.price, order.status, order.filled,
                   order.remaining, order.reason, fill)


class Retention(msgspec.Struct, frozen=True):
    """How much history a symbol keeps: the newest `orders` finished orders and `executions`
    reports per account, none older than `max_age_seconds` of event time (0: no age limit)."""

    orders: int = 100_000
    executions: int = 100_000
    max_age_seconds: float = 7 * 24 * 3600.0


class _Saved(msgspec.Struct):
    finished: list[OrderState]
    executions: list[Execution]


_decode = msgspec.msgpack.Decoder(_Saved).decode


class OrderHistory:
    """One symbol's finished orders and executions within the retention window."""

    def __init__(self, symbol: str, retention: Retention | None = None) -> None:
        self.symbol = symbol
        self.retention = retention or Retention()
        self._orders_kept = self.retention.orders
        self._age = int(self.retention.max_age_seconds * 1e9) or (1 << 62)
        self.finished: OrderedDict[int, OrderState] = OrderedDict()
        self.executions: dict[str, deque[Execution]] = {}
        self.newest = 0
        """The newest event time seen (what ages are measured from)."""

    def finish(self, order: OrderState) -> tuple[OrderState, ...]:
        """Keep a finished order; return the orders that fell out of the window.

        Both checks run on every call (not every so often), so the window is the same
        whether it was built live or rebuilt from a snapshot and a journal tail.
        """
        finished = self.finished
        finished[order.order_id] = order
        if order.updated_at > self.newest:
            self.newest = order.updated_at
        if len(finished) > self._orders_kept or \
                next(iter(finished.values())).updated_at < self.newest - self._age:
            return self._expire()
        return ()

    def record(self, execution: Execution) -> None:
        """Keep one execution report of its account."""
        reports = self.executions.get(execution.account)
        if reports is None:
            reports = self.executions[execution.account] = deque(
                maxlen=self.retention.executions)
        reports.append(execution)
        if execution.timestamp > self.newest:
            self.newest = execution.timestamp
        horizon = self.newest - self._age
        while reports[0].timestamp < horizon:
            reports.popleft()

    def _expire(self) -> tuple[OrderState, ...]:
        gone = []
        horizon = self.newest - self._age
        finished = self.finished
        while finished:
            oldest = next(iter(finished.values()))
            if len(finished) <= self._orders_kept and oldest.updated_at >= horizon:
                break
            gone.append(finished.popitem(last=False)[1])
        return tuple(gone)

    def of_account(self, account: str, after: int, kinds: frozenset[ExecutionKind] | None
                   ) -> list[Execution]:
        """The account's executions with a sequence number above `after`, oldest first."""
        return [execution for execution in self.executions.get(account, ())
                if execution.seq > after and (kinds is None or execution.kind in kinds)]

    # -- snapshots ---------------------------------------------------------------------------

    def capture(self) -> Callable[[], Pieces]:
        """Take the history as it is now (cheap: its entries never change once kept) and
        return what encodes it for a snapshot, in pieces, later."""
        finished = list(self.finished.values())
        executions = list(itertools.chain.from_iterable(self.executions.values()))
        return lambda: map_pieces([("finished", lambda: array_pieces(finished)),
                                   ("executions", lambda: array_pieces(executions))])

    def of_order(self) -> dict[int, list[Execution]]:
        """Every kept execution by order id, oldest first (to rebuild open orders)."""
        by_order: dict[int, list[Execution]] = {}
        for reports in self.executions.values():
            for execution in reports:
                by_order.setdefault(execution.order_id, []).append(execution)
        return by_order

    def decode(self, data: bytes) -> None:
        """Replace the history with what a snapshot's `capture` encoded."""
        saved = _decode(data)
        self.finished = OrderedDict((order.order_id, order) for order in saved.finished)
        self.executions = {}
        for execution in sorted(saved.executions, key=lambda e: e.seq):
            self.executions.setdefault(execution.account, deque(
                maxlen=self.retention.executions)).append(execution)
            self.newest = max(self.newest, execution.timestamp)
        for order in saved.finished:
            self.newest = max(self.newest, order.updated_at)
