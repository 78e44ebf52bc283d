"""A tiny, obviously-correct order book: a list of orders, linear scans, no caching.

It is the specification the engine is tested against. It favours plainness over speed:
every question ("best price?", "who is first?") is answered by scanning the whole list.

Stops wait in a list in arrival order; after a command's trades, each trade releases the
waiting stops its price reaches (by stop price: buys lowest first, sells highest first, then
arrival), and released stops enter one at a time, their own trades releasing more. An
iceberg shows `display` lots; when they are filled it shows the next part of its reserve at
the back of its level. `expire` ends every order and stop due, by (expire time, order id).
"""

from __future__ import annotations

from dataclasses import dataclass

from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ExpireOrders,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRefreshed,
    OrderRejected,
    OrderTriggered,
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
    command: SubmitOrder
    hidden: int = 0


RESTING = (TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY)


class ReferenceBook:
    """Price-time priority by brute force."""

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.orders: list[ModelOrder] = []
        self.stops: list[SubmitOrder] = []
        self.last_price: int | None = None
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

    def find_stop(self, order_id: int) -> SubmitOrder | None:
        for stop in self.stops:
            if stop.order_id == order_id:
                return stop
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
        display = order.command.display_quantity
        if display is not None and order.remaining > display:
            order.hidden, order.remaining = order.remaining - display, display
        self.orders.append(order)

    def new_order(self, cmd: SubmitOrder, price: int, quantity: int, remaining: int,
                  ts: int) -> ModelOrder:
        return ModelOrder(cmd.order_id, cmd.account, cmd.side, price, quantity, remaining, 0,
                          ts, cmd.post_only, cmd.stp, cmd)

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
        if isinstance(command, ExpireOrders):
            return self.expire(command)
        return self.reduce(command)

    def reject(self, order_id: int, account: str | None, reason: Reason, ts: int,
               order: SubmitOrder | None = None) -> list[Event]:
        return [OrderRejected(self._event_seq(), ts, order_id, account, reason, order)]

    def submit(self, cmd: SubmitOrder) -> list[Event]:
        ts = cmd.timestamp
        if self.find(cmd.order_id) is not None or self.find_stop(cmd.order_id) is not None:
            return self.reject(cmd.order_id, cmd.account, Reason.DUPLICATE_ORDER_ID, ts, cmd)
        violation = self.violation(cmd.quantity, cmd.price)
        if violation is None and cmd.stop_price is not None:
            violation = self.violation(cmd.quantity, cmd.stop_price)
        if violation is not None:
            return self.reject(cmd.order_id, cmd.account, violation, ts, cmd)
        if cmd.stop_price is not None:
            if self.would_trigger(cmd.side, cmd.stop_price):
                return self.reject(cmd.order_id, cmd.account, Reason.STOP_WOULD_TRIGGER, ts,
                                   cmd)
            self.stops.append(cmd)
            return [OrderAccepted(self._event_seq(), ts, cmd)]
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
        self.enter(cmd, ts, events)
        self.release(events, 0)
        return events

    def enter(self, cmd: SubmitOrder, ts: int, events: list[Event]) -> None:
        """Match an accepted (or released) order, then rest or end what is left."""
        remaining, stopped = self.sweep(cmd.order_id, cmd.account, cmd.side, cmd.stp, cmd.price,
                                        cmd.quantity, ts, events)
        if remaining:
            if stopped:
                events.append(OrderCanceled(self._event_seq(), ts, cmd.order_id, cmd.account,
                                            cmd.side, cmd.price, remaining, Reason.STP))
            elif cmd.price is None:
                events.append(OrderExpired(self._event_seq(), ts, cmd.order_id, cmd.account,
                                           remaining, Reason.INSUFFICIENT_LIQUIDITY))
            elif cmd.time_in_force not in RESTING:
                events.append(OrderExpired(self._event_seq(), ts, cmd.order_id, cmd.account,
                                           remaining, Reason.IOC_REMAINDER))
            else:
                self.rest(self.new_order(cmd, cmd.price, cmd.quantity, remaining, ts))

    def would_trigger(self, side: Side, stop_price: int) -> bool:
        last = self.last_price
        return last is not None and (stop_price <= last if side is Side.BUY
                                     else stop_price >= last)

    def release(self, events: list[Event], start: int) -> None:
        """Enter every stop the trades in events[start:] release, cascades included."""
        waiting: list[tuple[SubmitOrder, int, int]] = []
        while True:
            for event in events[start:]:
                if isinstance(event, TradeExecuted):
                    buys = sorted((s for s in self.stops if s.side is Side.BUY
                                   and s.stop_price is not None
                                   and s.stop_price <= event.price),
                                  key=lambda s: s.stop_price or 0)
                    sells = sorted((s for s in self.stops if s.side is Side.SELL
                                    and s.stop_price is not None
                                    and s.stop_price >= event.price),
                                   key=lambda s: -(s.stop_price or 0))
                    for stop in buys + sells:  # sorted() is stable: arrival order next
                        self.stops.remove(stop)
                        waiting.append((stop, event.price, event.timestamp))
            if not waiting:
                return
            stop, trade_price, ts = waiting.pop(0)
            start = len(events)
            kind = OrderType.LIMIT if stop.order_type is OrderType.STOP_LIMIT else OrderType.MARKET
            live = SubmitOrder(stop.order_id, stop.account, stop.side, stop.quantity, stop.price,
                               kind, stop.time_in_force, stop.post_only, stop.stp, ts,
                               stop.client_order_id, stop.cancel_on_disconnect,
                               expire_time=stop.expire_time)
            assert stop.stop_price is not None
            events.append(OrderTriggered(self._event_seq(), ts, stop.order_id, stop.account,
                                         stop.side, stop.stop_price, trade_price, stop.price))
            self.enter(live, ts, events)

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
            events.append(TradeExecuted(self._event_seq(), ts, maker.price, fill, side,
                                        maker.order_id, taker_id, maker.account, account,
                                        maker.remaining + maker.hidden, remaining))
            self.last_price = maker.price
            self.filled(maker, ts, events)
        return remaining, False

    def filled(self, maker: ModelOrder, ts: int, events: list[Event]) -> None:
        """After a fill: a maker with nothing visible refreshes from its reserve (to the
        back of its level) or leaves."""
        if maker.remaining:
            return
        if maker.hidden:
            display = maker.command.display_quantity
            assert display is not None
            shown = min(display, maker.hidden)
            maker.hidden -= shown
            maker.remaining = shown
            self.clock += 1
            maker.priority = self.clock
            events.append(OrderRefreshed(self._event_seq(), ts, maker.order_id, maker.account,
                                         maker.side, maker.price, shown, maker.hidden))
        else:
            self.orders.remove(maker)

    def cancel_resting(self, order: ModelOrder, reason: Reason, ts: int,
                       events: list[Event]) -> None:
        self.orders.remove(order)
        events.append(OrderCanceled(self._event_seq(), ts, order.order_id, order.account,
                                    order.side, order.price, order.remaining + order.hidden,
                                    reason))

    def cancel(self, cmd: CancelOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        stop = self.find_stop(cmd.order_id)
        if stop is not None:
            self.stops.remove(stop)
            return [OrderCanceled(self._event_seq(), cmd.timestamp, stop.order_id, stop.account,
                                  stop.side, stop.price, stop.quantity, cmd.reason)]
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        events: list[Event] = []
        self.cancel_resting(order, Reason.CANCELED, cmd.timestamp, events)
        return events

    def amend(self, cmd: AmendOrder) -> list[Event]:
        ts = cmd.timestamp
        stop = self.find_stop(cmd.order_id)
        if stop is not None:
            return self.amend_stop(stop, cmd)
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, ts)
        if cmd.quantity is None and cmd.price is None:
            return self.reject(cmd.order_id, order.account, Reason.ORDER_NOT_FOUND, ts)
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        price = order.price if cmd.price is None else cmd.price
        left = order.remaining + order.hidden
        filled = order.quantity - left
        events: list[Event] = []
        if quantity <= filled:
            self.cancel_resting(order, Reason.AMENDED_BELOW_FILLED, ts, events)
            return events
        violation = self.violation(quantity, price)
        if violation is not None:
            return self.reject(order.order_id, order.account, violation, ts)
        remaining = quantity - filled
        if price == order.price and quantity <= order.quantity:
            order.quantity = quantity
            order.remaining = min(order.remaining, remaining)  # hidden lots go first
            order.hidden = remaining - order.remaining
            events.append(OrderAmended(self._event_seq(), ts, order.order_id, order.account,
                                       order.side, price, price, quantity, remaining, True))
            return events
        crosses = bool(self.makers(order.side, price))
        if crosses and order.post_only:
            return self.reject(order.order_id, order.account, Reason.POST_ONLY_WOULD_TAKE, ts)
        self.orders.remove(order)
        events.append(OrderAmended(self._event_seq(), ts, order.order_id, order.account,
                                   order.side, order.price, price, quantity, remaining, False))
        remaining, stopped = self.sweep(order.order_id, order.account, order.side, order.stp,
                                        price, remaining, ts, events)
        if stopped:
            events.append(OrderCanceled(self._event_seq(), ts, order.order_id, order.account,
                                        order.side, price, remaining, Reason.STP))
        elif remaining:
            command = order.command
            moved = SubmitOrder(command.order_id, command.account, command.side, quantity,
                                price, command.order_type, command.time_in_force,
                                command.post_only, command.stp, ts, command.client_order_id,
                                command.cancel_on_disconnect,
                                display_quantity=command.display_quantity,
                                expire_time=command.expire_time)
            self.rest(self.new_order(moved, price, quantity, remaining, ts))
        self.release(events, 0)
        return events

    def amend_stop(self, stop: SubmitOrder, cmd: AmendOrder) -> list[Event]:
        ts = cmd.timestamp
        if cmd.price is not None and stop.order_type is not OrderType.STOP_LIMIT:
            return self.reject(stop.order_id, stop.account, Reason.ORDER_NOT_FOUND, ts)
        quantity = stop.quantity if cmd.quantity is None else cmd.quantity
        price = stop.price if cmd.price is None else cmd.price
        stop_price = stop.stop_price if cmd.stop_price is None else cmd.stop_price
        assert stop_price is not None
        violation = self.violation(quantity, price) or self.violation(quantity, stop_price)
        if violation is None and self.would_trigger(stop.side, stop_price):
            violation = Reason.STOP_WOULD_TRIGGER
        if violation is not None:
            return self.reject(stop.order_id, stop.account, violation, ts)
        kept = price == stop.price and stop_price == stop.stop_price and quantity <= stop.quantity
        changed = SubmitOrder(stop.order_id, stop.account, stop.side, quantity, price,
                              stop.order_type, stop.time_in_force, stop.post_only, stop.stp,
                              stop.timestamp if kept else ts, stop.client_order_id,
                              stop.cancel_on_disconnect, stop_price=stop_price,
                              expire_time=stop.expire_time)
        index = self.stops.index(stop)
        if kept:
            self.stops[index] = changed
        else:
            del self.stops[index]
            self.stops.append(changed)
        return [OrderAmended(self._event_seq(), ts, stop.order_id, stop.account, stop.side,
                             stop.price or 0, price or 0, quantity, quantity, kept,
                             changed.stop_price)]

    def execute(self, cmd: ExecuteOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        fill = min(cmd.quantity, order.remaining)
        order.remaining -= fill
        events: list[Event] = [TradeExecuted(self._event_seq(), cmd.timestamp, order.price,
                                             fill, order.side.opposite, order.order_id, None,
                                             order.account, None,
                                             order.remaining + order.hidden, 0)]
        self.last_price = order.price
        self.filled(order, cmd.timestamp, events)
        self.release(events, 0)
        return events

    def reduce(self, cmd: ReduceOrder) -> list[Event]:
        order = self.find(cmd.order_id)
        if order is None:
            return self.reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp)
        events: list[Event] = []
        left = order.remaining + order.hidden
        if cmd.quantity >= left:
            self.cancel_resting(order, Reason.CANCELED, cmd.timestamp, events)
            return events
        left -= cmd.quantity
        order.quantity -= cmd.quantity
        order.remaining = min(order.remaining, left)
        order.hidden = left - order.remaining
        events.append(OrderAmended(self._event_seq(), cmd.timestamp, order.order_id,
                                   order.account, order.side, order.price, order.price,
                                   order.quantity, left, True))
        return events

    def expire(self, cmd: ExpireOrders) -> list[Event]:
        now = cmd.timestamp
        due = sorted([(o.command.expire_time, o.order_id) for o in self.orders
                      if o.command.expire_time is not None and o.command.expire_time <= now]
                     + [(s.expire_time, s.order_id) for s in self.stops
                        if s.expire_time is not None and s.expire_time <= now])
        events: list[Event] = []
        for _, order_id in due:
            order = self.find(order_id)
            if order is not None:
                self.orders.remove(order)
                command, left = order.command, order.remaining + order.hidden
            else:
                stop = self.find_stop(order_id)
                assert stop is not None
                self.stops.remove(stop)
                command, left = stop, stop.quantity
            reason = (Reason.DAY_ENDED if command.time_in_force is TimeInForce.DAY
                      else Reason.GTD_EXPIRED)
            events.append(OrderExpired(self._event_seq(), now, order_id, command.account,
                                       left, reason))
        return events
