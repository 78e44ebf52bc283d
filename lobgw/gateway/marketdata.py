"""Market-data fan-out: trades, quotes, L2 book and private executions to WebSocket subscribers.

`MarketDataHub.on_batch` is an actor listener: it runs inside the actor's turn, so book reads
are consistent, and it must never block. Each message is encoded once, as a complete frame,
and offered to every subscriber's bounded outbox (lobgw.gateway.outbox), which writes
batches without waiting. A subscriber whose outbox overflows is closed as a slow consumer
and resyncs from a fresh snapshot. Book subscriptions are grouped by depth (10, 25, 100,
500, 1000): each group keeps the top levels it last published and sends only the
differences, so a client's copy is exactly the top `depth` levels, verified by a
Kraken-v2-style CRC32 of the top 10.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

import msgspec

from lobgw.actors import BookReader
from lobgw.book.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderRefreshed,
    OrderRejected,
    TradeExecuted,
)
from lobgw.book.instrument import InstrumentSpec, SpecFormat
from lobgw.book.types import Side
from lobgw.encoding import Pieces, array_pieces
from lobgw.gateway.outbox import Outbox, encode_frame
from lobgw.gateway.wire import (
    CHECKSUM_LEVELS,
    BookSnapshotMessage,
    BookUpdateMessage,
    ExecutionMessage,
    HeartbeatMessage,
    L3Change,
    L3Order,
    OrdersSnapshotMessage,
    OrdersUpdateMessage,
    QuoteMessage,
    TradeInfo,
    TradeMessage,
    book_checksum,
    orders_checksum,
)

BOOK_DEPTHS = (10, 25, 100, 500, 1000)

RecentTrade = tuple[int, int, int, Side, int]
"""(seq, price, quantity, aggressor, timestamp) of a public trade."""
_decode_trades = msgspec.msgpack.Decoder(list[RecentTrade]).decode


def format_level(fmt: SpecFormat, price: int, quantity: int) -> tuple[str, str]:
    """A level as the [price, quantity] strings that go on the wire."""
    return fmt.price(price), fmt.quantity(quantity)


class BookGroup:
    """The subscribers of one symbol at one depth, and the levels last sent to them."""

    __slots__ = ("asks", "bids", "last_seq", "last_timestamp", "subscribers")

    def __init__(self, bids: dict[int, int], asks: dict[int, int], seq: int,
                 timestamp: int) -> None:
        self.bids = bids
        self.asks = asks
        self.last_seq = seq
        self.last_timestamp = timestamp
        self.subscribers: set[Outbox] = set()


class SymbolFeed:
    """Subscriptions and published state of one symbol."""

    def __init__(self, spec: InstrumentSpec, recent_trades: int) -> None:
        self.spec = spec
        self.fmt = SpecFormat(spec)
        self.trades: set[Outbox] = set()
        self.quotes: set[Outbox] = set()
        self.books: dict[int, BookGroup] = {}
        self.last_quote: tuple[int, int, int, int] | None = None
        self.last_timestamp = 0
        """The engine time of the last event that changed the book."""
        self.recent: deque[RecentTrade] = deque(maxlen=recent_trades)
        self.l3 = OrdersFeed()


class OrdersFeed:
    """The order-by-order (L3) subscribers of one symbol and the visible orders last sent
    to them (kept only while someone subscribes): order id -> (side, price, visible)."""

    __slots__ = ("icebergs", "last_seq", "last_timestamp", "orders", "subscribers")

    def __init__(self) -> None:
        self.subscribers: set[Outbox] = set()
        self.orders: dict[int, tuple[Side, int, int]] = {}
        self.icebergs: set[int] = set()
        self.last_seq = 0
        self.last_timestamp = 0


class MarketDataHub:
    """Routes every batch's events to the subscribers that asked for them."""

    def __init__(self, specs: dict[str, InstrumentSpec], recent_trades: int = 1_000) -> None:
        self.feeds = {symbol: SymbolFeed(spec, recent_trades) for symbol, spec in specs.items()}
        self.executions: dict[str, set[Outbox]] = {}

    # -- subscriptions (called by connections; book subscriptions run inside the actor) ------

    def subscribe_trades(self, subscriber: Outbox, symbol: str) -> None:
        """Send `symbol`'s trades to `subscriber` from now on."""
        self.feeds[symbol].trades.add(subscriber)

    def attach_quotes(self, subscriber: Outbox, symbol: str, book: BookReader) -> bytes:
        """Run inside the actor: subscribe to every change; return the current quote."""
        feed = self.feeds[symbol]
        feed.quotes.add(subscriber)
        quote = _quote(book)
        feed.last_quote = quote
        return encode_frame(self._quote_message(feed, book.seq, quote, feed.last_timestamp))

    def attach_book(self, subscriber: Outbox, symbol: str, depth: int,
                    book: BookReader) -> bytes:
        """Run inside the actor: subscribe to the changes of `depth` levels; return the
        snapshot they chain on from."""
        feed = self.feeds[symbol]
        group = feed.books.get(depth)
        if group is None:
            bids, asks = book.depth(depth)
            group = BookGroup(dict(bids), dict(asks), book.seq, feed.last_timestamp)
            feed.books[depth] = group
        group.subscribers.add(subscriber)
        bid_levels = [format_level(feed.fmt, p, q) for p, q in _sorted(group.bids, True)]
        ask_levels = [format_level(feed.fmt, p, q) for p, q in _sorted(group.asks, False)]
        return encode_frame(BookSnapshotMessage(
            symbol=symbol, seq=group.last_seq, depth=depth, timestamp=group.last_timestamp,
            bids=bid_levels, asks=ask_levels, checksum=book_checksum(ask_levels, bid_levels)))

    def attach_orders(self, subscriber: Outbox, symbol: str, book: BookReader) -> bytes:
        """Run inside the actor: subscribe to the order-by-order changes of `symbol`;
        return the snapshot of every visible order they chain on from."""
        feed = self.feeds[symbol]
        l3 = feed.l3
        if not l3.subscribers:  # nobody kept the mirror up to date: take it from the book
            l3.orders.clear()
            l3.icebergs.clear()
            for side, levels in zip((Side.BUY, Side.SELL), book.depth(None), strict=True):
                for price, _ in levels:
                    for view in book.level_orders(side, price):
                        l3.orders[view.order_id] = (side, price, view.remaining)
                        if view.display_quantity is not None:
                            l3.icebergs.add(view.order_id)
            l3.last_seq, l3.last_timestamp = book.seq, feed.last_timestamp
        l3.subscribers.add(subscriber)
        fmt = feed.fmt
        bids, asks = _l3_levels(book, fmt, None)
        return encode_frame(OrdersSnapshotMessage(
            symbol=symbol, seq=l3.last_seq, timestamp=l3.last_timestamp,
            bids=[order for level in bids for order in level],
            asks=[order for level in asks for order in level],
            checksum=_l3_checksum(bids, asks)))

    def subscribe_executions(self, subscriber: Outbox, account: str) -> None:
        """Send the account's execution reports to `subscriber`."""
        self.executions.setdefault(account, set()).add(subscriber)

    def unsubscribe(self, subscriber: Outbox, channel: str, symbol: str | None,
                    account: str | None = None) -> bool:
        """Stop one subscription; return whether there was one."""
        if channel == "executions":
            subscribers = self.executions.get(account or "", set())
            found = subscriber in subscribers
            subscribers.discard(subscriber)
            return found
        feed = self.feeds.get(symbol or "")
        if feed is None:
            return False
        if channel == "trades":
            found = subscriber in feed.trades
            feed.trades.discard(subscriber)
            return found
        if channel == "quotes":
            found = subscriber in feed.quotes
            feed.quotes.discard(subscriber)
            return found
        if channel == "orders":
            found = subscriber in feed.l3.subscribers
            feed.l3.subscribers.discard(subscriber)
            return found
        found = False
        for depth, group in list(feed.books.items()):
            if subscriber in group.subscribers:
                found = True
                group.subscribers.discard(subscriber)
                if not group.subscribers:
                    del feed.books[depth]
        return found

    def unsubscribe_all(self, subscriber: Outbox) -> None:
        """Drop every subscription of a closing connection."""
        for feed in self.feeds.values():
            feed.trades.discard(subscriber)
            feed.quotes.discard(subscriber)
            feed.l3.subscribers.discard(subscriber)
            for depth, group in list(feed.books.items()):
                group.subscribers.discard(subscriber)
                if not group.subscribers:
                    del feed.books[depth]
        for subscribers in self.executions.values():
            subscribers.discard(subscriber)

    def subscribers(self) -> set[Outbox]:
        """Every subscriber with at least one subscription."""
        found: set[Outbox] = set()
        for feed in self.feeds.values():
            found |= feed.trades | feed.quotes | feed.l3.subscribers
            for group in feed.books.values():
                found |= group.subscribers
        for subscribers in self.executions.values():
            found |= subscribers
        return found

    def capture(self, symbol: str) -> Callable[[], Pieces]:
        """The symbol's recent trades, for its snapshot (so `/trades` survives restarts):
        taken now, encoded later."""
        trades = list(self.feeds[symbol].recent)
        return lambda: array_pieces(trades)

    def give_back(self, symbol: str, data: bytes) -> None:
        """Restore what `capture` saved (recovery, before the journal tail)."""
        feed = self.feeds[symbol]
        feed.recent.clear()
        feed.recent.extend(_decode_trades(data))

    def recent_trades(self, symbol: str, limit: int) -> list[TradeInfo]:
        """The last `limit` trades of `symbol`, oldest first."""
        feed = self.feeds[symbol]
        recent = list(feed.recent)[-limit:]
        return [TradeInfo(seq=seq, price=feed.fmt.price(price),
                          quantity=feed.fmt.quantity(quantity),
                          aggressor=aggressor, timestamp=ts)
                for seq, price, quantity, aggressor, ts in recent]

    # -- publishing ---------------------------------------------------------------------------

    def on_batch(self, symbol: str, events: list[Event], book: BookReader) -> None:
        """Actor listener: publish one batch of `symbol`'s events."""
        feed = self.feeds[symbol]
        changed = False
        for event in events:
            if event.__class__ is TradeExecuted:
                trade: TradeExecuted = event
                feed.recent.append((trade.seq, trade.price, trade.quantity, trade.aggressor,
                                    trade.timestamp))
                if feed.trades:
                    price, quantity = format_level(feed.fmt, trade.price, trade.quantity)
                    self._send(feed.trades, encode_frame(TradeMessage(
                        symbol=symbol, seq=trade.seq, price=price, quantity=quantity,
                        aggressor=trade.aggressor, timestamp=trade.timestamp)))
                changed = True
            elif event.__class__ is not OrderRejected:
                changed = True
        if not changed:
            return
        timestamp = feed.last_timestamp = events[-1].timestamp
        if feed.quotes:
            quote = _quote(book)
            if quote != feed.last_quote:
                feed.last_quote = quote
                self._send(feed.quotes, encode_frame(
                    self._quote_message(feed, book.seq, quote, timestamp)))
        for depth, group in feed.books.items():
            self._publish_book(feed, symbol, depth, group, book, timestamp)
        if feed.l3.subscribers:
            self._publish_orders(feed, symbol, events, book, timestamp)

    def on_executions(self, symbol: str, reports: list[tuple[str, ExecutionMessage]]) -> None:
        """Registry callback: deliver execution reports to their account's subscribers."""
        for account, report in reports:
            subscribers = self.executions.get(account)
            if subscribers:
                self._send(subscribers, encode_frame(report))

    def heartbeat(self, idle_seconds: float, outboxes: Iterable[Outbox]) -> None:
        """Send a heartbeat to each of `outboxes` that has been quiet for `idle_seconds`."""
        now = time.monotonic()
        message = None
        for outbox in outboxes:
            if now - outbox.last_sent >= idle_seconds:
                message = message or encode_frame(HeartbeatMessage(time=time.time_ns()))
                outbox.offer(message)
                outbox.last_sent = now

    def _send(self, subscribers: Iterable[Outbox], data: bytes) -> None:
        for subscriber in list(subscribers):  # a copy: an overflow unsubscribes mid-loop
            subscriber.offer(data)

    def _publish_book(self, feed: SymbolFeed, symbol: str, depth: int, group: BookGroup,
                      book: BookReader, timestamp: int) -> None:
        bids, asks = book.depth(depth)
        new_bids, new_asks = dict(bids), dict(asks)
        bid_changes = _diff(group.bids, new_bids, True)
        ask_changes = _diff(group.asks, new_asks, False)
        if not bid_changes and not ask_changes:
            return
        fmt = feed.fmt
        message = BookUpdateMessage(
            symbol=symbol, seq=book.seq, prev_seq=group.last_seq, depth=depth,
            timestamp=timestamp,
            bids=[format_level(fmt, p, q) for p, q in bid_changes],
            asks=[format_level(fmt, p, q) for p, q in ask_changes],
            checksum=book_checksum((format_level(fmt, p, q) for p, q in asks[:CHECKSUM_LEVELS]),
                                   (format_level(fmt, p, q) for p, q in bids[:CHECKSUM_LEVELS])))
        group.bids, group.asks, group.last_seq = new_bids, new_asks, book.seq
        group.last_timestamp = timestamp
        self._send(group.subscribers, encode_frame(message))

    def _publish_orders(self, feed: SymbolFeed, symbol: str, events: list[Event],
                        book: BookReader, timestamp: int) -> None:
        """The batch's order-by-order changes: every order its events touched, compared
        with what subscribers were last sent (so an order added and gone within one batch
        never shows), adds in queue order at the back of their levels."""
        l3, fmt = feed.l3, feed.fmt
        touched: dict[int, None] = {}
        requeued: set[int] = set()
        changes: list[L3Change] = []
        for event in events:
            cls = event.__class__
            if cls is TradeExecuted:
                trade: TradeExecuted = event  # type: ignore[assignment]
                touched[trade.maker_order_id] = None
                if trade.taker_order_id is not None:
                    touched[trade.taker_order_id] = None
                price, quantity = format_level(fmt, trade.price, trade.quantity)
                maker = book.order(trade.maker_order_id)
                hidden = trade.maker_order_id in l3.icebergs or (
                    maker is not None and maker.display_quantity is not None)
                changes.append(L3Change("trade", trade.aggressor.opposite,
                                        None if hidden else trade.maker_order_id,
                                        price, quantity))
            elif cls is OrderAccepted:
                touched[event.order.order_id] = None  # type: ignore[attr-defined]
            elif cls is not OrderRejected:
                order_id: int = event.order_id  # type: ignore[attr-defined]
                touched[order_id] = None
                if cls is OrderRefreshed or (cls is OrderAmended
                                             and not event.priority_kept):  # type: ignore[attr-defined]
                    requeued.add(order_id)
        adds: dict[tuple[Side, int], set[int]] = {}
        for order_id in touched:
            view = book.order(order_id)
            before = l3.orders.get(order_id)
            if view is None:
                if before is not None:
                    del l3.orders[order_id]
                    l3.icebergs.discard(order_id)
                    changes.append(L3Change("delete", before[0], order_id))
                continue
            if before is None or order_id in requeued or before[1] != view.price:
                if before is not None:
                    changes.append(L3Change("delete", before[0], order_id))
                adds.setdefault((view.side, view.price), set()).add(order_id)
                if view.display_quantity is not None:
                    l3.icebergs.add(order_id)
            elif before[2] != view.remaining:
                l3.orders[order_id] = (view.side, view.price, view.remaining)
                changes.append(L3Change("modify", view.side, order_id,
                                        fmt.price(view.price), fmt.quantity(view.remaining)))
        for (side, level), added in adds.items():
            for view in book.level_orders(side, level):  # the added are the queue's back
                if view.order_id in added:
                    l3.orders[view.order_id] = (side, level, view.remaining)
                    changes.append(L3Change("add", side, view.order_id, fmt.price(level),
                                            fmt.quantity(view.remaining)))
        if not changes:
            return
        bids, asks = _l3_levels(book, fmt, CHECKSUM_LEVELS)
        message = OrdersUpdateMessage(symbol=symbol, seq=book.seq, prev_seq=l3.last_seq,
                                      timestamp=timestamp, changes=changes,
                                      checksum=_l3_checksum(bids, asks))
        l3.last_seq, l3.last_timestamp = book.seq, timestamp
        self._send(l3.subscribers, encode_frame(message))

    @staticmethod
    def _quote_message(feed: SymbolFeed, seq: int, quote: tuple[int, int, int, int],
                       timestamp: int) -> QuoteMessage:
        bid, bid_size, ask, ask_size = quote
        message = QuoteMessage(symbol=feed.spec.symbol, seq=seq, timestamp=timestamp)
        if bid_size:
            message.bid, message.bid_size = format_level(feed.fmt, bid, bid_size)
        if ask_size:
            message.ask, message.ask_size = format_level(feed.fmt, ask, ask_size)
        return message


def _l3_levels(book: BookReader, fmt: SpecFormat, levels: int | None
               ) -> tuple[list[list[L3Order]], list[list[L3Order]]]:
    """The visible orders of the top `levels` (all: None) of each side, by level from the
    best outwards, each level in time priority."""
    found: list[list[list[L3Order]]] = []
    for side, depth in zip((Side.BUY, Side.SELL), book.depth(levels), strict=True):
        found.append([[(view.order_id, fmt.price(price), fmt.quantity(view.remaining))
                       for view in book.level_orders(side, price)] for price, _ in depth])
    return found[0], found[1]


def _l3_checksum(bids: list[list[L3Order]], asks: list[list[L3Order]]) -> int:
    return orders_checksum(([(price, quantity) for _, price, quantity in level]
                            for level in asks),
                           ([(price, quantity) for _, price, quantity in level]
                            for level in bids))


def _quote(book: BookReader) -> tuple[int, int, int, int]:
    bid = book.best_bid() or (0, 0)
    ask = book.best_ask() or (0, 0)
    return bid[0], bid[1], ask[0], ask[1]


def _sorted(levels: dict[int, int], descending: bool) -> list[tuple[int, int]]:
    return sorted(levels.items(), reverse=descending)


def _diff(old: dict[int, int], new: dict[int, int], descending: bool) -> list[tuple[int, int]]:
    """Levels whose size changed, appeared (new size) or left the window (size 0)."""
    changes = [(price, size) for price, size in new.items() if old.get(price) != size]
    changes.extend((price, 0) for price in old if price not in new)
    changes.sort(reverse=descending)
    return changes

