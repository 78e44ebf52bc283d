"""A Python client for the lobgw WebSocket API, built on `websockets`, that runs unattended.

    async with await LobgwClient.connect("ws://127.0.0.1:8080/ws", api_key=KEY) as client:
        ack = await client.place("BTC-USD", "BUY", "0.5", price="64000")
        await client.subscribe("book", "BTC-USD", depth=10)
        async for message in client.market_data():
            book = client.books["BTC-USD"]   # snapshot + updates, checked

What it does by itself:

- **Typed messages.** Everything pushed is a msgspec Struct of `lobgw.gateway.wire`
  (`TradeMessage`, `BookUpdateMessage`, `ExecutionMessage`, ...), plus the client's own
  notices (`Disconnected`, `Reconnected`, `BookResync`, `Dropped`).
- **Books it can vouch for.** `client.books` changes when the message that changes it is
  yielded, not before. An update that does not chain on (`prev_seq`) or whose checksum does
  not match removes the book, yields `BookResync`, and resubscribes for a fresh snapshot.
- **No lost execution reports.** Reports are numbered per account and symbol
  (`account_seq`); a duplicate is dropped, a gap resubscribes with `since` and the server
  replays the missed ones from its history, in order.
- **Reconnects** with exponential backoff (and jitter) after the connection drops: it
  authenticates again, resubscribes (executions from the last `account_seq` seen). A
  request in flight when the connection dropped fails with `ConnectionLostError`; it is
  never resent (the order may or may not have been placed: look it up by client order id).
- **An explicit overflow policy** for pushed messages the application has not read yet
  (`max_queue` of them): `drop_oldest` (the default: books resync and executions resume
  through the gap rules, and a `Dropped` notice says how many went), `block` (stop reading
  the socket: the server may then close this slow consumer, and the client reconnects) or
  `raise` (close; reading raises `QueueOverflowError`).
- After `close()`, or once it gave up, every request raises `ClientClosedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal

import msgspec
import websockets
from sortedcontainers import SortedDict

from lobgw.gateway.wire import (
    BatchResult,
    BookSnapshotMessage,
    BookUpdateMessage,
    CancelAfterResult,
    CancelAllResult,
    ErrorBody,
    ErrorMessage,
    ExecutionMessage,
    HeartbeatMessage,
    OrderAck,
    OrderInfo,
    OrdersSnapshotMessage,
    OrdersUpdateMessage,
    PongMessage,
    QuoteMessage,
    ShutdownMessage,
    SubscribedMessage,
    TradeMessage,
    UnsubscribedMessage,
    book_checksum,
    orders_checksum,
)

Overflow = Literal["drop_oldest", "block", "raise"]
_encode = msgspec.json.Encoder().encode


# -- the client's own notices, pushed among the server's messages ------------------------------

class Notice(msgspec.Struct, tag_field="type"):
    """Base of what the client itself tells the application."""


class Disconnected(Notice, tag="disconnected"):
    """The connection dropped (`code` is its close code); the client is reconnecting."""

    code: int | None
    reason: str


class Reconnected(Notice, tag="reconnected"):
    """The connection is back, authenticated and resubscribed, after `attempts` tries."""

    attempts: int


class BookResync(Notice, tag="book_resync"):
    """`symbol`'s book could not be trusted (`reason`); a fresh snapshot is on its way."""

    symbol: str
    reason: str


class Dropped(Notice, tag="dropped"):
    """`count` pushed messages were dropped because the application did not read them in
    time (overflow policy `drop_oldest`)."""

    count: int


class _Ack(msgspec.Struct, tag_field="type", tag="ack"):
    id: int | str | None
    op: str
    result: msgspec.Raw = msgspec.Raw(b"null")


Pushed = (TradeMessage | QuoteMessage | BookSnapshotMessage | BookUpdateMessage
          | OrdersSnapshotMessage | OrdersUpdateMessage | ExecutionMessage | HeartbeatMessage
          | ShutdownMessage | ErrorMessage)
"""What the server pushes (an `ErrorMessage` here answers no request of ours)."""
Message = Pushed | Notice
_Incoming = (_Ack | ErrorMessage | PongMessage | SubscribedMessage | UnsubscribedMessage
             | TradeMessage | QuoteMessage | BookSnapshotMessage | BookUpdateMessage
             | OrdersSnapshotMessage | OrdersUpdateMessage | ExecutionMessage
             | HeartbeatMessage | ShutdownMessage)
_decode = msgspec.json.Decoder(_Incoming).decode
_RESULTS: dict[str, Any] = {"place": OrderAck, "cancel": OrderAck, "amend": OrderAck,
                            "cancel_all": CancelAllResult, "cancel_after": CancelAfterResult,
                            "batch": BatchResult}


# -- errors -------------------------------------------------------------------------------------

class ClientError(Exception):
    """The server refused a request: `code`, `field` and `reason` as it sent them."""

    def __init__(self, error: ErrorBody, order: OrderInfo | None = None) -> None:
        super().__init__(f"{error.code}: {error.reason}"
                         + (f" (field {error.field})" if error.field else ""))
        self.code = str(error.code)
        self.field = error.field
        self.reason = error.reason
        self.retry_after_ms = error.retry_after_ms
        self.order = order


class ClientClosedError(ConnectionError):
    """The client was closed (or gave up reconnecting): no more requests."""


class ConnectionLostError(ConnectionError):
    """The connection dropped before this request was answered; it is not resent."""


class QueueOverflowError(Exception):
    """Overflow policy `raise`: the application fell `max_queue` messages behind."""


class BookGapError(Exception):
    """An update did not chain on from the last one."""


class ChecksumError(Exception):
    """The local book no longer matches the server's checksum."""


# -- the local book -----------------------------------------------------------------------------

class LocalBook:
    """A client copy of the top `depth` levels, kept from a snapshot plus updates."""

    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.seq = -1
        # key: price (bids negated so the best comes first) -> (price text, quantity text)
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.updates = 0

    def apply_snapshot(self, message: BookSnapshotMessage) -> None:
        """Replace the book with a snapshot and check its checksum."""
        self.bids.clear()
        self.asks.clear()
        for price, quantity in message.bids:
            self.bids[-Decimal(price)] = (price, quantity)
        for price, quantity in message.asks:
            self.asks[Decimal(price)] = (price, quantity)
        self.seq = message.seq
        self._verify(message.checksum)

    def apply_update(self, message: BookUpdateMessage) -> None:
        """Apply an update; raise BookGapError or ChecksumError if the copy cannot be trusted."""
        if message.prev_seq != self.seq:
            raise BookGapError(f"{self.symbol}: update chains on {message.prev_seq}, "
                               f"but the last one seen is {self.seq}")
        for changes, sign, levels in ((message.bids, -1, self.bids),
                                      (message.asks, 1, self.asks)):
            for price, quantity in changes:
                key = sign * Decimal(price)
                if Decimal(quantity) == 0:
                    levels.pop(key, None)
                else:
                    levels[key] = (price, quantity)
            while len(levels) > self.depth:
                levels.popitem(-1)
        self.seq = message.seq
        self.updates += 1
        self._verify(message.checksum)

    def top(self, side: str, levels: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """[(price, quantity)] from the best level outwards."""
        book = self.bids if side == "bids" else self.asks
        values = list(book.values())[:levels]
        return [(Decimal(price), Decimal(quantity)) for price, quantity in values]

    def checksum(self) -> int:
        """CRC32 of the top 10 asks then bids, as the server computes it."""
        return book_checksum(self.asks.values(), self.bids.values())

    def _verify(self, expected: int) -> None:
        if self.checksum() != expected:
            raise ChecksumError(f"{self.symbol}: checksum {self.checksum()} != {expected}")


class LocalOrderBook:
    """A client copy of every visible order of a symbol (channel `orders`), kept from a
    snapshot plus updates, queues in time priority, verified by the level-3 checksum."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq = -1
        self.sides: dict[str, SortedDict] = {"BUY": SortedDict(), "SELL": SortedDict()}
        """Side -> price key (bids negated: the best first) -> {order_id: (price, qty)}
        in time priority, texts as sent."""
        self.where: dict[int, tuple[str, Decimal]] = {}
        """Order id -> (side, price key)."""
        self.updates = 0

    def apply_snapshot(self, message: OrdersSnapshotMessage) -> None:
        """Replace the book with a snapshot and check its checksum."""
        for levels in self.sides.values():
            levels.clear()
        self.where.clear()
        for side, orders in (("BUY", message.bids), ("SELL", message.asks)):
            for order_id, price, quantity in orders:
                self._add(side, order_id, price, quantity)
        self.seq = message.seq
        self._verify(message.checksum)

    def apply_update(self, message: OrdersUpdateMessage) -> None:
        """Apply the changes in order; raise BookGapError or ChecksumError if the copy
        cannot be trusted."""
        if message.prev_seq != self.seq:
            raise BookGapError(f"{self.symbol}: orders update chains on {message.prev_seq}, "
                               f"but the last one seen is {self.seq}")
        for change in message.changes:
            if change.event == "trade" or change.order_id is None:
                continue  # the modify or delete it caused follows
            side = change.side.value
            if change.event == "add":
                assert change.price is not None and change.quantity is not None
                self._add(side, change.order_id, change.price, change.quantity)
                continue
            where = self.where.get(change.order_id)
            if where is None:
                raise BookGapError(f"{self.symbol}: {change.event} of unknown order "
                                   f"{change.order_id}")
            level = self.sides[where[0]][where[1]]
            if change.event == "modify":
                assert change.quantity is not None
                level[change.order_id] = (level[change.order_id][0], change.quantity)
            else:
                del level[change.order_id]
                del self.where[change.order_id]
                if not level:
                    del self.sides[where[0]][where[1]]
        self.seq = message.seq
        self.updates += 1
        self._verify(message.checksum)

    def _add(self, side: str, order_id: int, price: str, quantity: str) -> None:
        key = -Decimal(price) if side == "BUY" else Decimal(price)
        self.sides[side].setdefault(key, {})[order_id] = (price, quantity)
        self.where[order_id] = (side, key)

    def level_orders(self, side: str, price: str | Decimal) -> list[tuple[int, Decimal]]:
        """[(order_id, visible quantity)] of one level in time priority."""
        key = -Decimal(price) if side == "BUY" else Decimal(price)
        level = self.sides[side].get(key, {})
        return [(order_id, Decimal(quantity)) for order_id, (_, quantity) in level.items()]

    def levels(self, side: str) -> list[tuple[Decimal, list[tuple[int, Decimal]]]]:
        """Every level of a side from the best outwards, with its orders."""
        return [(abs(key), [(order_id, Decimal(quantity))
                            for order_id, (_, quantity) in level.items()])
                for key, level in self.sides[side].items()]

    def checksum(self) -> int:
        """The level-3 CRC32 of the top 10 levels' orders, as the server computes it."""
        return orders_checksum((level.values() for level in self.sides["SELL"].values()),
                               (level.values() for level in self.sides["BUY"].values()))

    def _verify(self, expected: int) -> None:
        if self.checksum() != expected:
            raise ChecksumError(f"{self.symbol}: orders checksum {self.checksum()} != "
                                f"{expected}")


# -- the client ---------------------------------------------------------------------------------

class _Inbox:
    """Pushed messages the application has not read yet: a deque with a soft limit, and
    the two waits the policies need (for a message; for room, under `block`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: deque[Any] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def full(self) -> bool:
        return len(self.items) >= self.limit

    def put(self, item: Any, front: bool = False) -> None:
        """Add an item (beyond the limit too: callers apply the policy first)."""
        if front:
            self.items.appendleft(item)
        else:
            self.items.append(item)
        self._readable.set()
        if self.full():
            self._writable.clear()

    def drop_oldest(self) -> Any:
        """Drop the oldest message, never one of the client's notices (nor the end)."""
        for index, item in enumerate(self.items):
            if not isinstance(item, Notice) and item is not _END:
                del self.items[index]
                return item
        return None

    async def wait_writable(self) -> None:
        await self._writable.wait()

    async def get(self) -> Any:
        while not self.items:
            self._readable.clear()
            await self._readable.wait()
        item = self.items.popleft()
        if not self.full():
            self._writable.set()
        return item


_END = object()
"""Queued after the last message: the client is closed."""
_FATAL_CLOSES = frozenset({1008})
"""Close codes after which reconnecting would only repeat the refusal."""


class LobgwClient:
    """A WebSocket connection to a lobgw gateway that keeps itself connected and consistent."""

    def __init__(self, url: str, api_key: str | None = None,
                 cancel_on_disconnect: bool = False, *, reconnect: bool = True,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 max_attempts: int | None = None, max_queue: int = 100_000,
                 overflow: Overflow = "drop_oldest", request_timeout: float = 30.0,
                 **options: Any) -> None:
        self.url = url
        self.api_key = api_key
        self.cancel_on_disconnect = cancel_on_disconnect
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.overflow = overflow
        self.request_timeout = request_timeout
        self.options = options
        self.books: dict[str, LocalBook] = {}
        """Books as of the last message the application was given."""
        self.order_books: dict[str, LocalOrderBook] = {}
        """Order-by-order books (channel `orders`), likewise."""
        self.book_errors: list[Exception] = []
        """Every gap or checksum mismatch seen (each one resynced the book)."""
        self.account_seqs: dict[str, int] = {}
        """The last `account_seq` given to the application, per symbol."""
        self.dropped = 0
        self.reconnects = 0
        self.connection: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._pushed = _Inbox(max_queue)
        self._dropped_unreported = 0
        self._overflowed = False
        self._subscriptions: dict[tuple[str, str | None], int] = {}
        self._resyncing: set[str] = set()
        self._resuming = False
        self._connected = asyncio.Event()
        self._closed = False
        self._close_code: int | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, api_key: str | None = None,
                      cancel_on_disconnect: bool = False, **options: Any) -> LobgwClient:
        """Open a connection (and authenticate when a key is given); see the class for the
        options. The first connection must succeed: errors are raised, not retried."""
        client = cls(url, api_key, cancel_on_disconnect, **options)
        connection = await client._open(None)
        client._runner = asyncio.create_task(client._run(connection), name="lobgw-client")
        return client

    async def __aenter__(self) -> LobgwClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close for good: pending requests fail, reading ends."""
        self._closed = True
        if self.connection is not None:
            await self.connection.close()
        if self._runner is not None:
            if not self._connected.is_set():
                self._runner.cancel()  # waiting to reconnect: nothing to wind down
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._background):
            task.cancel()

    @property
    def closed(self) -> bool:
        """True once the client is closed or gave up; requests then raise."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code of the last connection, once it closed."""
        if self.connection is not None and self.connection.close_code is not None:
            return int(self.connection.close_code)
        return self._close_code

    # -- the connection's life ------------------------------------------------------------

    async def _open(self, attempt: int | None) -> Any:
        """Connect, start reading, authenticate and restore the subscriptions; `attempt`
        numbers a reconnection (announced before the resubscriptions' messages)."""
        connection = await websockets.connect(self.url, compression=None, max_size=2**22,
                                              **self.options)
        self.connection = connection
        reader = asyncio.create_task(self._read(connection), name="lobgw-client-reader")
        self._reader = reader
        try:
            if self.api_key is not None:
                await self._request({"op": "auth", "api_key": self.api_key,
                                     "cancel_on_disconnect": self.cancel_on_disconnect})
            if attempt is not None:
                self.reconnects += 1
                await self._deliver(Reconnected(attempt))
            for (channel, symbol), depth in list(self._subscriptions.items()):
                await self._request(self._subscribe_message(channel, symbol, depth))
        except BaseException:
            await connection.close()
            await asyncio.gather(reader, return_exceptions=True)
            raise
        self._connected.set()
        return connection

    async def _run(self, connection: Any) -> None:
        """Read until the connection drops; reconnect unless closed or told not to."""
        try:
            while True:
                if self._reader is not None:
                    await asyncio.gather(self._reader, return_exceptions=True)
                self._connected.clear()
                code = connection.close_code
                self._close_code = None if code is None else int(code)
                self._fail_pending()
                if self._closed or not self.reconnect or self._overflowed \
                        or self._close_code in _FATAL_CLOSES:
                    return
                await self._deliver(Disconnected(self._close_code,
                                                 connection.close_reason or ""))
                reconnected = await self._reconnect()
                if reconnected is None:
                    return
                connection = reconnected
        finally:
            self._closed = True
            self._connected.set()  # wake requests waiting for a connection: they raise now
            self._fail_pending()
            self._enqueue_end()

    async def _reconnect(self) -> Any:
        """The next connection, after backoff; None when giving up (or closed meanwhile)."""
        delay = self.backoff_initial
        for attempt in itertools.count(1):
            if self._closed or (self.max_attempts is not None and attempt > self.max_attempts):
                return None
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # jitter: no herd
            delay = min(delay * 2, self.backoff_max)
            try:
                connection = await self._open(attempt)
            except ClientError as refused:
                if refused.code == "UNAUTHORIZED":
                    return None  # the key is no longer valid: retrying cannot help
                continue
            except (OSError, websockets.WebSocketException, ConnectionError, TimeoutError):
                continue
            return connection
        return None  # pragma: no cover - the loop only ends by returning

    def _fail_pending(self) -> None:
        error = ClientClosedError("the client is closed") if self._closed else \
            ConnectionLostError("the connection dropped before the reply")
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    # -- requests -----------------------------------------------------------------------------

    def send_nowait(self, message: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a request now and return the future of its reply (for pipelining).

        Raises ClientClosedError after close, ConnectionError while reconnecting.
        """
        if self._closed:
            raise ClientClosedError("the client is closed")
        if not self._connected.is_set():
            raise ConnectionError("not connected (reconnecting)")
        return self._send(message)

    def _send(self, message: dict[str, Any]) -> asyncio.Future[Any]:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (str(message.get("op")), future)
        message["id"] = request_id
        self._spawn(self.connection.send(_encode(message).decode()))
        return future

    async def _request(self, message: dict[str, Any]) -> Any:
        async with asyncio.timeout(self.request_timeout):
            return await self._send(message)

    async def request(self, message: dict[str, Any]) -> Any:
        """Send a request and wait for its reply (waiting for a reconnection first, within
        `request_timeout`); raise ClientError if refused, TimeoutError if unanswered."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        async with asyncio.timeout(self.request_timeout):
            await self._connected.wait()
            if self._closed:
                raise ClientClosedError("the client is closed")
            return await self._send(message)

    async def place(self, symbol: str, side: str, quantity: str | Decimal,
                    price: str | Decimal | None = None, **fields: Any) -> OrderAck:
        """Place an order."""
        order = {"symbol": symbol, "side": side, "quantity": str(quantity), **fields}
        if price is not None:
            order["price"] = str(price)
        ack: OrderAck = await self.request({"op": "place", "order": order})
        return ack

    async def cancel(self, order_id: int | None = None,
                     client_order_id: str | None = None) -> OrderAck:
        """Cancel an order by id or client order id."""
        message: dict[str, Any] = {"op": "cancel"}
        if order_id is not None:
            message["order_id"] = order_id
        if client_order_id is not None:
            message["client_order_id"] = client_order_id
        ack: OrderAck = await self.request(message)
        return ack

    async def amend(self, order_id: int | None = None, client_order_id: str | None = None,
                    quantity: str | Decimal | None = None,
                    price: str | Decimal | None = None,
                    stop_price: str | Decimal | None = None) -> OrderAck:
        """Amend an order's total quantity and/or price (a waiting stop's stop price)."""
        message: dict[str, Any] = {"op": "amend"}
        for key, value in (("order_id", order_id), ("client_order_id", client_order_id)):
            if value is not None:
                message[key] = value
        for key, decimal in (("quantity", quantity), ("price", price),
                             ("stop_price", stop_price)):
            if decimal is not None:
                message[key] = str(decimal)
        ack: OrderAck = await self.request(message)
        return ack

    async def batch(self, requests: list[dict[str, Any]]) -> BatchResult:
        """Send places, cancels and amends (each `{"op": "place", "order": {...}}`,
        `{"op": "cancel", ...}`, `{"op": "amend", ...}`) as one batch; each item's answer
        comes back in order, refusals included (this raises only if the whole batch is
        refused)."""
        result: BatchResult = await self.request({"op": "batch", "requests": requests})
        return result

    async def cancel_all(self, symbol: str | None = None) -> CancelAllResult:
        """Cancel all open orders of the account."""
        message: dict[str, Any] = {"op": "cancel_all"}
        if symbol is not None:
            message["symbol"] = symbol
        result: CancelAllResult = await self.request(message)
        return result

    async def cancel_after(self, timeout_ms: int) -> CancelAfterResult:
        """Arm (or refresh) the dead-man's switch; 0 disarms it."""
        result: CancelAfterResult = await self.request({"op": "cancel_after",
                                                        "timeout_ms": timeout_ms})
        return result

    async def subscribe(self, channel: str, symbol: str | None = None, depth: int = 10,
                        since: dict[str, int] | None = None) -> None:
        """Subscribe (it is renewed after every reconnection). `executions` resumes after
        the last `account_seq` seen per symbol (or after `since`, for a client that kept
        them elsewhere), so nothing in between is missed."""
        if since:
            self.account_seqs.update(since)
        key = (channel, None if channel == "executions" else symbol)
        await self.request(self._subscribe_message(channel, key[1], depth))
        self._subscriptions[key] = depth  # renewed on reconnection, once it was accepted

    def _subscribe_message(self, channel: str, symbol: str | None, depth: int) -> dict[str, Any]:
        message: dict[str, Any] = {"op": "subscribe", "channel": channel}
        if symbol is not None:
            message["symbol"] = symbol
        if channel == "book":
            message["depth"] = depth
            if symbol is not None:
                self.books.pop(symbol, None)
                self._resyncing.add(symbol)  # until its snapshot
        if channel == "orders" and symbol is not None:
            self.order_books.pop(symbol, None)  # until its snapshot
        if channel == "executions" and self.account_seqs:
            message["since"] = dict(self.account_seqs)
        return message

    async def unsubscribe(self, channel: str, symbol: str | None = None) -> None:
        """End a subscription."""
        key = (channel, None if channel == "executions" else symbol)
        message: dict[str, Any] = {"op": "unsubscribe", "channel": channel}
        if symbol is not None:
            message["symbol"] = symbol
        await self.request(message)
        self._subscriptions.pop(key, None)
        if channel == "book" and symbol is not None:
            self.books.pop(symbol, None)

    async def ping(self) -> int:
        """Round trip an application ping; return the server's time (Unix ns)."""
        reply: int = await self.request({"op": "ping"})
        return reply

    # -- pushed messages --------------------------------------------------------------------

    async def market_data(self) -> AsyncIterator[Message]:
        """Every pushed message (market data, executions, heartbeats, the client's notices)
        in order; ends when the client is closed."""
        while True:
            message = await self._next()
            if message is _END:
                return
            yield message

    async def next_message(self, type_: str | None = None, timeout: float = 5.0) -> Any:
        """The next pushed message (of tag `type_`, skipping others), or TimeoutError;
        ClientClosedError when the client closes first."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._next()
                if message is _END:
                    raise ClientClosedError("the client is closed")
                if type_ is None or _tag(message) == type_:
                    return message

    async def _next(self) -> Any:
        """The next message for the application, with the books and sequences brought up to
        it (what cannot be trusted is dropped here, and recovery starts)."""
        while True:
            if self._dropped_unreported:
                count, self._dropped_unreported = self._dropped_unreported, 0
                return Dropped(count)
            message = await self._pushed.get()
            if message is _END:
                self._pushed.put(_END, front=True)  # every later read ends too
                if self._overflowed:
                    raise QueueOverflowError(f"more than {self._pushed.limit} unread "
                                             "messages (overflow policy 'raise')")
                return _END
            if self._admit(message):
                return message

    def _admit(self, message: Any) -> bool:
        """Apply a book or execution message; False when it must not be given out."""
        if isinstance(message, BookSnapshotMessage):
            book = LocalBook(message.symbol, message.depth)
            try:
                book.apply_snapshot(message)
            except ChecksumError as error:
                self._resync(message.symbol, error)
                return False
            self.books[message.symbol] = book
            self._resyncing.discard(message.symbol)
            return True
        if isinstance(message, BookUpdateMessage):
            current = self.books.get(message.symbol)
            if current is None or message.depth != current.depth \
                    or message.symbol in self._resyncing:
                return False  # of a subscription being replaced: its snapshot comes next
            try:
                current.apply_update(message)
            except (BookGapError, ChecksumError) as error:
                self._resync(message.symbol, error)
                return False
            return True
        if isinstance(message, OrdersSnapshotMessage):
            l3 = LocalOrderBook(message.symbol)
            try:
                l3.apply_snapshot(message)
            except ChecksumError as error:
                self._resync(message.symbol, error, "orders")
                return False
            self.order_books[message.symbol] = l3
            return True
        if isinstance(message, OrdersUpdateMessage):
            known = self.order_books.get(message.symbol)
            if known is None:
                return False  # of a subscription being replaced: its snapshot comes next
            try:
                known.apply_update(message)
            except (BookGapError, ChecksumError) as error:
                self._resync(message.symbol, error, "orders")
                return False
            return True
        if isinstance(message, ExecutionMessage):
            last = self.account_seqs.get(message.symbol)
            if last is not None and message.account_seq <= last:
                return False  # seen already (a replay overlapping what arrived live)
            if last is not None and message.account_seq > last + 1:
                self._resume_executions()  # missed some: the history replays them in order
                return False
            self.account_seqs[message.symbol] = message.account_seq
            return True
        return True

    def _resync(self, symbol: str, error: Exception, channel: str = "book") -> None:
        self.book_errors.append(error)
        (self.books if channel == "book" else self.order_books).pop(symbol, None)
        depth = self._subscriptions.get((channel, symbol))
        self._pushed.put(BookResync(symbol, str(error)), front=True)  # read next
        if depth is not None and self._connected.is_set():
            self._spawn(self._quietly(self._request(
                self._subscribe_message(channel, symbol, depth))))

    def _resume_executions(self) -> None:
        if self._resuming or not self._connected.is_set() \
                or ("executions", None) not in self._subscriptions:
            return
        self._resuming = True

        async def resume() -> None:
            try:
                await self._request(self._subscribe_message("executions", None, 10))
            finally:
                self._resuming = False
        self._spawn(self._quietly(resume()))

    @staticmethod
    async def _quietly(request: Any) -> None:
        """A recovery request: if the connection drops meanwhile, reconnecting redoes it."""
        with contextlib.suppress(ConnectionError, TimeoutError, ClientError):
            await request

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read(self, connection: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in connection:
                message = _decode(raw)
                if isinstance(message, (_Ack, ErrorMessage, PongMessage, SubscribedMessage,
                                        UnsubscribedMessage)) and self._reply(message):
                    continue
                await self._deliver(message)
                if self._overflowed:
                    await connection.close()
                    return

    def _reply(self, message: Any) -> bool:
        """Resolve the request this message answers; False if it answers none of ours."""
        pending = self._pending.pop(message.id, None) if isinstance(message.id, int) else None
        if pending is None:
            return False
        op, future = pending
        if future.done():
            return True
        if isinstance(message, ErrorMessage):
            future.set_exception(ClientError(message.error, message.order))
        elif isinstance(message, PongMessage):
            future.set_result(message.time)
        elif isinstance(message, _Ack):
            kind = _RESULTS.get(op)
            future.set_result(None if kind is None else msgspec.json.decode(message.result,
                                                                            type=kind))
        else:
            future.set_result(message)
        return True

    async def _deliver(self, message: Any) -> None:
        """Queue a message for the application, by the overflow policy."""
        if self._pushed.full():
            if self.overflow == "block":
                await self._pushed.wait_writable()
            elif self.overflow == "raise":
                self._overflowed = True
                return
            else:
                lost = self._pushed.drop_oldest()
                self.dropped += 1
                self._dropped_unreported += 1
                if isinstance(lost, BookSnapshotMessage):  # its updates cannot chain on
                    self._resync(lost.symbol, BookGapError(
                        f"{lost.symbol}: the snapshot was dropped (overflow)"))
        self._pushed.put(message)

    def _enqueue_end(self) -> None:
        self._pushed.put(_END)  # past the limit if need be: the end always gets through


def _tag(message: Any) -> str | None:
    """The wire `type` of a message struct."""
    config = getattr(type(message), "__struct_config__", None)
    tag = config.tag if config is not None else None
    return tag if isinstance(tag, str) else None
