"""Order entry for the gateway: validation at the edge, ownership, client order ids, status.

`OrderRegistry` follows every symbol's events (it is an actor listener, so it runs inside the
actor's turn and needs no lock) and keeps each order's state through the lifecycle table:
open orders, a bounded window of finished ones, and the client-order-id index. `OrderService`
is the one implementation of place / cancel / amend / cancel-all that REST and WebSocket share.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Literal

import msgspec

from lobgw.actors import BookReader, Exchange, SymbolActor
from lobgw.actors.actor import Reply
from lobgw.book.commands import AmendOrder, CancelOrder, SubmitOrder
from lobgw.book.engine import OrderView
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from lobgw.book.instrument import InstrumentSpec, SpecFormat
from lobgw.book.lifecycle import Happening, OrderStatus, transition
from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side, TimeInForce
from lobgw.gateway.errors import REJECTION_STATUS, ApiError, ErrorCode
from lobgw.gateway.wire import (
    AmendBody,
    CancelAllResult,
    ExecutionMessage,
    Fill,
    OrderAck,
    OrderInfo,
    PlaceOrder,
)

ExecutionKind = Literal["accepted", "rejected", "fill", "canceled", "amended", "expired"]


def format_decimal(value: Decimal) -> str:
    """A decimal as plain digits, never in exponent notation."""
    return format(value, "f")


class TrackedOrder(msgspec.Struct, gc=False):
    """The gateway's view of one order (prices in ticks, quantities in lots).

    `gc=False`: the registry keeps up to `finished_orders_kept` of these, and tracked objects
    would make every full garbage collection walk them all (a latency spike of tens of ms).
    They hold only numbers, strings and enums, so they can never be part of a cycle.
    """

    order_id: int
    account: str
    symbol: str
    client_order_id: str | None
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int
    remaining: int
    post_only: bool
    stp: SelfTradePrevention
    created_at: int
    updated_at: int
    filled: int = 0
    notional: int = 0
    status: OrderStatus = OrderStatus.NEW
    reason: str | None = None

    @classmethod
    def from_command(cls, account: str, symbol: str, client_order_id: str | None,
                     command: SubmitOrder) -> TrackedOrder:
        """A new order as the engine will see it."""
        return cls(command.order_id, account, symbol, client_order_id, command.side,
                   command.order_type, command.time_in_force, command.price, command.quantity,
                   command.quantity, command.post_only, command.stp, command.timestamp,
                   command.timestamp)


class OrderRegistry:
    """Every order's state, maintained from the actors' events."""

    def __init__(self, specs: dict[str, InstrumentSpec], finished_kept: int = 100_000) -> None:
        self.specs = specs
        self.formats = {symbol: SpecFormat(spec) for symbol, spec in specs.items()}
        self.finished_kept = finished_kept
        self.pending: dict[int, TrackedOrder] = {}
        self.open: dict[int, TrackedOrder] = {}
        self.finished: OrderedDict[int, TrackedOrder] = OrderedDict()
        self.client_ids: dict[tuple[str, str], int] = {}
        self.by_account: dict[str, set[int]] = {}
        self.wants_executions: Callable[[str], bool] = lambda account: False
        self.on_executions: Callable[[str, list[tuple[str, ExecutionMessage]]], None] = (
            lambda symbol, reports: None)

    # -- bookkeeping driven by the gateway ----------------------------------------------------

    def reserve(self, order: TrackedOrder) -> None:
        """Hold a new order (and its client order id) until the engine answers."""
        if order.client_order_id is not None:
            key = (order.account, order.client_order_id)
            if key in self.client_ids:
                raise ApiError(ErrorCode.DUPLICATE_CLIENT_ORDER_ID,
                               "an open order of this account already uses this client order id",
                               "client_order_id")
            self.client_ids[key] = order.order_id
        self.pending[order.order_id] = order

    def release(self, order_id: int) -> None:
        """Forget a reserved order that never reached an engine."""
        order = self.pending.pop(order_id, None)
        if order is not None and order.client_order_id is not None:
            self.client_ids.pop((order.account, order.client_order_id), None)

    def get(self, order_id: int) -> TrackedOrder | None:
        """An open, pending or recently finished order by id."""
        return (self.open.get(order_id) or self.pending.get(order_id)
                or self.finished.get(order_id))

    def owned(self, account: str, order_id: int | None,
              client_order_id: str | None) -> TrackedOrder | None:
        """The account's order by id or client order id; another account's order is None."""
        if order_id is None and client_order_id is not None:
            order_id = self.client_ids.get((account, client_order_id))
        order = None if order_id is None else self.get(order_id)
        if order is None or order.account != account:
            return None
        if client_order_id is not None and order.client_order_id != client_order_id:
            return None
        return order

    def open_orders(self, account: str, symbol: str | None = None) -> list[TrackedOrder]:
        """The account's open orders, oldest first."""
        orders = (self.open[order_id] for order_id in sorted(self.by_account.get(account, ())))
        return [order for order in orders if symbol is None or order.symbol == symbol]

    def restore(self, symbol: str, orders: list[OrderView]) -> None:
        """After a restart: the resting orders a snapshot brought back (fills before the
        snapshot are known by quantity; their average price is not)."""
        for view in orders:
            order = TrackedOrder(view.order_id, view.account, symbol, view.client_order_id,
                                 view.side, OrderType.LIMIT, TimeInForce.GTC, view.price,
                                 view.quantity, view.remaining, view.post_only, view.stp,
                                 view.timestamp, view.timestamp,
                                 filled=view.quantity - view.remaining, notional=-1,
                                 status=OrderStatus.NEW if view.remaining == view.quantity
                                 else OrderStatus.PARTIALLY_FILLED)
            self._open(order, index_client_id=True)

    # -- the actor listener ---------------------------------------------------------------

    def on_batch(self, symbol: str, events: list[Event], book: BookReader) -> None:
        """Apply a batch of one symbol's events to the orders they concern."""
        reports: list[tuple[str, ExecutionMessage]] = []
        wants = self.wants_executions
        for event in events:
            match event:
                case TradeExecuted():
                    for order_id, left, liquidity in (
                        (event.maker_order_id, event.maker_remaining, "MAKER"),
                        (event.taker_order_id, event.taker_remaining, "TAKER"),
                    ):
                        order = self.open.get(order_id) if order_id is not None else None
                        if order is None:
                            continue
                        order.filled += event.quantity
                        if order.notional >= 0:  # -1: fills from before a restart
                            order.notional += event.quantity * event.price
                        order.remaining = left
                        order.updated_at = event.timestamp
                        happening = Happening.FILL if left == 0 else Happening.PARTIAL_FILL
                        self._move(order, happening)
                        if wants(order.account):
                            fill = self.fill(order, event, liquidity)  # type: ignore[arg-type]
                            reports.append(self._report(order, event.seq, "fill", fill))
                case OrderAccepted():
                    order = self.pending.pop(event.order.order_id, None)
                    if order is None:  # another driver (replay, backtest) or journal recovery
                        order = TrackedOrder.from_command(event.order.account, symbol,
                                                          event.order.client_order_id,
                                                          event.order)
                        self._open(order, index_client_id=True)
                    else:  # reserve() indexed its client order id
                        self._open(order, index_client_id=False)
                    if wants(order.account):
                        reports.append(self._report(order, event.seq, "accepted"))
                case OrderRejected():
                    order = self.pending.pop(event.order_id, None)
                    if order is None:
                        continue  # a refused cancel or amend: the order is unchanged
                    order.status = OrderStatus.REJECTED
                    order.reason = event.reason.value
                    order.updated_at = event.timestamp
                    self._finish(order)
                    if wants(order.account):
                        reports.append(self._report(order, event.seq, "rejected"))
                case OrderCanceled() | OrderExpired():
                    order = self.open.get(event.order_id)
                    if order is None:
                        continue
                    order.reason = event.reason.value
                    order.updated_at = event.timestamp
                    kind: ExecutionKind = "canceled"
                    if isinstance(event, OrderExpired):
                        kind = "expired"
                        self._move(order, Happening.EXPIRE)
                    else:
                        self._move(order, Happening.CANCEL)
                    if wants(order.account):
                        reports.append(self._report(order, event.seq, kind))
                case OrderAmended():
                    order = self.open.get(event.order_id)
                    if order is None:
                        continue
                    order.price = event.price
                    order.quantity = event.quantity
                    order.remaining = event.remaining
                    order.updated_at = event.timestamp
                    self._move(order, Happening.AMEND)
                    if wants(order.account):
                        reports.append(self._report(order, event.seq, "amended"))
        if reports:
            self.on_executions(symbol, reports)

    def _open(self, order: TrackedOrder, index_client_id: bool) -> None:
        self.open[order.order_id] = order
        self.by_account.setdefault(order.account, set()).add(order.order_id)
        if index_client_id and order.client_order_id is not None:
            self.client_ids[order.account, order.client_order_id] = order.order_id

    def _move(self, order: TrackedOrder, happening: Happening) -> None:
        order.status = transition(order.status, happening)
        if order.status.is_final:
            self._finish(order)

    def _finish(self, order: TrackedOrder) -> None:
        self.open.pop(order.order_id, None)
        owned = self.by_account.get(order.account)
        if owned is not None:
            owned.discard(order.order_id)
        if order.client_order_id is not None:
            key = (order.account, order.client_order_id)
            if self.client_ids.get(key) == order.order_id:
                del self.client_ids[key]
        self.finished[order.order_id] = order
        if len(self.finished) > self.finished_kept:
            self.finished.popitem(last=False)

    # -- wire views -----------------------------------------------------------------------

    def info(self, order: TrackedOrder) -> OrderInfo:
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
            type=order.type,
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
            reason=order.reason,
        )

    def fill(self, order: TrackedOrder, trade: TradeExecuted,
             liquidity: Literal["MAKER", "TAKER"]) -> Fill:
        """One trade from `order`'s side."""
        fmt = self.formats[order.symbol]
        return Fill(trade_seq=trade.seq, price=fmt.price(trade.price),
                    quantity=fmt.quantity(trade.quantity),
                    liquidity=liquidity, timestamp=trade.timestamp)

    def fills_of(self, order: TrackedOrder, events: list[Event]) -> list[Fill]:
        """The fills of `order` among `events`."""
        fills = []
        for event in events:
            if isinstance(event, TradeExecuted):
                if event.taker_order_id == order.order_id:
                    fills.append(self.fill(order, event, "TAKER"))
                elif event.maker_order_id == order.order_id:
                    fills.append(self.fill(order, event, "MAKER"))
        return fills

    def _report(self, order: TrackedOrder, seq: int, kind: ExecutionKind,
                fill: Fill | None = None) -> tuple[str, ExecutionMessage]:
        return order.account, ExecutionMessage(symbol=order.symbol, seq=seq, event=kind,
                                               order=self.info(order), fill=fill)


class OrderService:
    """Place, cancel, amend and cancel-all for an authenticated account."""

    def __init__(self, exchange: Exchange, registry: OrderRegistry,
                 received: dict[str, int] | None = None) -> None:
        self.exchange = exchange
        self.registry = registry
        self.received = {} if received is None else received
        """New orders that reached order entry, per symbol."""

    # Each operation has a synchronous half (validate, enqueue: returns a future at once, so a
    # WebSocket can keep reading) and a completion half that turns the events into an answer.

    def start_place(self, account: str, request: PlaceOrder
                    ) -> tuple[TrackedOrder, asyncio.Future[list[Event]]]:
        """Validate and enqueue a new order; the future gets its events."""
        tracked, actor, command = self._prepare_place(account, request)
        try:
            future = actor.submit(command)
        except BaseException:
            self.registry.release(tracked.order_id)
            raise
        return tracked, future

    def place_with_reply(self, account: str, request: PlaceOrder,
                         answer: Callable[[OrderAck | None, BaseException | None], None]
                         ) -> TrackedOrder:
        """Validate and enqueue a new order; `answer` gets the ack or the error (in the actor)."""
        tracked, actor, command = self._prepare_place(account, request)
        reply = _replier(lambda events: self.finish_place(tracked, events), answer,
                         lambda: self.registry.release(tracked.order_id))
        try:
            actor.submit_with_reply(command, reply)
        except BaseException:
            self.registry.release(tracked.order_id)
            raise
        return tracked

    def _prepare_place(self, account: str, request: PlaceOrder
                       ) -> tuple[TrackedOrder, SymbolActor, SubmitOrder]:
        actor = self.exchange.actor(request.symbol)
        self.received[request.symbol] = self.received.get(request.symbol, 0) + 1
        spec = actor.engine.spec
        quantity = spec.quantity_to_lots(request.quantity, "quantity")
        price: int | None = None
        if request.type is OrderType.LIMIT:
            if request.price is None:
                raise ApiError(Reason.MISSING_PRICE.value, "a limit order needs a price", "price")
            price = spec.price_to_ticks(request.price, "price")
        elif request.price is not None:
            raise ApiError(Reason.PRICE_NOT_ALLOWED.value, "a market order takes no price",
                           "price")
        if request.post_only and (request.type is OrderType.MARKET
                                  or request.time_in_force is not TimeInForce.GTC):
            raise ApiError(Reason.POST_ONLY_NOT_ALLOWED.value,
                           "post-only orders must be GTC limit orders", "post_only")
        order_id = self.exchange.next_order_id()
        command = SubmitOrder(order_id, account, request.side, quantity, price=price,
                              order_type=request.type, time_in_force=request.time_in_force,
                              post_only=request.post_only, stp=request.stp,
                              timestamp=time.time_ns(),
                              client_order_id=request.client_order_id)
        tracked = TrackedOrder.from_command(account, request.symbol, request.client_order_id,
                                            command)
        self.registry.reserve(tracked)
        return tracked, actor, command

    def finish_place(self, tracked: TrackedOrder, events: list[Event]) -> OrderAck:
        """The answer to a place: the order's state and fills; a rejection raises ApiError."""
        ack = OrderAck(order=self.registry.info(tracked),
                       fills=self.registry.fills_of(tracked, events))
        if tracked.status is OrderStatus.REJECTED:
            raise RejectedError(tracked.reason or "REJECTED", ack)
        return ack

    async def place(self, account: str, request: PlaceOrder) -> OrderAck:
        """Place and wait for the answer."""
        tracked, future = self.start_place(account, request)
        try:
            events = await future
        except BaseException:
            self.registry.release(tracked.order_id)
            raise
        return self.finish_place(tracked, events)

    def _resolve(self, account: str, order_id: int | None,
                 client_order_id: str | None) -> TrackedOrder:
        if order_id is None and client_order_id is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "give order_id or client_order_id",
                           "order_id")
        order = self.registry.owned(account, order_id, client_order_id)
        if order is None or order.status.is_final:
            raise ApiError(ErrorCode.ORDER_NOT_FOUND, "no open order of this account has that id",
                           "order_id" if order_id is not None else "client_order_id")
        return order

    def start_cancel(self, account: str, order_id: int | None, client_order_id: str | None
                     ) -> tuple[TrackedOrder, asyncio.Future[list[Event]]]:
        """Check ownership and enqueue a cancel."""
        order, command = self._prepare_cancel(account, order_id, client_order_id)
        return order, self.exchange.actor(order.symbol).submit(command)

    def _prepare_cancel(self, account: str, order_id: int | None, client_order_id: str | None
                        ) -> tuple[TrackedOrder, CancelOrder]:
        order = self._resolve(account, order_id, client_order_id)
        return order, CancelOrder(order.order_id, timestamp=time.time_ns())

    def cancel_with_reply(self, account: str, order_id: int | None,
                          client_order_id: str | None,
                          answer: Callable[[OrderAck | None, BaseException | None], None]
                          ) -> None:
        """Check ownership and enqueue a cancel; `answer` gets the ack or the error."""
        order, command = self._prepare_cancel(account, order_id, client_order_id)
        self.exchange.actor(order.symbol).submit_with_reply(
            command, _replier(lambda events: self.finish_change(order, events), answer))

    def start_amend(self, account: str, order_id: int | None, client_order_id: str | None,
                    body: AmendBody) -> tuple[TrackedOrder, asyncio.Future[list[Event]]]:
        """Check ownership, convert and enqueue an amend."""
        order = self._resolve(account, order_id, client_order_id)
        if body.quantity is None and body.price is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "give a new quantity and/or price",
                           "quantity")
        spec = self.registry.specs[order.symbol]
        quantity = None if body.quantity is None else spec.quantity_to_lots(body.quantity)
        price = None if body.price is None else spec.price_to_ticks(body.price)
        future = self.exchange.actor(order.symbol).submit(
            AmendOrder(order.order_id, quantity=quantity, price=price, timestamp=time.time_ns()))
        return order, future

    def finish_change(self, order: TrackedOrder, events: list[Event]) -> OrderAck:
        """The answer to a cancel or amend; a refusal by the engine raises ApiError."""
        ack = OrderAck(order=self.registry.info(order),
                       fills=self.registry.fills_of(order, events))
        for event in events:
            if isinstance(event, OrderRejected) and event.order_id == order.order_id:
                if event.reason is Reason.ORDER_NOT_FOUND:
                    raise RejectedError(ErrorCode.ORDER_NOT_FOUND.value, ack,
                                        "the order is no longer open")
                raise RejectedError(event.reason.value, ack)
        return ack

    async def cancel(self, account: str, order_id: int | None,
                     client_order_id: str | None) -> OrderAck:
        """Cancel and wait for the answer."""
        order, future = self.start_cancel(account, order_id, client_order_id)
        return self.finish_change(order, await future)

    async def amend(self, account: str, order_id: int | None, client_order_id: str | None,
                    body: AmendBody) -> OrderAck:
        """Amend and wait for the answer."""
        order, future = self.start_amend(account, order_id, client_order_id, body)
        return self.finish_change(order, await future)

    async def cancel_all(self, account: str, symbol: str | None = None) -> CancelAllResult:
        """Cancel every open order of the account (of one symbol if given)."""
        if symbol is not None:
            self.exchange.actor(symbol)  # unknown symbol -> UnknownSymbolError
        by_symbol: dict[str, list[CancelOrder]] = {}
        now = time.time_ns()
        for order in self.registry.open_orders(account, symbol):
            by_symbol.setdefault(order.symbol, []).append(CancelOrder(order.order_id, now))
        futures = [self.exchange.actor(sym).submit_many(cancels)
                   for sym, cancels in by_symbol.items()]
        canceled = [event.order_id for events in await asyncio.gather(*futures)
                    for event in events if isinstance(event, OrderCanceled)]
        return CancelAllResult(canceled=len(canceled), order_ids=sorted(canceled))


def _replier(finish: Callable[[list[Event]], OrderAck],
             answer: Callable[[OrderAck | None, BaseException | None], None],
             on_failure: Callable[[], None] | None = None) -> Reply:
    """An actor reply callback: turn the events into an ack (or a refusal) for `answer`."""
    def reply(events: list[Event] | None, error: BaseException | None) -> None:
        if events is None:
            if on_failure is not None:
                on_failure()
            answer(None, error)
            return
        try:
            ack = finish(events)
        except Exception as refusal:
            answer(None, refusal)
        else:
            answer(ack, None)
    return reply


class RejectedError(ApiError):
    """The engine refused an order or change; carries the order's state for the reply."""

    def __init__(self, code: str, ack: OrderAck, reason: str | None = None) -> None:
        super().__init__(code, reason or _REJECTION_TEXT.get(code, code.replace("_", " ").lower()))
        self.ack = ack
        self.status = REJECTION_STATUS.get(code, 422)


_REJECTION_TEXT = {
    Reason.POST_ONLY_WOULD_TAKE.value: "the post-only order would have traded on arrival",
    Reason.FOK_NOT_FILLED.value: "the fill-or-kill order could not fill completely at once",
    Reason.STP.value: "the order would have traded with the same account",
    Reason.PRICE_OUT_OF_BAND.value: "the price is outside the symbol's price band",
    Reason.QUANTITY_BELOW_MINIMUM.value: "the quantity is below the symbol's minimum",
    Reason.QUANTITY_ABOVE_MAXIMUM.value: "the quantity is above the symbol's maximum",
    Reason.DUPLICATE_ORDER_ID.value: "the order id is already in use",
}

