"""A Python client for the lobgw WebSocket API, built on `websockets`.

    async with await LobgwClient.connect("ws://127.0.0.1:8080/ws", api_key=KEY) as client:
        ack = await client.place("BTC-USD", "BUY", "0.5", price="64000")
        await client.subscribe("book", "BTC-USD", depth=10)
        async for message in client.market_data():
            book = client.books["BTC-USD"]   # kept from snapshot + updates, verified

Replies are matched to requests by id; everything else (market data, executions,
heartbeats) arrives through `market_data()`. Book subscriptions maintain a `LocalBook` that
detects sequence gaps and checks every update's checksum.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from types import TracebackType
from typing import Any

import msgspec
import websockets
from sortedcontainers import SortedDict

from lobgw.gateway.wire import CancelAllResult, ErrorBody, OrderAck, book_checksum

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_REPLIES = frozenset({"ack", "error", "pong", "subscribed", "unsubscribed"})


class ClientError(Exception):
    """The server refused a request: `code`, `field` and `reason` as it sent them."""

    def __init__(self, error: ErrorBody, order: dict[str, Any] | None = None) -> None:
        super().__init__(f"{error.code}: {error.reason}"
                         + (f" (field {error.field})" if error.field else ""))
        self.code = error.code
        self.field = error.field
        self.reason = error.reason
        self.order = order


class BookGapError(Exception):
    """An update did not chain on from the last one; resubscribe for a fresh snapshot."""


class ChecksumError(Exception):
    """The local book no longer matches the server's checksum; resubscribe."""


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

    def apply_snapshot(self, message: dict[str, Any]) -> None:
        """Replace the book with a snapshot and check its checksum."""
        self.bids.clear()
        self.asks.clear()
        for price, quantity in message["bids"]:
            self.bids[-Decimal(price)] = (price, quantity)
        for price, quantity in message["asks"]:
            self.asks[Decimal(price)] = (price, quantity)
        self.seq = message["seq"]
        self._verify(message["checksum"])

    def apply_update(self, message: dict[str, Any]) -> None:
        """Apply an update; raise BookGapError or ChecksumError if the copy cannot be trusted."""
        if message["prev_seq"] != self.seq:
            raise BookGapError(f"{self.symbol}: update chains on {message['prev_seq']}, "
                               f"but the last one seen is {self.seq}")
        for side, sign, levels in (("bids", -1, self.bids), ("asks", 1, self.asks)):
            for price, quantity in message[side]:
                key = sign * Decimal(price)
                if Decimal(quantity) == 0:
                    levels.pop(key, None)
                else:
                    levels[key] = (price, quantity)
            while len(levels) > self.depth:
                levels.popitem(-1)
        self.seq = message["seq"]
        self.updates += 1
        self._verify(message["checksum"])

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


class LobgwClient:
    """One WebSocket connection to a lobgw gateway."""

    def __init__(self, connection: Any, max_queue: int = 100_000) -> None:
        self.connection = connection
        self.books: dict[str, LocalBook] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._pushed: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._book_depths: dict[str, int] = {}
        self.book_errors: list[Exception] = []
        self._sending: set[asyncio.Future[None]] = set()
        self._reader = asyncio.create_task(self._read(), name="lobgw-client-reader")

    @classmethod
    async def connect(cls, url: str, api_key: str | None = None,
                      cancel_on_disconnect: bool = False, **options: Any) -> LobgwClient:
        """Open a connection (and authenticate when a key is given)."""
        connection = await websockets.connect(url, compression=None, max_size=2**22,
                                              **options)
        client = cls(connection)
        if api_key is not None:
            await client.request({"op": "auth", "api_key": api_key,
                                  "cancel_on_disconnect": cancel_on_disconnect})
        return client

    async def __aenter__(self) -> LobgwClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed."""
        code = self.connection.close_code
        return None if code is None else int(code)

    # -- requests -------------------------------------------------------------------------

    def send_nowait(self, message: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a request and return the future of its reply (for pipelining)."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message["id"] = request_id
        sending = asyncio.ensure_future(self.connection.send(_encode(message).decode()))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)
        return future

    async def request(self, message: dict[str, Any]) -> Any:
        """Send a request and wait for its reply; raise ClientError if refused."""
        return await self.send_nowait(message)

    async def place(self, symbol: str, side: str, quantity: str | Decimal,
                    price: str | Decimal | None = None, **fields: Any) -> OrderAck:
        """Place an order."""
        order = {"symbol": symbol, "side": side, "quantity": str(quantity), **fields}
        if price is not None:
            order["price"] = str(price)
        return msgspec.convert(await self.request({"op": "place", "order": order}), OrderAck)

    async def cancel(self, order_id: int | None = None,
                     client_order_id: str | None = None) -> OrderAck:
        """Cancel an order by id or client order id."""
        message: dict[str, Any] = {"op": "cancel"}
        if order_id is not None:
            message["order_id"] = order_id
        if client_order_id is not None:
            message["client_order_id"] = client_order_id
        return msgspec.convert(await self.request(message), OrderAck)

    async def amend(self, order_id: int | None = None, client_order_id: str | None = None,
                    quantity: str | Decimal | None = None,
                    price: str | Decimal | None = None) -> OrderAck:
        """Amend an order's total quantity and/or price."""
        message: dict[str, Any] = {"op": "amend"}
        for key, value in (("order_id", order_id), ("client_order_id", client_order_id)):
            if value is not None:
                message[key] = value
        for key, decimal in (("quantity", quantity), ("price", price)):
            if decimal is not None:
                message[key] = str(decimal)
        return msgspec.convert(await self.request(message), OrderAck)

    async def cancel_all(self, symbol: str | None = None) -> CancelAllResult:
        """Cancel all open orders of the account."""
        message: dict[str, Any] = {"op": "cancel_all"}
        if symbol is not None:
            message["symbol"] = symbol
        return msgspec.convert(await self.request(message), CancelAllResult)

    async def subscribe(self, channel: str, symbol: str | None = None, depth: int = 10) -> None:
        """Subscribe; a book subscription starts a LocalBook in `books`."""
        message: dict[str, Any] = {"op": "subscribe", "channel": channel}
        if symbol is not None:
            message["symbol"] = symbol
        if channel == "book" and symbol is not None:
            message["depth"] = depth
            self._book_depths[symbol] = depth
        await self.request(message)

    async def unsubscribe(self, channel: str, symbol: str | None = None) -> None:
        """End a subscription."""
        message: dict[str, Any] = {"op": "unsubscribe", "channel": channel}
        if symbol is not None:
            message["symbol"] = symbol
        await self.request(message)
        if channel == "book" and symbol is not None:
            self.books.pop(symbol, None)
            self._book_depths.pop(symbol, None)

    async def ping(self) -> int:
        """Round trip an application ping; return the server's time."""
        reply = await self.request({"op": "ping"})
        return int(reply)

    # -- pushed messages ------------------------------------------------------------------

    async def market_data(self) -> AsyncIterator[dict[str, Any]]:
        """Every pushed message (trades, quotes, book, executions, heartbeats) in order."""
        while True:
            message = await self._pushed.get()
            if message.get("type") == "closed":
                return
            yield message

    async def next_message(self, type_: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next pushed message (of `type_`, skipping others), or TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._pushed.get()
                if message.get("type") == "closed":
                    raise ConnectionError("connection closed")
                if type_ is None or message.get("type") == type_:
                    return message

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = _decode(raw)
                kind = message.get("type")
                if kind in _REPLIES and message.get("id") in self._pending:
                    future = self._pending.pop(message["id"])
                    if future.done():
                        continue
                    if kind == "error":
                        future.set_exception(ClientError(
                            msgspec.convert(message["error"], ErrorBody), message.get("order")))
                    elif kind == "pong":
                        future.set_result(message["time"])
                    else:
                        future.set_result(message.get("result"))
                    continue
                if kind in ("book_snapshot", "book_update"):
                    self._apply_book(message)
                self._push(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._pending.clear()
            self._push({"type": "closed"})

    def _apply_book(self, message: dict[str, Any]) -> None:
        symbol = message["symbol"]
        try:
            if message["type"] == "book_snapshot":
                book = LocalBook(symbol, message["depth"])
                book.apply_snapshot(message)
                self.books[symbol] = book
            elif symbol in self.books:
                self.books[symbol].apply_update(message)
        except (BookGapError, ChecksumError) as error:
            self.book_errors.append(error)

    def _push(self, message: dict[str, Any]) -> None:
        try:
            self._pushed.put_nowait(message)
        except asyncio.QueueFull:
            self._pushed.get_nowait()  # keep the newest: a client that never reads loses old
            self._pushed.put_nowait(message)
