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

from lobgw.encoding import Pieces, array_pieces, map_pieces
from lobgw.orders.lifecycle import ExecutionKind
from lobgw.orders.tracker import Fill, OrderState


class Execution(msgspec.Struct, frozen=True, gc=False):
    """One execution report of an account: what happened to one of its orders, the order's
    state just after it (a copy), and the account's own gap-free sequence number of reports
    on this symbol (`account_seq`: 1, 2, 3, ... rebuilt identically after a restart)."""

    symbol: str
    seq: int
    timestamp: int
    kind: ExecutionKind
    account_seq: int
    order: OrderState
    fill: Fill | None


class Retention(msgspec.Struct, frozen=True):
    """How much history a symbol keeps: the newest `orders` finished orders and `executions`
    reports per account, none older than `max_age_seconds` of event time (0: no age limit)."""

    orders: int = 100_000
    executions: int = 100_000
    max_age_seconds: float = 7 * 24 * 3600.0


class _Saved(msgspec.Struct):
    finished: list[OrderState]
    executions: list[Execution]
    account_seqs: dict[str, int] = {}


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
        self.account_seqs: dict[str, int] = {}
        """The last sequence number given to each account's reports (kept when the reports
        themselves leave the window, so numbers never repeat)."""
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

    def record(self, kind: ExecutionKind, order: OrderState, seq: int, timestamp: int,
               fill: Fill | None) -> Execution:
        """Keep one execution report of the order's account, numbered; return it."""
        account = order.account
        account_seq = self.account_seqs.get(account, 0) + 1
        self.account_seqs[account] = account_seq
        execution = Execution(self.symbol, seq, timestamp, kind, account_seq,
                              msgspec.structs.replace(order), fill)
        reports = self.executions.get(account)
        if reports is None:
            reports = self.executions[account] = deque(maxlen=self.retention.executions)
        reports.append(execution)
        if execution.timestamp > self.newest:
            self.newest = execution.timestamp
        horizon = self.newest - self._age
        while reports[0].timestamp < horizon:
            reports.popleft()
        return execution

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
        """The account's executions with an event sequence number above `after`, oldest
        first."""
        return [execution for execution in self.executions.get(account, ())
                if execution.seq > after and (kinds is None or execution.kind in kinds)]

    def since(self, account: str, account_seq: int) -> list[Execution]:
        """The account's reports numbered above `account_seq` that are still kept."""
        return [execution for execution in self.executions.get(account, ())
                if execution.account_seq > account_seq]

    # -- snapshots ---------------------------------------------------------------------------

    def capture(self) -> Callable[[], Pieces]:
        """Take the history as it is now (cheap: its entries never change once kept) and
        return what encodes it for a snapshot, in pieces, later."""
        finished = list(self.finished.values())
        executions = list(itertools.chain.from_iterable(self.executions.values()))
        account_seqs = dict(self.account_seqs)
        return lambda: map_pieces([("finished", lambda: array_pieces(finished)),
                                   ("executions", lambda: array_pieces(executions)),
                                   ("account_seqs", account_seqs)])

    def of_order(self) -> dict[int, list[Execution]]:
        """Every kept execution by order id, oldest first (to rebuild open orders)."""
        by_order: dict[int, list[Execution]] = {}
        for reports in self.executions.values():
            for execution in reports:
                by_order.setdefault(execution.order.order_id, []).append(execution)
        return by_order

    def decode(self, data: bytes) -> None:
        """Replace the history with what a snapshot's `capture` encoded."""
        saved = _decode(data)
        self.finished = OrderedDict((order.order_id, order) for order in saved.finished)
        self.executions = {}
        for execution in sorted(saved.executions, key=lambda e: e.seq):
            self.executions.setdefault(execution.order.account, deque(
                maxlen=self.retention.executions)).append(execution)
            self.newest = max(self.newest, execution.timestamp)
        self.account_seqs = dict(saved.account_seqs)
        for order in saved.finished:
            self.newest = max(self.newest, order.updated_at)
