"""One symbol's order book and matching engine: commands in, events out (sans-I/O).

The engine never awaits, reads a clock, logs or locks; ids and timestamps come with commands,
so the same commands always give the same events, byte for byte.

Layout, chosen for CPython speed (every line on the hot path costs; see benchmarks/engine.py):

* Every price level of both sides lives in one dict, keyed by the price for asks and minus the
  price for bids. Keys of the two sides never collide (prices are positive), "better" is always
  "smaller", and a resting order finds its level by its key without asking which side it is on.
* A live order is the immutable `SubmitOrder` that created it (replaced by an updated copy when
  an amend changes it); the only mutable part of an order, its remaining lots, lives in its
  level: an insertion-ordered dict from order id to remaining lots (time priority, O(1) cancel
  from anywhere) plus the level's cached total. No per-order object is built on the hot path.
* Each side keeps a binary heap of its keys to find the next-best level when the best one
  empties, and caches the best key, so best bid/ask is O(1). Keys of levels emptied away from
  the top stay in the heap until they surface or the heap is rebuilt.
* Commands check their own shape when built and the edge has converted decimals, so the
  engine checks only business rules; each refusal is an `OrderRejected` that changes nothing.
* Stops wait outside the book (`_stops`, two heaps by stop price); after a command's trades
  each trade releases the stops its price reaches (buy: stop <= price, lowest first; sell:
  stop >= price, highest first; then arrival), and released stops enter one by one, their
  trades releasing more. A stop the last trade already reached is refused
  (STOP_WOULD_TRIGGER) rather than filled by surprise on arrival.
* An iceberg's level entry holds its visible lots and `_reserves` the hidden ones; when the
  visible part fills, the next part is shown at the back of the level (`OrderRefreshed`), so
  a sweep takes a level's visible orders in time order before the refreshed parts (the
  CME-style rule). Trades, cancels and expiries report the order's whole remainder.
* GTD and DAY orders carry `expire_time`; `ExpireOrders(timestamp)` ends those due.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import msgspec

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
from lobgw.book.types import (
    RESTING,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from lobgw.book.views import BookCapture, BookSnapshot, Counters, OrderView, order_view
from lobgw.errors import InvalidCommandError, SnapshotError, UnknownCommandError

force_setattr = msgspec.structs.force_setattr
# Enum members bound to module names: attribute access on an Enum class is slow in 3.11.
BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
STOP_LIMIT = OrderType.STOP_LIMIT
STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
GTC = TimeInForce.GTC
GTD = TimeInForce.GTD
DAY = TimeInForce.DAY
FOK = TimeInForce.FOK
IOC = TimeInForce.IOC
CANCEL_TAKER = SelfTradePrevention.CANCEL_TAKER
CANCEL_MAKER = SelfTradePrevention.CANCEL_MAKER
CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
STP_NONE = SelfTradePrevention.NONE
CANCELED = Reason.CANCELED
STP = Reason.STP
IOC_REMAINDER = Reason.IOC_REMAINDER
INSUFFICIENT_LIQUIDITY = Reason.INSUFFICIENT_LIQUIDITY

EMPTY = 1 << 63
"""The best key of an empty side: larger than any key an order can have."""
MARKET_LIMIT = EMPTY - 1
"""The limit key of a market order: it crosses every level but never an empty side."""

SMALL_INT_MAX = (1 << 30) - 1
"""The largest int CPython 3.11 compares on its specialized fast path (one 30-bit digit).

A comparison with a larger int takes the generic path and costs several times more, so the hot
checks compare against bounds clipped to this, and an order beyond them takes the exact check.
"""

heappush = heapq.heappush
heappop = heapq.heappop


class Level:
    """One price level: its total remaining size and its orders' remaining lots in time order.

    A plain slotted class rather than a Struct: its size changes on nearly every command and
    CPython specializes stores to slots, while levels are created rarely.
    """

    __slots__ = ("orders", "size")

    def __init__(self, size: int, orders: dict[int, int]) -> None:
        self.size = size
        self.orders = orders


class BookSide:
    """The ordering of one side's levels: a heap of their keys and the best key cached."""

    __slots__ = ("best", "count", "heap", "side", "sign")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = side.sign
        self.heap: list[int] = []
        self.best = EMPTY
        self.count = 0

    def added(self, key: int) -> None:
        """Record that a level with `key` now exists."""
        heappush(self.heap, key)
        self.count += 1
        if key < self.best:
            self.best = key

    def removed(self, key: int, levels: dict[int, Level]) -> None:
        """Record that the level with `key` is gone from `levels`; keep `best` live."""
        self.count -= 1
        heap = self.heap
        if key == self.best:
            while heap and heap[0] not in levels:
                heappop(heap)
            self.best = heap[0] if heap else EMPTY
        elif len(heap) > 2 * self.count + 64:
            # Keys of levels emptied away from the top pile up; rebuild once they dominate.
            heap[:] = self.keys(levels)
            heapq.heapify(heap)

    def keys(self, levels: dict[int, Level]) -> list[int]:
        """This side's live level keys, unordered."""
        if self.sign > 0:
            return [key for key in levels if key > 0]
        return [key for key in levels if key < 0]

    def sorted_keys(self, levels: dict[int, Level], limit: int | None = None) -> list[int]:
        """This side's level keys from best to worst (the first `limit` of them)."""
        keys = self.keys(levels)
        if limit is None:
            return sorted(keys)
        return heapq.nsmallest(limit, keys)


def _after(events: list[Event], seq: int) -> int:
    """The index of the first of `events` numbered above `seq` (they are in order)."""
    index = len(events)
    while index and events[index - 1].seq > seq:
        index -= 1
    return index


class Engine:
    """The order book and matching engine of one symbol."""

    # Slots: every handler reads and writes several of these per command, and slot access
    # stays on CPython's fastest attribute path however many attributes there are.
    __slots__ = ("_amends", "_asks", "_band_high", "_band_low", "_bids", "_buy_stops",
                 "_cancels", "_executions", "_expiries", "_handlers", "_last_price", "_levels",
                 "_max_lots", "_messages", "_min_lots", "_orders", "_quick_band_high",
                 "_quick_max_lots", "_rejected", "_releasing", "_reserves", "_sell_stops",
                 "_seq", "_serial", "_stop_serials", "_stops", "_trades", "_volume", "spec")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self._min_lots = spec.min_lots
        self._max_lots = spec.max_lots
        self._band_low = spec.band_low_ticks
        self._band_high = spec.band_high_ticks
        # The bounds the hot paths compare against (see SMALL_INT_MAX): inside them an order is
        # surely within the instrument's limits; outside, `_limit_violation` decides exactly.
        self._quick_max_lots = min(self._max_lots, SMALL_INT_MAX)
        self._quick_band_high = min(self._band_high, SMALL_INT_MAX)
        self._levels: dict[int, Level] = {}
        self._bids = BookSide(BUY)
        self._asks = BookSide(SELL)
        self._orders: dict[int, SubmitOrder] = {}
        self._reserves: dict[int, int] = {}
        """Icebergs' hidden lots by order id (only while some are hidden)."""
        self._stops: dict[int, SubmitOrder] = {}
        """Waiting stops, in trigger-time order (an amend of the stop price moves one to the
        end): outside the visible book."""
        self._buy_stops: list[tuple[int, int, int]] = []
        """(stop price, serial, order id): buy stops, lowest first (lazily cleaned)."""
        self._sell_stops: list[tuple[int, int, int]] = []
        """(-stop price, serial, order id): sell stops, highest first (lazily cleaned)."""
        self._stop_serials: dict[int, int] = {}
        self._serial = 0
        self._releasing = False
        self._last_price: int | None = None
        self._expiries: list[tuple[int, int]] = []
        """(expire time, order id) of GTD and DAY orders, earliest first (lazily cleaned)."""
        self._seq = 0
        # Every command is one message and is either rejected, or a cancel, amend (reduces
        # included) or execution, or else an accepted order: so submits need no counter.
        self._messages = 0
        self._rejected = 0
        self._cancels = 0
        self._amends = 0
        self._executions = 0
        self._trades = 0
        self._volume = 0
        self._handlers: dict[type, Callable[[Any, list[Event]], None]] = {
            SubmitOrder: self._submit,
            CancelOrder: self._cancel,
            AmendOrder: self._amend,
            ExecuteOrder: self._execute,
            ReduceOrder: self._reduce,
            ExpireOrders: self._expire,
        }

    # -- driving -----------------------------------------------------------------------------

    def apply(self, command: AnyCommand) -> list[Event]:
        """Apply one command and return the events it caused, in sequence order."""
        try:
            handler = self._handlers[command.__class__]
        except KeyError:
            raise UnknownCommandError(f"not an engine command: {command!r}") from None
        events: list[Event] = []
        self._messages += 1
        handler(command, events)
        return events

    def apply_batch(
        self, commands: Sequence[AnyCommand], events: list[Event] | None = None
    ) -> list[Event]:
        """Apply commands in order; append their events to `events` (or a new list) and return it.

        This is the actors' path. Passing the list in means that if a command raises (a bug),
        the events of the commands before it are still in the caller's hands.

        The common cases are applied right here, with the engine's state held in local
        variables for the whole batch (CPython charges for every attribute access and call):
        a limit order that rests without trading, a cancel of a resting order and a quantity
        decrease; orders that trade go straight to `_take`. Everything else, and every case
        these paths do not cover, goes to its handler, which is the general (and slower) form
        of the same rules; the model tests drive both `apply` and `apply_batch`.
        """
        if events is None:
            events = []
        handlers = self._handlers
        orders = self._orders
        reserves = self._reserves
        stops = self._stops
        levels = self._levels
        bids = self._bids
        asks = self._asks
        take = self._take
        min_lots, max_lots = self._min_lots, self._quick_max_lots
        band_low, band_high = self._band_low, self._quick_band_high
        # Commands guarantee a positive quantity and price: with floors of one lot and one
        # tick (the usual instrument) the lower bounds need no check.
        floorless = min_lots == 1 and band_low == 1
        append = events.append
        seq = self._seq  # handlers keep self._seq; it is stored before and read after each
        cancels = 0
        amends = 0
        self._messages += len(commands)
        command: AnyCommand | None = None
        try:
            for command in commands:
                cls = type(command)
                if cls is SubmitOrder:
                    submit: SubmitOrder = command  # type: ignore[assignment]
                    order_id = submit.order_id
                    quantity = submit.quantity
                    if (quantity <= max_lots and order_id not in orders
                            and (floorless or min_lots <= quantity)
                            and submit.stop_price is None
                            and (not stops or order_id not in stops)):
                        price = submit.price
                        if price is None:  # a market order
                            if submit.side is BUY:
                                own, other = bids, asks
                            else:
                                own, other = asks, bids
                            if other.count:
                                self._seq = seq
                                take(submit, own, other, MARKET_LIMIT, events)
                                seq = self._seq
                                continue
                        elif price <= band_high and (floorless or band_low <= price):
                            if submit.side is BUY:
                                own, other, key = bids, asks, -price
                            else:
                                own, other, key = asks, bids, price
                            if other.best + key <= 0:  # it crosses the best opposite order
                                self._seq = seq
                                take(submit, own, other, -key, events)
                                seq = self._seq
                                continue
                            if submit.time_in_force is GTC and submit.display_quantity is None:
                                orders[order_id] = submit
                                level = levels.get(key)
                                if level is None:
                                    levels[key] = Level(quantity, {order_id: quantity})
                                    own.added(key)
                                else:
                                    level.orders[order_id] = quantity
                                    level.size += quantity
                                seq += 1
                                append(OrderAccepted(seq, submit.timestamp, submit))
                                continue
                elif cls is CancelOrder:
                    order_id = command.order_id  # type: ignore[union-attr]
                    order = orders.pop(order_id, None)
                    if order is not None:
                        resting: int = order.price  # type: ignore[assignment]  # a limit price
                        where = resting * order.side.sign
                        at = levels[where]
                        queue = at.orders
                        remaining = queue.pop(order_id)
                        if queue:
                            at.size -= remaining
                        else:
                            del levels[where]
                            (bids if where < 0 else asks).removed(where, levels)
                        if reserves:
                            remaining += reserves.pop(order_id, 0)
                        cancels += 1
                        seq += 1
                        append(OrderCanceled(seq, command.timestamp, order_id, order.account,
                                             order.side, resting, remaining,
                                             command.reason))  # type: ignore[union-attr]
                        continue
                elif cls is AmendOrder:
                    amend: AmendOrder = command  # type: ignore[assignment]
                    order_id = amend.order_id
                    order = orders.get(order_id)
                    new_quantity = amend.quantity
                    # A decrease that leaves something to fill keeps its place in the queue.
                    if (order is not None and amend.price is None and new_quantity is not None
                            and new_quantity <= order.quantity
                            and (floorless or min_lots <= new_quantity)
                            and (not reserves or order_id not in reserves)):
                        resting = order.price  # type: ignore[assignment]
                        at = levels[resting * order.side.sign]
                        queue = at.orders
                        remaining = queue[order_id]
                        left = new_quantity - order.quantity + remaining
                        if left > 0:
                            queue[order_id] = left
                            at.size -= remaining - left
                            # (a copy with one field set: `replace` would run the
                            # command's checks again, for an order already checked)
                            changed = order.__copy__()  # type: ignore[attr-defined]
                            force_setattr(changed, "quantity", new_quantity)
                            orders[order_id] = changed
                            amends += 1
                            seq += 1
                            append(OrderAmended(seq, amend.timestamp, order_id, order.account,
                                                order.side, resting, resting, new_quantity,
                                                left, True))
                            continue
                # Everything else: the handler, with self._seq in step.
                self._seq = seq
                handlers[cls](command, events)
                seq = self._seq
        except KeyError:
            if command is None or type(command) in handlers:
                raise  # a KeyError from inside the engine: a bug, not an unknown command
            # Commands from the bad one on were never applied: do not count them.
            position = next(i for i, item in enumerate(commands) if item is command)
            self._messages -= len(commands) - position
            raise UnknownCommandError(f"not an engine command: {command!r}") from None
        finally:
            self._cancels += cancels
            self._amends += amends
            # The inline paths' events since the last handler (also when a handler raised).
            if events and events[-1].seq > self._seq:
                self._seq = events[-1].seq
        return events

    @property
    def seq(self) -> int:
        """Sequence number of the last event emitted (0 before any)."""
        return self._seq

    # -- new orders --------------------------------------------------------------------------

    def _reject(
        self, order_id: int, account: str | None, reason: Reason, ts: int, events: list[Event],
        order: SubmitOrder | None = None,
    ) -> None:
        self._seq += 1
        self._rejected += 1
        events.append(OrderRejected(self._seq, ts, order_id, account, reason, order))

    def _outside_quick_bounds(self, quantity: int, price: int | None) -> bool:
        """Whether an order needs the exact limit check (it is rarely true)."""
        return quantity > self._quick_max_lots or quantity < self._min_lots or (
            price is not None and (price > self._quick_band_high or price < self._band_low))

    def _limit_violation(self, quantity: int, price: int | None) -> Reason | None:
        """The instrument rule (quantity bounds, price band) that an order breaks, if any."""
        if quantity < self._min_lots:
            return Reason.QUANTITY_BELOW_MINIMUM
        if quantity > self._max_lots:
            return Reason.QUANTITY_ABOVE_MAXIMUM
        if price is not None and not self._band_low <= price <= self._band_high:
            return Reason.PRICE_OUT_OF_BAND
        return None

    def _submit(self, cmd: SubmitOrder, events: list[Event]) -> None:
        order_id = cmd.order_id
        if order_id in self._orders or (self._stops and order_id in self._stops):
            return self._reject(order_id, cmd.account, Reason.DUPLICATE_ORDER_ID, cmd.timestamp,
                                events, cmd)
        quantity = cmd.quantity
        price = cmd.price
        stop_price = cmd.stop_price
        if self._outside_quick_bounds(quantity, price) or (
                stop_price is not None and self._outside_quick_bounds(quantity, stop_price)):
            violation = self._limit_violation(quantity, price) or (
                None if stop_price is None else self._limit_violation(quantity, stop_price))
            if violation is not None:
                return self._reject(order_id, cmd.account, violation, cmd.timestamp, events,
                                    cmd)
        if stop_price is not None:  # STOP or STOP_LIMIT (the command checked)
            return self._wait(cmd, events)
        if price is not None:  # a limit order
            if cmd.side is BUY:
                if self._asks.best <= price:
                    return self._take(cmd, self._bids, self._asks, price, events)
                key = -price
                book = self._bids
            else:
                if self._bids.best <= -price:
                    return self._take(cmd, self._asks, self._bids, -price, events)
                key = price
                book = self._asks
            tif = cmd.time_in_force
            if tif is GTC or tif is GTD or tif is DAY:  # (apply_batch: most on its fast path)
                self._rest(cmd, key, quantity, book)
                self._seq += 1
                events.append(OrderAccepted(self._seq, cmd.timestamp, cmd))
                return
            expiry = IOC_REMAINDER
        else:
            if cmd.side is BUY:
                if self._asks.best != EMPTY:
                    return self._take(cmd, self._bids, self._asks, MARKET_LIMIT, events)
            elif self._bids.best != EMPTY:
                return self._take(cmd, self._asks, self._bids, MARKET_LIMIT, events)
            expiry = INSUFFICIENT_LIQUIDITY
        # Nothing to trade against and not allowed to rest.
        if cmd.time_in_force is FOK:
            return self._reject(order_id, cmd.account, Reason.FOK_NOT_FILLED, cmd.timestamp,
                                events, cmd)
        seq = self._seq
        self._seq = seq + 2
        events.append(OrderAccepted(seq + 1, cmd.timestamp, cmd))
        events.append(OrderExpired(seq + 2, cmd.timestamp, order_id, cmd.account, quantity, expiry))

    def _take(
        self,
        cmd: SubmitOrder,
        own: BookSide,
        other: BookSide,
        limit: int,
        events: list[Event],
        moving: int = 0,
    ) -> None:
        """Match an order that crosses `other` up to the key `limit`; then rest or end the rest.

        `moving` is set for an amended order that moved to a crossing price: its lots left to
        fill. Its amend event is already out, so it is neither accepted nor rejected here, only
        matched. (One function for both, with the sweep inline: a call per taker costs.)
        """
        order_id = cmd.order_id
        account = cmd.account
        ts = cmd.timestamp
        stp = cmd.stp
        orders = self._orders
        reserves = self._reserves
        levels = self._levels
        append = events.append
        if moving:
            remaining = moving
        else:
            remaining = cmd.quantity
            if cmd.post_only:
                return self._reject(order_id, account, Reason.POST_ONLY_WOULD_TAKE, ts, events,
                                    cmd)
            if (
                cmd.time_in_force is FOK
                and self._fillable(other, limit, account, stp, remaining) < remaining
            ):
                return self._reject(order_id, account, Reason.FOK_NOT_FILLED, ts, events, cmd)
            # Accepted, unless its very first match is its own order under cancel_taker or
            # cancel_both: the sweep below finds that, takes this event back and rejects.
            append(OrderAccepted(self._seq + 1, ts, cmd))
            self._seq += 1
        # The sweep: levels in price order, makers in time order, until the limit or the end.
        side = cmd.side
        sign = other.sign
        seq = start_seq = self._seq
        wanted = remaining
        stp_cancels = 0  # (and other events that are not trades: iceberg refreshes)
        traded_at = 0
        stopped = False
        refreshed: list[tuple[int, int]] | None = None  # icebergs to show again, by level
        while other.best <= limit:
            key = other.best
            level = levels[key]
            queue = level.orders
            price = key * sign
            gone: list[int] = []  # makers filled or cancelled: always a prefix of the queue
            before = remaining
            for maker_id, available in queue.items():
                maker_account = orders[maker_id].account
                if maker_account == account and stp is not STP_NONE:
                    if seq == start_seq and not moving and stp is not CANCEL_MAKER:
                        # Its first match is with itself, so nothing can trade: a rejection.
                        return self._self_match(cmd, orders[maker_id], events)
                    if stp is CANCEL_TAKER:
                        stopped = True
                        break
                    gone.append(maker_id)
                    level.size -= available
                    stp_cancels += 1
                    seq += 1
                    append(OrderCanceled(seq, ts, maker_id, account, other.side, price,
                                         available + reserves.pop(maker_id, 0) if reserves
                                         else available, STP))
                    if stp is CANCEL_BOTH:
                        stopped = True
                        break
                    continue
                if available > remaining:
                    fill = remaining
                    queue[maker_id] = available = available - remaining
                    remaining = 0
                else:
                    fill = available
                    available = 0
                    remaining -= fill
                    gone.append(maker_id)
                seq += 1
                if reserves and maker_id in reserves:
                    append(TradeExecuted(seq, ts, price, fill, side, maker_id, order_id,
                                         maker_account, account,
                                         available + reserves[maker_id], remaining))
                    if not available:  # an iceberg's visible part is filled: it refreshes
                        self._seq = seq
                        if refreshed is None:
                            refreshed = []
                        refreshed.append((maker_id, self._refill(orders[maker_id], ts,
                                                                 events)))
                        seq = self._seq
                        stp_cancels += 1  # an event that is not a trade
                else:
                    append(TradeExecuted(seq, ts, price, fill, side, maker_id, order_id,
                                         maker_account, account, available, remaining))
                if not remaining:
                    break
            if refreshed is None:
                for maker_id in gone:
                    del queue[maker_id]
                    del orders[maker_id]
            else:
                for maker_id in gone:
                    del queue[maker_id]
                for maker_id, visible in refreshed:  # at the back of the level
                    queue[maker_id] = visible
                    level.size += visible
                refreshed = None
                for maker_id in gone:
                    if maker_id not in queue:
                        del orders[maker_id]
            if before != remaining:
                traded_at = price
            level.size -= before - remaining
            if not queue:
                del levels[key]
                other.removed(key, levels)
            if stopped or not remaining:
                break
        traded = seq - start_seq - stp_cancels
        self._trades += traded
        self._volume += wanted - remaining
        if traded:
            self._last_price = traded_at
        if remaining:
            if stopped:
                seq += 1
                append(OrderCanceled(seq, ts, order_id, account, side, cmd.price, remaining,
                                     STP))
            elif cmd.price is None:
                seq += 1
                append(OrderExpired(seq, ts, order_id, account, remaining,
                                    INSUFFICIENT_LIQUIDITY))
            elif (tif := cmd.time_in_force) is IOC or tif is FOK:  # GTC, GTD, DAY rest
                seq += 1
                append(OrderExpired(seq, ts, order_id, account, remaining, IOC_REMAINDER))
            else:
                self._rest(cmd, -limit, remaining, own)
        self._seq = seq
        if traded and self._stops and not self._releasing:
            self._release(events, _after(events, start_seq))

    def _self_match(self, cmd: SubmitOrder, maker: SubmitOrder, events: list[Event]) -> None:
        """Reject an order whose first match is its own `maker` (cancelled too, cancel_both).

        `_take` has just announced the order as accepted and changed nothing else yet.
        """
        events.pop()  # the OrderAccepted
        self._seq -= 1
        if cmd.stp is CANCEL_BOTH:
            self._cancel_resting(maker, STP, cmd.timestamp, events)
        self._rejected += 1
        self._seq += 1
        events.append(OrderRejected(self._seq, cmd.timestamp, cmd.order_id, cmd.account, STP,
                                    cmd))

    def _rest(self, order: SubmitOrder, key: int, remaining: int, book: BookSide) -> None:
        """Put a live order with `remaining` lots at the back of the level with `key` (an
        iceberg shows its display quantity of them; a GTD or DAY order joins the expiries)."""
        order_id = order.order_id
        display = order.display_quantity
        if display is not None and remaining > display:
            self._reserves[order_id] = remaining - display
            remaining = display
        if order.expire_time is not None:
            heappush(self._expiries, (order.expire_time, order_id))
        self._orders[order_id] = order  # _place, inlined: every resting remainder comes here
        level = self._levels.get(key)
        if level is None:
            self._levels[key] = Level(remaining, {order_id: remaining})
            book.added(key)
        else:
            level.orders[order_id] = remaining
            level.size += remaining

    def _place(self, order: SubmitOrder, key: int, visible: int, book: BookSide) -> None:
        """Put a live order showing `visible` lots at the back of the level with `key`."""
        self._orders[order.order_id] = order
        level = self._levels.get(key)
        if level is None:
            self._levels[key] = Level(visible, {order.order_id: visible})
            book.added(key)
        else:
            level.orders[order.order_id] = visible
            level.size += visible

    def _refill(self, order: SubmitOrder, ts: int, events: list[Event]) -> int:
        """An iceberg's visible part is filled: take the next part out of its reserve,
        announce it and return its size (the caller puts it at the back of the level)."""
        order_id = order.order_id
        reserve = self._reserves.pop(order_id)
        display = order.display_quantity
        assert display is not None and order.price is not None
        visible = min(display, reserve)
        if reserve > visible:
            self._reserves[order_id] = reserve - visible
        self._seq += 1
        events.append(OrderRefreshed(self._seq, ts, order_id, order.account, order.side,
                                     order.price, visible, reserve - visible))
        return visible

    def _fillable(
        self, other: BookSide, limit: int, account: str, stp: SelfTradePrevention, wanted: int
    ) -> int:
        """How much an order could fill right now, stopping where self-trade prevention would."""
        total = 0
        for key in other.sorted_keys(self._levels):
            if key > limit:
                break
            for maker_id, available in self._levels[key].orders.items():
                if self._orders[maker_id].account == account and stp is not STP_NONE:
                    if stp is CANCEL_MAKER:
                        continue
                    return total
                total += available
                if total >= wanted:
                    return total
        return total

    # -- resting orders ----------------------------------------------------------------------

    def _unlink(self, order: SubmitOrder) -> int:
        """Take a live order out of the book; return the lots it had left (hidden ones
        included)."""
        del self._orders[order.order_id]
        price = order.price
        assert price is not None
        key = price * order.side.sign
        level = self._levels[key]
        queue = level.orders
        remaining = queue.pop(order.order_id)
        if queue:
            level.size -= remaining
        else:
            del self._levels[key]
            (self._bids if key < 0 else self._asks).removed(key, self._levels)
        if self._reserves:
            remaining += self._reserves.pop(order.order_id, 0)
        return remaining

    def _cancel_resting(
        self, order: SubmitOrder, reason: Reason, ts: int, events: list[Event]
    ) -> None:
        """Take a resting order out of the book and record why."""
        remaining = self._unlink(order)
        self._seq += 1
        events.append(OrderCanceled(self._seq, ts, order.order_id, order.account, order.side,
                                    order.price, remaining, reason))

    def _cancel(self, cmd: CancelOrder, events: list[Event]) -> None:
        order = self._orders.get(cmd.order_id)
        if order is None:
            stop = self._stops.pop(cmd.order_id, None)
            if stop is not None:
                del self._stop_serials[stop.order_id]
                self._cancels += 1
                self._seq += 1
                events.append(OrderCanceled(self._seq, cmd.timestamp, stop.order_id,
                                            stop.account, stop.side, stop.price, stop.quantity,
                                            cmd.reason))
                return None
            return self._reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, cmd.timestamp,
                                events)
        self._cancels += 1
        self._cancel_resting(order, cmd.reason, cmd.timestamp, events)

    def _amend(self, cmd: AmendOrder, events: list[Event]) -> None:
        order = self._orders.get(cmd.order_id)
        ts = cmd.timestamp
        if order is None:
            if cmd.order_id in self._stops:
                return self._amend_stop(self._stops[cmd.order_id], cmd, events)
            return self._reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, ts, events)
        new_quantity, new_price = cmd.quantity, cmd.price
        if new_quantity is None:
            if new_price is None:  # only a stop price, for an order in the book
                return self._reject(cmd.order_id, order.account, Reason.ORDER_NOT_FOUND, ts,
                                    events)
            new_quantity = order.quantity
        old_price = order.price
        assert old_price is not None
        if new_price is None:
            new_price = old_price
        account = order.account
        book, other = (self._bids, self._asks) if order.side is BUY else (self._asks, self._bids)
        level = self._levels[old_price * book.sign]
        remaining = level.orders[order.order_id]
        reserves = self._reserves
        if reserves:
            remaining += reserves.get(order.order_id, 0)
        filled = order.quantity - remaining
        if new_quantity <= filled:
            self._amends += 1
            self._cancel_resting(order, Reason.AMENDED_BELOW_FILLED, ts, events)
            return
        if self._outside_quick_bounds(new_quantity, new_price):
            violation = self._limit_violation(new_quantity, new_price)
            if violation is not None:
                return self._reject(order.order_id, account, violation, ts, events)
        new_remaining = new_quantity - filled
        if new_price == old_price and new_quantity <= order.quantity:
            # A decrease (or no change) keeps the order's place in the queue; an iceberg
            # gives up hidden lots first.
            self._shrink(order, level, new_quantity, new_remaining, ts, events)
            return
        limit = new_price * other.sign
        crosses = other.best <= limit
        if crosses and order.post_only:
            return self._reject(order.order_id, account, Reason.POST_ONLY_WOULD_TAKE, ts, events)
        self._unlink(order)
        self._amends += 1
        self._seq += 1
        events.append(OrderAmended(self._seq, ts, order.order_id, account, order.side,
                                   old_price, new_price, new_quantity, new_remaining, False))
        moved = msgspec.structs.replace(order, price=new_price, quantity=new_quantity,
                                        timestamp=ts)
        if crosses:
            self._take(moved, book, other, limit, events, new_remaining)
        else:
            self._rest(moved, -limit, new_remaining, book)

    # -- stops and expiry --------------------------------------------------------------------

    def _would_trigger(self, side: Side, stop_price: int) -> bool:
        last = self._last_price
        return last is not None and (stop_price <= last if side is BUY else stop_price >= last)

    def _wait(self, cmd: SubmitOrder, events: list[Event]) -> None:
        """A new stop: refused if the last trade already reached its stop price (no
        surprise fill on arrival: STOP_WOULD_TRIGGER), else it waits outside the book."""
        stop_price = cmd.stop_price
        assert stop_price is not None
        if self._would_trigger(cmd.side, stop_price):
            return self._reject(cmd.order_id, cmd.account, Reason.STOP_WOULD_TRIGGER,
                                cmd.timestamp, events, cmd)
        self._queue_stop(cmd)
        if cmd.expire_time is not None:
            heappush(self._expiries, (cmd.expire_time, cmd.order_id))
        self._seq += 1
        events.append(OrderAccepted(self._seq, cmd.timestamp, cmd))

    def _queue_stop(self, order: SubmitOrder) -> None:
        """Put a stop at the end of the trigger-time order."""
        stop_price = order.stop_price
        assert stop_price is not None
        self._serial += 1
        self._stops[order.order_id] = order
        self._stop_serials[order.order_id] = self._serial
        if order.side is BUY:
            heappush(self._buy_stops, (stop_price, self._serial, order.order_id))
        else:
            heappush(self._sell_stops, (-stop_price, self._serial, order.order_id))

    def _amend_stop(self, stop: SubmitOrder, cmd: AmendOrder, events: list[Event]) -> None:
        """Change a waiting stop's quantity, limit price or stop price. A quantity decrease
        keeps its trigger-time place; anything else moves it to the end."""
        ts = cmd.timestamp
        if cmd.price is not None and stop.order_type is not STOP_LIMIT:
            return self._reject(stop.order_id, stop.account, Reason.ORDER_NOT_FOUND, ts, events)
        quantity = stop.quantity if cmd.quantity is None else cmd.quantity
        price = stop.price if cmd.price is None else cmd.price
        stop_price = stop.stop_price if cmd.stop_price is None else cmd.stop_price
        assert stop_price is not None
        violation = self._limit_violation(quantity, price) or self._limit_violation(
            quantity, stop_price)
        if violation is None and self._would_trigger(stop.side, stop_price):
            violation = Reason.STOP_WOULD_TRIGGER
        if violation is not None:
            return self._reject(stop.order_id, stop.account, violation, ts, events)
        changed = msgspec.structs.replace(stop, quantity=quantity, price=price,
                                          stop_price=stop_price)
        if price == stop.price and stop_price == stop.stop_price and quantity <= stop.quantity:
            self._stops[stop.order_id] = changed
            kept = True
        else:
            del self._stops[stop.order_id]
            self._queue_stop(msgspec.structs.replace(changed, timestamp=ts))
            kept = False
        self._amends += 1
        self._seq += 1
        events.append(OrderAmended(self._seq, ts, stop.order_id, stop.account, stop.side,
                                   stop.price or 0, price or 0, quantity, quantity, kept,
                                   stop_price))

    def _triggered(self, price: int, ts: int, out: deque[tuple[SubmitOrder, int, int]]) -> None:
        """Stops that a trade at `price` releases, in trigger order (stop price, then time)."""
        stops, serials = self._stops, self._stop_serials
        buys, sells = self._buy_stops, self._sell_stops
        while buys and buys[0][0] <= price:
            _, serial, order_id = heappop(buys)
            if order_id in stops and serials[order_id] == serial:
                del serials[order_id]
                out.append((stops.pop(order_id), price, ts))
        while sells and -sells[0][0] >= price:
            _, serial, order_id = heappop(sells)
            if order_id in stops and serials[order_id] == serial:
                del serials[order_id]
                out.append((stops.pop(order_id), price, ts))

    def _release(self, events: list[Event], mark: int) -> None:
        """Enter every stop the trades in `events[mark:]` release, and those their trades
        release in turn (a cascade, resolved here: first released, first entered)."""
        self._releasing = True
        try:
            waiting: deque[tuple[SubmitOrder, int, int]] = deque()
            start = mark
            while True:
                for event in events[start:]:
                    if isinstance(event, TradeExecuted):
                        self._triggered(event.price, event.timestamp, waiting)
                if not waiting:
                    return
                stop, trade_price, ts = waiting.popleft()
                start = len(events)
                self._enter(stop, trade_price, ts, events)
        finally:
            self._releasing = False

    def _enter(self, stop: SubmitOrder, trade_price: int, ts: int, events: list[Event]) -> None:
        """A released stop enters as a market or limit order (no accept: it was accepted
        when it began to wait)."""
        stop_price = stop.stop_price
        assert stop_price is not None
        live = msgspec.structs.replace(
            stop, order_type=LIMIT if stop.order_type is STOP_LIMIT else MARKET,
            stop_price=None, timestamp=ts)
        self._seq += 1
        events.append(OrderTriggered(self._seq, ts, stop.order_id, stop.account, stop.side,
                                     stop_price, trade_price, live.price))
        own, other = (self._bids, self._asks) if stop.side is BUY else (self._asks, self._bids)
        price = live.price
        limit = MARKET_LIMIT if price is None else price * other.sign
        if other.best <= limit:
            self._take(live, own, other, limit, events, live.quantity)
            return
        if price is not None and live.time_in_force in RESTING:
            self._rest(live, -limit, live.quantity, own)
            return
        self._seq += 1
        events.append(OrderExpired(self._seq, ts, stop.order_id, stop.account, live.quantity,
                                   INSUFFICIENT_LIQUIDITY if price is None else IOC_REMAINDER))

    def _expire(self, cmd: ExpireOrders, events: list[Event]) -> None:
        """End the orders and stops due by `cmd.timestamp`, earliest expiry first (then by
        order id)."""
        self._cancels += 1  # a message that is not an order
        now = cmd.timestamp
        heap = self._expiries
        while heap and heap[0][0] <= now:
            due, order_id = heappop(heap)
            order = self._orders.get(order_id)
            if order is not None and order.expire_time == due:
                remaining = self._unlink(order)
            else:
                order = self._stops.get(order_id)
                if order is None or order.expire_time != due:
                    continue  # gone already, or a stale entry
                del self._stops[order_id]
                del self._stop_serials[order_id]
                remaining = order.quantity
            self._seq += 1
            events.append(OrderExpired(
                self._seq, now, order_id, order.account, remaining,
                Reason.DAY_ENDED if order.time_in_force is DAY else Reason.GTD_EXPIRED))

    def next_expiry(self) -> int | None:
        """The earliest expire time of a live order or waiting stop (for the actor's timer)."""
        heap = self._expiries
        while heap:
            due, order_id = heap[0]
            order = self._orders.get(order_id) or self._stops.get(order_id)
            if order is not None and order.expire_time == due:
                return due
            heappop(heap)
        return None

    @property
    def last_price(self) -> int | None:
        """The last trade's price in ticks (what stops trigger on), None before any trade."""
        return self._last_price

    def stop_orders(self) -> list[SubmitOrder]:
        """The waiting stops in trigger-time order (never in market data)."""
        return list(self._stops.values())

    # -- replayed market data ----------------------------------------------------------------

    def _execute(self, cmd: ExecuteOrder, events: list[Event]) -> None:
        order = self._orders.get(cmd.order_id)
        ts = cmd.timestamp
        if order is None:
            return self._reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, ts, events)
        price = order.price
        assert price is not None
        level = self._levels[price * order.side.sign]
        remaining = level.orders[order.order_id]
        hidden = self._reserves.get(order.order_id, 0) if self._reserves else 0
        fill = min(cmd.quantity, remaining)
        mark = len(events)
        self._executions += 1
        self._trades += 1
        self._volume += fill
        self._seq += 1
        events.append(TradeExecuted(self._seq, ts, price, fill, SELL if order.side is BUY else BUY,
                                    order.order_id, None, order.account, None,
                                    remaining - fill + hidden, 0))
        if fill < remaining:
            level.orders[order.order_id] = remaining - fill
            level.size -= fill
        elif hidden:
            del level.orders[order.order_id]
            visible = self._refill(order, ts, events)
            level.orders[order.order_id] = visible
            level.size += visible - fill
        else:
            self._unlink(order)
        self._last_price = price
        if self._stops and not self._releasing:
            self._release(events, mark)

    def _reduce(self, cmd: ReduceOrder, events: list[Event]) -> None:
        order = self._orders.get(cmd.order_id)
        ts = cmd.timestamp
        if order is None:
            return self._reject(cmd.order_id, None, Reason.ORDER_NOT_FOUND, ts, events)
        price = order.price
        assert price is not None
        level = self._levels[price * order.side.sign]
        remaining = level.orders[order.order_id]
        if self._reserves:
            remaining += self._reserves.get(order.order_id, 0)
        if cmd.quantity >= remaining:
            self._amends += 1
            self._cancel_resting(order, CANCELED, ts, events)
            return
        self._shrink(order, level, order.quantity - cmd.quantity, remaining - cmd.quantity, ts,
                     events)

    def _shrink(self, order: SubmitOrder, level: Level, quantity: int, left: int, ts: int,
                events: list[Event]) -> None:
        """Decrease a resting order to `quantity` in all with `left` lots to fill, keeping its
        place in the queue; an iceberg gives up hidden lots first."""
        order_id = order.order_id
        visible = level.orders[order_id]
        shown = visible if visible <= left else left
        level.orders[order_id] = shown
        level.size -= visible - shown
        reserves = self._reserves
        if reserves and order_id in reserves:
            if left > shown:
                reserves[order_id] = left - shown
            else:
                del reserves[order_id]
        changed = order.__copy__()  # type: ignore[attr-defined]  # (replace rechecks)
        force_setattr(changed, "quantity", quantity)
        self._orders[order_id] = changed
        self._amends += 1
        self._seq += 1
        price = order.price
        assert price is not None
        events.append(OrderAmended(self._seq, ts, order_id, order.account, order.side, price,
                                   price, quantity, left, True))

    # -- queries -----------------------------------------------------------------------------

    def best_bid(self) -> tuple[int, int] | None:
        """Best bid as (price, size), or None when there are no bids. O(1)."""
        key = self._bids.best
        if key == EMPTY:
            return None
        return -key, self._levels[key].size

    def best_ask(self) -> tuple[int, int] | None:
        """Best ask as (price, size), or None when there are no asks. O(1)."""
        key = self._asks.best
        if key == EMPTY:
            return None
        return key, self._levels[key].size

    def spread(self) -> int | None:
        """Best ask minus best bid in ticks, or None when a side is empty."""
        if self._bids.best == EMPTY or self._asks.best == EMPTY:
            return None
        return self._asks.best + self._bids.best

    def mid(self) -> Decimal | None:
        """Midpoint in ticks (may fall on a half tick), or None when a side is empty."""
        if self._bids.best == EMPTY or self._asks.best == EMPTY:
            return None
        return Decimal(self._asks.best - self._bids.best) / 2

    def depth(
        self, levels: int | None = None
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """L2 book: (bids, asks) as (price, size) lists from the best level outwards."""
        return self.side_depth(BUY, levels), self.side_depth(SELL, levels)

    def side_depth(self, side: Side, levels: int | None = None) -> list[tuple[int, int]]:
        """One side's L2 levels as (price, size) from the best outwards."""
        book = self._bids if side is BUY else self._asks
        return [(key * book.sign, self._levels[key].size)
                for key in book.sorted_keys(self._levels, levels)]

    def level_size(self, side: Side, price: int) -> int:
        """Total remaining size resting at `price` on `side` (0 when there is no level)."""
        level = self._levels.get(price * side.sign)
        return 0 if level is None else level.size

    def level_orders(self, side: Side, price: int) -> list[OrderView]:
        """L3: the orders at one price level, in queue (time priority) order."""
        level = self._levels.get(price * side.sign)
        if level is None:
            return []
        reserves = self._reserves
        return [order_view(self._orders[order_id], remaining, reserves.get(order_id, 0))
                for order_id, remaining in level.orders.items()]

    def order(self, order_id: int) -> OrderView | None:
        """A copy of the live order with this id, or None if it is not resting."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        price = order.price
        assert price is not None
        return order_view(order, self._levels[price * order.side.sign].orders[order_id],
                          self._reserves.get(order_id, 0))

    def owner(self, order_id: int) -> str | None:
        """The account of a live order, or None if no such order rests."""
        order = self._orders.get(order_id)
        return None if order is None else order.account

    def open_order_count(self) -> int:
        """Number of orders resting in the book."""
        return len(self._orders)

    def counters(self) -> Counters:
        """Messages processed, orders accepted, rejections, trades and traded volume (lots)."""
        accepted = (self._messages - self._rejected - self._cancels - self._amends
                    - self._executions)
        return Counters(self._messages, accepted, self._rejected, self._trades, self._volume)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> BookSnapshot:
        """Capture the whole book; `Engine.restore` turns it back into an identical engine."""
        return BookSnapshot(
            spec=self.spec,
            seq=self._seq,
            counters=self.counters(),
            bids=self._side_orders(self._bids),
            asks=self._side_orders(self._asks),
            stops=list(self._stops.values()),
            last_price=self._last_price,
        )

    def capture(self) -> BookCapture:
        """A consistent copy of the book, cheap enough for the actor's turn (see
        `BookCapture`); its `image()` is what a snapshot file stores."""
        return BookCapture(self.spec, self._seq, self.counters(),
                           {key: dict(level.orders) for key, level in self._levels.items()},
                           dict(self._orders), dict(self._reserves), list(self._stops.values()),
                           self._last_price)

    def _side_orders(self, book: BookSide) -> list[OrderView]:
        reserves = self._reserves
        return [
            order_view(self._orders[order_id], remaining, reserves.get(order_id, 0))
            for key in book.sorted_keys(self._levels)
            for order_id, remaining in self._levels[key].orders.items()
        ]

    @classmethod
    def restore(cls, snapshot: BookSnapshot) -> Engine:
        """Rebuild the engine a snapshot was taken from; raise SnapshotError if it is invalid."""
        engine = cls(snapshot.spec)
        for book, views in ((engine._bids, snapshot.bids), (engine._asks, snapshot.asks)):
            for view in views:
                if view.side is not book.side or view.order_id in engine._orders:
                    raise SnapshotError(f"order {view.order_id} is duplicated or on the wrong side")
                if not 0 < view.remaining <= view.quantity or view.price <= 0:
                    raise SnapshotError(f"order {view.order_id} has an impossible size or price")
                if view.hidden < 0 or (view.hidden and view.display_quantity is None):
                    raise SnapshotError(f"order {view.order_id} has an impossible reserve")
                try:
                    order = SubmitOrder(view.order_id, view.account, view.side, view.quantity,
                                        price=view.price, post_only=view.post_only,
                                        stp=view.stp, timestamp=view.timestamp,
                                        client_order_id=view.client_order_id,
                                        cancel_on_disconnect=view.cancel_on_disconnect,
                                        time_in_force=view.time_in_force,
                                        expire_time=view.expire_time,
                                        display_quantity=view.display_quantity)
                except InvalidCommandError as error:
                    raise SnapshotError(str(error)) from None
                engine._place(order, view.price * book.sign, view.remaining, book)
                if view.hidden:
                    engine._reserves[order.order_id] = view.hidden
                if order.expire_time is not None:
                    heappush(engine._expiries, (order.expire_time, order.order_id))
        if engine._asks.best <= -engine._bids.best:
            raise SnapshotError("snapshot book is crossed")
        for stop in snapshot.stops:
            if stop.order_type not in STOPS or stop.order_id in engine._orders \
                    or stop.order_id in engine._stops:
                raise SnapshotError(f"stop {stop.order_id} is not a stop or is duplicated")
            engine._queue_stop(stop)
            if stop.expire_time is not None:
                heappush(engine._expiries, (stop.expire_time, stop.order_id))
        engine._last_price = snapshot.last_price
        counters = snapshot.counters
        engine._seq = snapshot.seq
        engine._messages = counters.messages
        engine._rejected = counters.rejections
        # Cancels, amends and executions are only ever reported as a sum.
        engine._cancels = counters.messages - counters.orders - counters.rejections
        engine._trades = counters.trades
        engine._volume = counters.volume
        return engine

