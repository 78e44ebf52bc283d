"""A tiny, obviously-correct order book: a list of orders, linear scans, no caching.

It is the specification the engine is tested against. It favours plainness over speed:
every question ("best price?", "who is first?") is answered by scanning the whole list.
"""

from __future__ import annotations

from dataclasses import dataclass

from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, Reason, SelfTradePrevention, Side, TimeInForce


@dataclass
class ModelOrder:
    order_id: int
    account: str
    side: Side
    price: int
    quantity: int
    remaining: int
    priority: int
    timestamp: int
    post_only: bool
    stp: SelfTradePrevention


class ReferenceBook:
    """Price-time priority by brute force."""

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.orders: list[ModelOrder] = []
        self.seq = 0
        self.clock = 0  # priority counter: later arrivals get larger numbers

    # -- helpers -------------------------------------------------------------------------------

    def _event_seq(self) -> int:
        self.seq += 1
        return self.seq

    def find(self, order_id: int) -> ModelOrder | None:
        for order in self.orders:
            if order.order_id == order_id:
                return order
        return None

    def queue(self, side: Side) -> list[ModelOrder]:
        """Orders of one side, best first: price, then arrival."""
        if side is Side.BUY:
            return sorted((o for o in self.orders if o.side is side),
                          key=lambda o: (-o.price, o.priority))
        return sorted((o for o in self.orders if o.side is side),
                      key=lambda o: (o.price, o.priority))

    @staticmethod
    def acceptable(taker_side: Side, limit: int | None, maker_price: int) -> bool:
        if limit is None:
            return True
        return maker_price <= limit if taker_side is Side.BUY else maker_price >= limit

    def makers(self, taker_side: Side, limit: int | None) -> list[ModelOrder]:
        return [o for o in self.queue(taker_side.opposite)
                if self.acceptable(taker_side, limit, o.price)]

    def violation(self, quantity: int, price: int | None) -> Reason | None:
        spec = self.spec
        if quantity < spec.min_lots:
            return Reason.QUANTITY_BELOW_MINIMUM
        if quantity > spec.max_lots:
            return Reason.QUANTITY_ABOVE_MAXIMUM
        if price is not None and not spec.band_low_ticks <= price <= spec.band_high_ticks:
            return Reason.PRICE_OUT_OF_BAND
        return None

    def rest(self, order: ModelOrder) -> None:
        self.clock += 1
        order.priority = self.clock
        self.orders.append(order)

    # -- commands ------------------------------------------------------------------------------

    def apply(self, command: AnyCommand) -> list[Event]:
        if isinstance(command, SubmitOrder):
            return self.submit(command)
        if isinstance(command, CancelOrder):
            return self.cancel(command)
        if isinstance(command, AmendOrder):
            return self.amend(command)
        if isinstance(command, ExecuteOrder):
            return self.execute(command)
        return self.reduce(command)

    def reject(self, order_id: int, account: str | None, reason: Reason, ts: int,
               order: SubmitOrder | None = None) -> list[Event]:
        return [OrderRejected(self._event_seq(), ts, order_id, account, reason, order)]

    def submit(self, cmd: SubmitOrder) -> list[Event]:
        ts = cmd.timestamp
        if self.find(cmd.order_id) is not None:
            return self.reject(cmd.order_id, cmd.account, Reason.DUPLICATE_ORDER_ID, ts, cmd)
        violation = self.violation(cmd.quantity, cmd.price)
        if violation is not None:
            return self.reject(cmd.order_id, cmd.account, violation, ts, cmd)
        makers = self.makers(cmd.side, cmd.price)
        if makers and cmd.post_only:
            return self.reject(cmd.order_id, cmd.account, Reason.POST_ONLY_WOULD_TAKE, ts, cmd)
        if cmd.time_in_force is TimeInForce.FOK:
            fillable = 0
            for maker in makers:
                if maker.account == cmd.account and cmd.stp is not SelfTradePrevention.NONE:
                    if cmd.stp is SelfTradePrevention.CANCEL_MAKER:
                        continue
                    break
                fillable += maker.remaining
            if fillable < cmd.quantity:
                return self.reject(cmd.order_id, cmd.account, Reason.FOK_NOT_FILLED, ts, cmd)
        events: list[Event] = []
        if (makers and makers[0].account == cmd.account
                and cmd.stp in (SelfTradePrevention.CANCEL_TAKER, SelfTradePrevention.CANCEL_BOTH)):
            if cmd.stp is SelfTradePrevention.CANCEL_BOTH:
                self.cancel_resting(makers[0], Reason.STP, ts, events)
            events += self.reject(cmd.order_id, cmd.account, Reason.STP, ts, cmd)
            return events
        events.append(OrderAccepted(self._event_seq(), ts, cmd))
        remaining, stopped = self.sweep(cmd.order_id, cmd.account, cmd.side, cmd.stp, cmd.price,
                                        cmd.quantity, ts, events)
        if remaining:
            if stopped:
                events.append(OrderCanceled(self._event_seq(), ts, cmd.order_id, cmd.account,
                                            cmd.side, cmd.price, remaining, Reason.STP))
            elif cmd.order_type is OrderType.MARKET:
                events.append(OrderExpired(self._event_seq(), ts, cmd.order_id, cmd.account,
                                           remaining, Reason.INSUFFICIENT_LIQUIDITY))
            elif cmd.time_in_force is not TimeInForce.GTC:
                events.append(OrderExpired(self._event_seq(), ts, cmd.order_id, cmd.account,
                                           remaining, Reason.IOC_REMAINDER))
            else:
                assert cmd.price is not None
                self.rest(ModelOrder(cmd.order_id, cmd.account, cmd.side, cmd.price,
                                     cmd.quantity, remaining, 0, ts, cmd.post_only, cmd.stp))
        return events

    def sweep(self, taker_id: int, account: str, side: Side, stp: SelfTradePrevention,
              limit: int | None, remaining: int, ts: int,
              events: list[Event]) -> tuple[int, bool]:
        while remaining:
            makers = self.makers(side, limit)
            if not makers:
                return remaining, False
            maker = makers[0]
            if maker.account == account and stp is not SelfTradePrevention.NONE:
                if stp is SelfTradePrevention.CANCEL_TAKER:
                    return remaining, True
                self.cancel_resting(maker, Reason.STP, ts, events)
                if stp is SelfTradePrevention.CANCEL_BOTH:
                    return remaining, True
                continue
            fill = min(maker.remaining, remaining)
            maker.remaining -= fill
            remaining -= fill
            if maker.remaining == 0:
                self.orders.remove(maker)
            events.append(TradeExecuted(self._event_seq(), ts, maker.price, fill, side,
                                        maker.order_id, taker_id, maker.account, account,
                                        maker.remaining, remaining))
        return remaining, False

    def cancel_resting(self, order: ModelOrder, reason: Reason, ts: int,
                       events: list[Event]) -> None:
        self.orders.remove(order)
        events.append(OrderCanceled(self._event_seq(), ts, order.order_id, order.account,
                                    order.side, order.price, order.remaining, reason))

    def cancel(self, cmd: CancelOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        events: list[Event] = []
        self.cancel_resting(order, Reason.CANCELED, cmd.timestamp, events)
        return events

    def amend(self, cmd: AmendOrder) -> list[Event]:
        ts = cmd.timestamp
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, ts)
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        price = order.price if cmd.price is None else cmd.price
        filled = order.quantity - order.remaining
        events: list[Event] = []
        if quantity <= filled:
            self.cancel_resting(order, Reason.AMENDED_BELOW_FILLED, ts, events)
            return events
        violation = self.violation(quantity, price)
        if violation is not None:
            return self.reject(order.order_id, order.account, violation, ts)
        if price == order.price and quantity <= order.quantity:
            order.quantity = quantity
            order.remaining = quantity - filled
            events.append(OrderAmended(self._event_seq(), ts, order.order_id, order.account,
                                       order.side, price, price, quantity, order.remaining, True))
            return events
        crosses = bool(self.makers(order.side, price))
        if crosses and order.post_only:
            return self.reject(order.order_id, order.account, Reason.POST_ONLY_WOULD_TAKE, ts)
        self.orders.remove(order)
        remaining = quantity - filled
        events.append(OrderAmended(self._event_seq(), ts, order.order_id, order.account,
                                   order.side, order.price, price, quantity, remaining, False))
        remaining, stopped = self.sweep(order.order_id, order.account, order.side, order.stp,
                                        price, remaining, ts, events)
        if stopped:
            events.append(OrderCanceled(self._event_seq(), ts, order.order_id, order.account,
                                        order.side, price, remaining, Reason.STP))
        elif remaining:
            self.rest(ModelOrder(order.order_id, order.account, order.side, price, quantity,
                                 remaining, 0, ts, order.post_only, order.stp))
        return events

    def execute(self, cmd: ExecuteOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        fill = min(cmd.quantity, order.remaining)
        order.remaining -= fill
        if order.remaining == 0:
            self.orders.remove(order)
        return [TradeExecuted(self._event_seq(), cmd.timestamp, order.price, fill,
                              order.side.opposite, order.order_id, None, order.account, None,
                              order.remaining, 0)]

    def reduce(self, cmd: ReduceOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        events: list[Event] = []
        if cmd.quantity >= order.remaining:
            self.cancel_resting(order, Reason.CANCELED, cmd.timestamp, events)
            return events
        order.remaining -= cmd.quantity
        order.quantity -= cmd.quantity
        events.append(OrderAmended(self._event_seq(), cmd.timestamp, order.order_id,
                                   order.account, order.side, order.price, order.price,
                                   order.quantity, order.remaining, True))
        return events
