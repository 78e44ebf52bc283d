"""Order entry for the gateway: validation at the edge, ownership, client order ids, status.

`OrderRegistry` follows every symbol's events (it is an actor listener, so it runs inside the
actor's turn and needs no lock) and reads each order's state through the one
`OrderTracker`; what it adds is what only the gateway needs: which account owns an order,
client order ids, a bounded window of finished orders, and execution reports.

`OrderService` is the one implementation of place / cancel / amend / cancel-all. Each takes
an `answer` callback, called once with the result or the refusal (inside the actor when the
engine was involved), so REST and WebSocket share one reply path: a WebSocket queues the
reply from the callback; REST awaits it through `answered`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from lobgw.actors import BookReader, Exchange, Reply, SymbolActor
from lobgw.book.commands import AmendOrder, AnyCommand, CancelOrder, SubmitOrder
from lobgw.book.events import Event, OrderCanceled, OrderRejected
from lobgw.book.instrument import InstrumentSpec, SpecFormat
from lobgw.book.types import OrderType, Reason, TimeInForce
from lobgw.book.views import BookSnapshot
from lobgw.config import SessionConfig
from lobgw.encoding import Pieces
from lobgw.errors import ErrorCode
from lobgw.gateway.errors import ApiError, describe, rejected
from lobgw.gateway.wire import (
    AmendBody,
    AmendOp,
    BatchItem,
    BatchItemResult,
    BatchResult,
    CancelAfterResult,
    CancelAllResult,
    CancelOp,
    ExecutionInfo,
    ExecutionMessage,
    FillInfo,
    OrderAck,
    OrderInfo,
    PlaceOp,
    PlaceOrder,
)
from lobgw.orders import (
    ExecutionKind,
    Fill,
    OrderState,
    OrderStatus,
    OrderTracker,
    fills_for,
)
from lobgw.orders.history import Execution, OrderHistory, Retention

T = TypeVar("T")
log = logging.getLogger("lobgw.gateway")
Answer = Callable[[T | None, BaseException | None], None]
"""Called once with an operation's result, or with the exception that refused it."""

_ACCEPTED = ExecutionKind.ACCEPTED
_PRICED = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_STOPS = (OrderType.STOP, OrderType.STOP_LIMIT)
_RESTING = (TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY)
_FINAL = frozenset(status for status in OrderStatus if status.is_final)


def format_decimal(value: Decimal) -> str:
    """A decimal as plain digits, never in exponent notation."""
    return format(value, "f")


class OrderRegistry:
    """Every order's state, maintained from the actors' events, and each symbol's history."""

    def __init__(self, specs: dict[str, InstrumentSpec],
                 retention: Retention | None = None) -> None:
        self.specs = specs
        self.formats = {symbol: SpecFormat(spec) for symbol, spec in specs.items()}
        self.tracker = OrderTracker()
        self.histories = {symbol: OrderHistory(symbol, retention) for symbol in specs}
        self.client_ids: dict[tuple[str, str], int] = {}
        """(account, client order id) -> order id, open or finished within the retention."""
        self.by_account: dict[str, set[int]] = {}
        """The account's open order ids."""
        self.subscribed: Mapping[str, Collection[object]] = {}
        """Who listens to each account's execution reports (the hub's subscriptions)."""
        self.on_executions: Callable[[str, list[tuple[str, ExecutionMessage]]], None] = (
            lambda symbol, reports: None)
        self._reports: list[tuple[str, ExecutionMessage]] = []
        # The batch's symbol (on_batch sets them: every change of a batch is of one symbol).
        self._history = OrderHistory("")
        self._record = self._history.record

    @property
    def open(self) -> dict[int, OrderState]:
        """Accepted orders that are not final, by id."""
        return self.tracker.open

    # -- bookkeeping driven by the gateway ----------------------------------------------------

    def reserve(self, order: OrderState) -> None:
        """Hold a new order (and its client order id) until the engine answers.

        A client order id is taken for as long as its order is kept (open, or finished
        within the retention): resending it is refused with the original order, so an
        in-doubt retry never executes twice.
        """
        if order.client_order_id is not None:
            key = (order.account, order.client_order_id)
            known = self.client_ids.get(key)
            if known is not None:
                original = self.get(known)
                raise ApiError(ErrorCode.DUPLICATE_CLIENT_ORDER_ID, None, "client_order_id",
                               order=None if original is None else self.info(original))
            self.client_ids[key] = order.order_id
        self.tracker.expect(order)

    def release(self, order_id: int) -> None:
        """Forget a reserved order that never reached an engine."""
        order = self.tracker.forget(order_id)
        if order is not None and order.client_order_id is not None:
            self.client_ids.pop((order.account, order.client_order_id), None)

    def get(self, order_id: int) -> OrderState | None:
        """An open, pending or finished (within the retention) order by id."""
        order = self.tracker.get(order_id)
        if order is not None:
            return order
        for history in self.histories.values():
            order = history.finished.get(order_id)
            if order is not None:
                return order
        return None

    def owned(self, account: str, order_id: int | None,
              client_order_id: str | None) -> OrderState | None:
        """The account's order by id or client order id; another account's order is None."""
        if order_id is None and client_order_id is not None:
            order_id = self.client_ids.get((account, client_order_id))
        order = None if order_id is None else self.get(order_id)
        if order is None or order.account != account:
            return None
        if client_order_id is not None and order.client_order_id != client_order_id:
            return None
        return order

    def open_orders(self, account: str, symbol: str | None = None) -> list[OrderState]:
        """The account's open orders, oldest first."""
        orders = (self.open[order_id] for order_id in sorted(self.by_account.get(account, ())))
        return [order for order in orders if symbol is None or order.symbol == symbol]

    def restore(self, symbol: str, snapshot: BookSnapshot) -> None:
        """After a restart: the resting orders and waiting stops a snapshot brought back,
        completed from their kept executions (creation time, type, fills and so the average
        price; without all of its fills an order's average price is unknown)."""
        executions = self.histories[symbol].of_order()
        for order in self.tracker.restore(symbol, snapshot.bids + snapshot.asks,
                                          snapshot.stops):
            reports = executions.get(order.order_id, ())
            if reports:
                last = reports[-1].order  # what a snapshot's book does not say
                order.order_type, order.stop_price = last.order_type, last.stop_price
                order.triggered = last.triggered
                order.created_at = reports[0].timestamp
                order.updated_at = reports[-1].timestamp
                fills = [report.fill for report in reports if report.fill is not None]
                if sum(fill.quantity for fill in fills) == order.filled:
                    order.notional = sum(fill.quantity * fill.price for fill in fills)
            self._index(order)

    def capture(self, symbol: str) -> Callable[[], Pieces]:
        """The symbol's part of a snapshot, its history, taken now and encoded later."""
        return self.histories[symbol].capture()

    def give_back(self, symbol: str, data: bytes) -> None:
        """Restore what `capture` saved (recovery, before the snapshot's book and the
        journal tail)."""
        history = self.histories[symbol]
        history.decode(data)
        for order in history.finished.values():
            if order.client_order_id is not None:
                self.client_ids[order.account, order.client_order_id] = order.order_id

    # -- the actor listener ---------------------------------------------------------------

    def on_batch(self, symbol: str, events: list[Event], book: BookReader) -> None:
        """Apply a batch of one symbol's events to the orders they concern."""
        history = self.histories[symbol]
        self._record = history.record
        self._history = history
        self.tracker.apply(symbol, events, self._changed)
        if self._reports:
            reports, self._reports = self._reports, []
            self.on_executions(symbol, reports)

    def _changed(self, kind: ExecutionKind, order: OrderState, event: Event,
                 fill: Fill | None) -> None:
        """Tracker observer: keep the indexes and the history, queue execution reports."""
        if kind is _ACCEPTED:
            self._index(order)
        elif order.status in _FINAL:
            self._finish(order)
        execution = self._record(kind, order, event.seq, event.timestamp, fill)
        if self.subscribed.get(order.account):
            self._reports.append((order.account, self.report(execution)))

    def _index(self, order: OrderState) -> None:
        self.by_account.setdefault(order.account, set()).add(order.order_id)
        if order.client_order_id is not None:
            self.client_ids[order.account, order.client_order_id] = order.order_id

    def _finish(self, order: OrderState) -> None:
        owned = self.by_account.get(order.account)
        if owned is not None:
            owned.discard(order.order_id)
        if order.client_order_id is not None:  # (a rejected order read back: not indexed)
            self.client_ids.setdefault((order.account, order.client_order_id), order.order_id)
        for gone in self._history.finish(order):
            if gone.client_order_id is not None:
                key = (gone.account, gone.client_order_id)
                if self.client_ids.get(key) == gone.order_id:
                    del self.client_ids[key]

    def executions(self, account: str, after: dict[str, int], symbol: str | None,
                   limit: int, kinds: frozenset[ExecutionKind] | None
                   ) -> tuple[list[Execution], dict[str, int]]:
        """The account's executions after the cursor (symbol -> last sequence number seen),
        oldest first by event time across symbols; and the cursor after them."""
        found: list[Execution] = []
        for name, history in self.histories.items():
            if symbol is None or name == symbol:
                found += history.of_account(account, after.get(name, 0), kinds)
        found.sort(key=lambda e: (e.timestamp, e.symbol, e.seq))
        page = found[:limit]
        cursor = dict(after)
        for execution in page:
            cursor[execution.symbol] = execution.seq
        return page, cursor

    # -- wire views -----------------------------------------------------------------------

    def info(self, order: OrderState) -> OrderInfo:
        """The wire view of an order, in decimal units."""
        spec = self.specs[order.symbol]
        fmt = self.formats[order.symbol]
        average = None
        if order.filled and order.notional >= 0:
            average = format_decimal(spec.tick_size * order.notional / order.filled)
        return OrderInfo(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.order_type,
            time_in_force=order.time_in_force,
            price=None if order.price is None else fmt.price(order.price),
            quantity=fmt.quantity(order.quantity),
            filled_quantity=fmt.quantity(order.filled),
            remaining_quantity=fmt.quantity(
                0 if order.status.is_final else order.remaining),
            average_price=average,
            status=order.status,
            post_only=order.post_only,
            stp=order.stp,
            created_at=order.created_at,
            updated_at=order.updated_at,
            reason=None if order.reason is None else order.reason.value,
            stop_price=None if order.stop_price is None else fmt.price(order.stop_price),
            triggered=order.triggered,
            display_quantity=None if order.display_quantity is None
            else fmt.quantity(order.display_quantity),
            expire_time=order.expire_time,
        )

    def fill_info(self, symbol: str, fill: Fill) -> FillInfo:
        """The wire view of one fill."""
        fmt = self.formats[symbol]
        return FillInfo(trade_seq=fill.seq, price=fmt.price(fill.price),
                        quantity=fmt.quantity(fill.quantity), liquidity=fill.liquidity,
                        timestamp=fill.timestamp)

    def report(self, execution: Execution) -> ExecutionMessage:
        """The WebSocket execution report of one execution (live, or replayed on resume)."""
        return ExecutionMessage(
            symbol=execution.symbol, seq=execution.seq, account_seq=execution.account_seq,
            event=execution.kind, order=self.info(execution.order),
            fill=None if execution.fill is None else self.fill_info(execution.symbol,
                                                                    execution.fill))

    def resume(self, account: str, since: dict[str, int]) -> list[ExecutionMessage]:
        """The account's kept reports numbered after `since` (symbol -> last account_seq
        seen; 0 for a symbol not named), oldest first by event time."""
        found: list[Execution] = []
        for name, history in self.histories.items():
            found += history.since(account, since.get(name, 0))
        found.sort(key=lambda e: (e.timestamp, e.symbol, e.seq))
        return [self.report(execution) for execution in found]

    def execution_info(self, execution: Execution) -> ExecutionInfo:
        """The wire view of one execution report from the history."""
        fmt = self.formats[execution.symbol]
        order = execution.order
        return ExecutionInfo(
            symbol=execution.symbol, seq=execution.seq, account_seq=execution.account_seq,
            event=execution.kind, order_id=order.order_id,
            client_order_id=order.client_order_id, side=order.side,
            price=None if order.price is None else fmt.price(order.price),
            status=order.status, filled_quantity=fmt.quantity(order.filled),
            remaining_quantity=fmt.quantity(0 if order.status.is_final else order.remaining),
            reason=None if order.reason is None else order.reason.value,
            timestamp=execution.timestamp,
            fill=None if execution.fill is None else self.fill_info(execution.symbol,
                                                                    execution.fill))

    def ack(self, order: OrderState, events: list[Event]) -> OrderAck:
        """The answer to a request about `order`: its state and its fills among `events`."""
        return OrderAck(order=self.info(order),
                        fills=[self.fill_info(order.symbol, fill)
                               for fill in fills_for(order.order_id, events)])


class OrderService:
    """Place, cancel, amend and cancel-all for an authenticated account."""

    def __init__(self, exchange: Exchange, registry: OrderRegistry,
                 received: dict[str, int] | None = None,
                 sessions: Mapping[str, SessionConfig] | None = None) -> None:
        self.exchange = exchange
        self.registry = registry
        self.sessions = sessions or {}
        """Per-symbol session ends, for DAY orders."""
        self.received = {} if received is None else received
        """New orders that reached order entry, per symbol."""

    # Each operation validates and enqueues at once (raising ApiError for bad input), so a
    # WebSocket can keep reading; the answer arrives later, through `answer`.

    def place(self, account: str, request: PlaceOrder, answer: Answer[OrderAck],
              cancel_on_disconnect: bool = False) -> OrderState:
        """Validate and enqueue a new order; `answer` gets the ack or the refusal.

        `cancel_on_disconnect` (a WebSocket session's choice) is journaled with the order.
        """
        order, actor, command = self._prepare_place(account, request, cancel_on_disconnect)
        registry = self.registry
        try:
            actor.submit((command,), _replier(answer, functools.partial(_placed, registry,
                                                                        order),
                                              lambda: registry.release(order.order_id)))
        except BaseException:
            registry.release(order.order_id)
            raise
        return order

    def _prepare_place(self, account: str, request: PlaceOrder, cancel_on_disconnect: bool
                       ) -> tuple[OrderState, SymbolActor, SubmitOrder]:
        actor = self.exchange.actor(request.symbol)
        self.received[request.symbol] = self.received.get(request.symbol, 0) + 1
        command = self.command(account, request, actor.spec, time.time_ns(),
                               cancel_on_disconnect)
        order = OrderState.submitted(request.symbol, command)
        self.registry.reserve(order)
        return order, actor, command

    def command(self, account: str, request: PlaceOrder, spec: InstrumentSpec, now: int,
                cancel_on_disconnect: bool = False) -> SubmitOrder:
        """Check a new order's fields against each other and the symbol's rules (raising
        ApiError naming the field) and build its engine command."""
        quantity = spec.parse_quantity(request.quantity)
        order_type, tif = request.type, request.time_in_force
        price: int | None = None
        if order_type in _PRICED:
            if request.price is None:
                raise ApiError(ErrorCode.MISSING_PRICE, None, "price")
            price = spec.parse_price(request.price)
        elif request.price is not None:
            raise ApiError(ErrorCode.PRICE_NOT_ALLOWED, f"a {order_type.value} order takes no "
                           "price", "price")
        stop_price: int | None = None
        if order_type in _STOPS:
            if request.stop_price is None:
                raise ApiError(ErrorCode.MISSING_STOP_PRICE, None, "stop_price")
            stop_price = spec.parse_price(request.stop_price, "stop_price")
            if tif is TimeInForce.FOK:
                raise ApiError(ErrorCode.INVALID_VALUE, "a stop order cannot be FOK",
                               "time_in_force")
        elif request.stop_price is not None:
            raise ApiError(ErrorCode.STOP_PRICE_NOT_ALLOWED, None, "stop_price")
        if request.post_only and (order_type is not OrderType.LIMIT
                                  or tif is not TimeInForce.GTC):
            raise ApiError(ErrorCode.POST_ONLY_NOT_ALLOWED, None, "post_only")
        display: int | None = None
        if request.display_quantity is not None:
            if order_type is not OrderType.LIMIT or tif not in _RESTING:
                raise ApiError(ErrorCode.DISPLAY_NOT_ALLOWED, None, "display_quantity")
            display = spec.parse_quantity(request.display_quantity, "display_quantity")
            if display > quantity:
                raise ApiError(ErrorCode.DISPLAY_ABOVE_QUANTITY, None, "display_quantity")
        expire_time = request.expire_time
        if tif is TimeInForce.GTD:
            if expire_time is None:
                raise ApiError(ErrorCode.MISSING_EXPIRE_TIME, None, "expire_time")
            if expire_time <= now:
                raise ApiError(ErrorCode.EXPIRE_TIME_IN_PAST, None, "expire_time")
        elif expire_time is not None:
            raise ApiError(ErrorCode.EXPIRE_TIME_NOT_ALLOWED, None, "expire_time")
        elif tif is TimeInForce.DAY:
            session = self.sessions.get(request.symbol)
            if session is None:
                raise ApiError(ErrorCode.NO_SESSION, None, "time_in_force")
            expire_time = session.next_end(now)
        return SubmitOrder(self.exchange.next_order_id(), account, request.side, quantity,
                           price=price, order_type=order_type, time_in_force=tif,
                           post_only=request.post_only, stp=request.stp, timestamp=now,
                           client_order_id=request.client_order_id,
                           cancel_on_disconnect=cancel_on_disconnect, stop_price=stop_price,
                           display_quantity=display, expire_time=expire_time)

    def _resolve(self, account: str, order_id: int | None,
                 client_order_id: str | None) -> OrderState:
        if order_id is None and client_order_id is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "give order_id or client_order_id",
                           "order_id")
        order = self.registry.owned(account, order_id, client_order_id)
        if order is None or order.status.is_final:
            raise ApiError(ErrorCode.ORDER_NOT_FOUND, None,
                           "order_id" if order_id is not None else "client_order_id")
        return order

    def cancel(self, account: str, order_id: int | None, client_order_id: str | None,
               answer: Answer[OrderAck]) -> None:
        """Check ownership and enqueue a cancel; `answer` gets the ack or the refusal."""
        order = self._resolve(account, order_id, client_order_id)
        self._change(order, CancelOrder(order.order_id, timestamp=time.time_ns()), answer)

    def amend(self, account: str, order_id: int | None, client_order_id: str | None,
              body: AmendBody, answer: Answer[OrderAck]) -> None:
        """Check ownership, convert and enqueue an amend; `answer` gets the ack or refusal."""
        order = self._resolve(account, order_id, client_order_id)
        self._change(order, self.amend_command(order, body, time.time_ns()), answer)

    def amend_command(self, order: OrderState, body: AmendBody, now: int) -> AmendOrder:
        """Check an amend's fields (raising ApiError naming the field) and build it."""
        if body.quantity is None and body.price is None and body.stop_price is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "give a new quantity, price and/or "
                           "stop_price", "quantity")
        spec = self.registry.specs[order.symbol]
        quantity = None if body.quantity is None else spec.parse_quantity(body.quantity)
        price = None if body.price is None else spec.parse_price(body.price)
        stop_price = None
        if body.stop_price is not None:
            if order.stop_price is None or order.triggered:
                raise ApiError(ErrorCode.STOP_PRICE_NOT_ALLOWED, "only a waiting stop has a "
                               "stop price to amend", "stop_price")
            stop_price = spec.parse_price(body.stop_price, "stop_price")
        if price is not None and order.price is None:
            raise ApiError(ErrorCode.PRICE_NOT_ALLOWED, "this order has no price to amend",
                           "price")
        return AmendOrder(order.order_id, quantity=quantity, price=price, timestamp=now,
                          stop_price=stop_price)

    def _change(self, order: OrderState, command: CancelOrder | AmendOrder,
                answer: Answer[OrderAck]) -> None:
        self.exchange.actor(order.symbol).submit(
            (command,), _replier(answer, functools.partial(_changed, self.registry, order)))

    def batch(self, account: str, items: Sequence[BatchItem], answer: Answer[BatchResult],
              cancel_on_disconnect: bool = False) -> None:
        """Validate every item, send each symbol's valid ones as one request (journaled as
        one record), and answer each item on its own, in order, once all are answered.

        An item refused at the edge is answered with its refusal and the others go on; a
        symbol that cannot take its items (full queue, journal down) refuses just those.
        """
        registry = self.registry
        results: list[BatchItemResult | None] = [None] * len(items)
        groups: dict[str, list[tuple[int, AnyCommand, Callable[[list[Event]], OrderAck]]]] = {}
        placed: dict[int, int] = {}  # item -> the order id it reserved

        def refuse(index: int, error: BaseException) -> None:
            failure = describe(error)
            if isinstance(items[index], PlaceOp):
                failure = failure.within("order")
            results[index] = BatchItemResult(id=items[index].id, status=failure.status,
                                             error=failure.body(), order=failure.order)

        now = time.time_ns()
        for index, item in enumerate(items):
            try:
                if isinstance(item, PlaceOp):
                    order, _, command = self._prepare_place(account, item.order,
                                                                cancel_on_disconnect)
                    placed[index] = order.order_id
                    finish = functools.partial(_placed, registry, order)
                    groups.setdefault(order.symbol, []).append((index, command, finish))
                    continue
                order = self._resolve(account, item.order_id, item.client_order_id)
                change: CancelOrder | AmendOrder
                if isinstance(item, CancelOp):
                    change = CancelOrder(order.order_id, timestamp=now)
                else:
                    change = self.amend_command(order, AmendBody(
                        quantity=item.quantity, price=item.price, stop_price=item.stop_price),
                        now)
                groups.setdefault(order.symbol, []).append(
                    (index, change, functools.partial(_changed, registry, order)))
            except Exception as error:
                refuse(index, error)
        waiting = [len(groups)]

        def finished() -> None:
            waiting[0] -= 1
            if not waiting[0]:
                answer(BatchResult(results=[r for r in results if r is not None]), None)

        for symbol, entries in groups.items():
            rows: list[list[Event]] = []

            def reply(events: list[Event] | None, error: BaseException | None,
                      entries: list[Any] = entries, rows: list[list[Event]] = rows) -> None:
                for (index, _, finish), row in itertools.zip_longest(entries, rows):
                    try:
                        if events is None:
                            raise error or RuntimeError("no answer")
                        results[index] = BatchItemResult(id=items[index].id,
                                                         status=_OK[type(items[index])],
                                                         result=finish(row))
                    except Exception as refusal:
                        if events is None and index in placed:
                            registry.release(placed[index])
                        refuse(index, refusal)
                finished()

            def after_row(position: int, events: list[Event], book: BookReader,
                          rows: list[list[Event]] = rows) -> None:
                rows.append(events)

            try:
                self.exchange.actor(symbol).submit_rows(
                    [[command] for _, command, _ in entries], reply, after_row)
            except Exception as error:
                reply(None, error)
        if not groups:
            answer(BatchResult(results=[r for r in results if r is not None]), None)

    def cancel_all(self, account: str, symbol: str | None,
                   answer: Answer[CancelAllResult], reason: Reason = Reason.CANCELED) -> None:
        """Cancel every open order of the account (of one symbol if given)."""
        if symbol is not None:
            self.exchange.actor(symbol)  # unknown symbol -> UnknownSymbolError
        by_symbol: dict[str, list[CancelOrder]] = {}
        now = time.time_ns()
        for order in self.registry.open_orders(account, symbol):
            by_symbol.setdefault(order.symbol, []).append(
                CancelOrder(order.order_id, now, reason))
        if not by_symbol:
            answer(CancelAllResult(canceled=0, order_ids=[]), None)
            return
        canceled: list[int] = []
        waiting = [len(by_symbol)]

        def reply(events: list[Event] | None, error: BaseException | None) -> None:
            if waiting[0] <= 0:
                return  # already answered (with an error)
            if events is None:
                waiting[0] = 0
                answer(None, error)
                return
            canceled.extend(event.order_id for event in events
                            if isinstance(event, OrderCanceled))
            waiting[0] -= 1
            if not waiting[0]:
                answer(CancelAllResult(canceled=len(canceled), order_ids=sorted(canceled)),
                       None)

        for name, cancels in by_symbol.items():
            self.exchange.actor(name).submit(cancels, reply)


class CancelAfter:
    """Per-account dead-man's switches (Kraken's cancel_all_orders_after): armed with a
    timeout, each refresh pushes the deadline out; if it passes, every open order of the
    account is cancelled with reason CANCEL_AFTER. A timeout of 0 disarms."""

    def __init__(self, service: OrderService) -> None:
        self.service = service
        self._timers: dict[str, tuple[asyncio.TimerHandle, int]] = {}
        self.fired = 0

    def arm(self, account: str, timeout_ms: int) -> CancelAfterResult:
        """Arm, refresh or (0) disarm the account's switch; say when it would fire."""
        now = time.time_ns()
        previous = self._timers.pop(account, None)
        if previous is not None:
            previous[0].cancel()
        if not timeout_ms:
            return CancelAfterResult(current_time=now, trigger_time=None)
        handle = asyncio.get_running_loop().call_later(timeout_ms / 1000, self._fire, account)
        trigger = now + timeout_ms * 1_000_000
        self._timers[account] = (handle, trigger)
        return CancelAfterResult(current_time=now, trigger_time=trigger)

    def _fire(self, account: str) -> None:
        self._timers.pop(account, None)
        self.fired += 1
        log.warning("cancel-after: the switch of %s fired; cancelling its open orders", account)

        def done(result: CancelAllResult | None, error: BaseException | None) -> None:
            if error is not None:
                log.error("cancel-after of %s failed: %s", account, error)

        try:
            self.service.cancel_all(account, None, done, Reason.CANCEL_AFTER)
        except Exception as error:  # refused at once (shutting down): nothing to cancel then
            log.error("cancel-after of %s failed: %s", account, error)

    def disarm_all(self) -> None:
        """At shutdown: no switch fires while the gateway stops."""
        for handle, _ in self._timers.values():
            handle.cancel()
        self._timers.clear()


def _placed(registry: OrderRegistry, order: OrderState, events: list[Event]) -> OrderAck:
    """The answer to a place: the ack, or the engine's refusal raised."""
    ack = registry.ack(order, events)
    if order.status is OrderStatus.REJECTED:
        assert order.reason is not None
        raise rejected(order.reason, ack.order)
    return ack


def _changed(registry: OrderRegistry, order: OrderState, events: list[Event]) -> OrderAck:
    """The answer to a cancel or amend: the ack, or the engine's refusal raised."""
    ack = registry.ack(order, events)
    for event in events:
        if isinstance(event, OrderRejected) and event.order_id == order.order_id:
            reason = event.reason
            raise rejected(reason, ack.order, "the order is no longer open"
                           if reason is Reason.ORDER_NOT_FOUND else None)
    return ack


_OK: dict[type, int] = {PlaceOp: 201, CancelOp: 200, AmendOp: 200}
"""The status of a successful batch item (as its own REST route answers)."""


def _replier(answer: Answer[T], finish: Callable[[list[Event]], T],
             on_failure: Callable[[], None] | None = None) -> Reply:
    """An actor reply: turn the events into a result with `finish` (which raises ApiError
    for a refusal) and pass it, or the refusal, to `answer`."""
    def reply(events: list[Event] | None, error: BaseException | None) -> None:
        if events is None:
            if on_failure is not None:
                on_failure()
            answer(None, error)
            return
        try:
            result = finish(events)
        except Exception as refusal:
            answer(None, refusal)
        else:
            answer(result, None)
    return reply


async def answered(start: Callable[[Answer[T]], Any]) -> T:
    """Run an operation that answers through a callback, and await its answer (REST)."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def answer(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    start(answer)
    return await future
