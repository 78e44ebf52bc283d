"""The raw WebSocket endpoint `/ws`: order entry, execution reports and market data.

Each connection has one reader (this handler) and one writer task draining the connection's
bounded outbound queue. Order requests are validated and enqueued synchronously; the reply is
written when the actor answers (a future callback), so a client may pipeline requests and the
replies keep their order. See docs/api.md for the protocol.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from lobgw.book.commands import CancelOrder
from lobgw.book.events import Event
from lobgw.gateway.errors import ApiError, CloseCode, ErrorCode, describe
from lobgw.gateway.keys import (
    ACCOUNTS,
    CONFIG,
    EXCHANGE,
    HUB,
    IP_LIMITER,
    KEY_LIMITER,
    METRICS,
    REGISTRY,
    SERVICE,
    STATE,
)
from lobgw.gateway.marketdata import BOOK_DEPTHS, Subscriber
from lobgw.gateway.orders import RejectedError, TrackedOrder
from lobgw.gateway.wire import (
    AckMessage,
    AmendBody,
    AmendOp,
    AnyWsRequest,
    AuthOp,
    CancelAllOp,
    CancelOp,
    ErrorMessage,
    OrderAck,
    PingOp,
    PlaceOp,
    PongMessage,
    RequestId,
    SubscribedMessage,
    SubscribeOp,
    UnsubscribedMessage,
    UnsubscribeOp,
)

log = logging.getLogger("lobgw.ws")

_decode_request = msgspec.json.Decoder(AnyWsRequest).decode
_encode = msgspec.json.Encoder().encode


class _IdOnly(msgspec.Struct):
    id: RequestId = None


_decode_id = msgspec.json.Decoder(_IdOnly).decode


class Connection:
    """One WebSocket client."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, remote: str) -> None:
        self.app = app
        self.ws = ws
        self.remote = remote
        self.account: str | None = None
        self.cancel_on_disconnect = False
        self.placed: set[int] = set()
        self.violations = 0
        self.slow = False
        self.finished = asyncio.Event()
        capacity = app[CONFIG].runtime.subscriber_queue_size
        self.subscriber = Subscriber(remote, capacity, self._overflowed)

    # -- output ---------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Queue a reply (replies and market data share one ordered queue)."""
        self.subscriber.offer(_encode(message))

    def error(self, request_id: RequestId, error: BaseException) -> None:
        """Queue an error reply for `error`."""
        api = describe(error)
        order = api.ack.order if isinstance(api, RejectedError) else None
        self.send(ErrorMessage(id=request_id, error=api.body(), order=order))

    def _overflowed(self, subscriber: Subscriber) -> None:
        # Called inside an actor's turn: only flag it; the writer closes the socket.
        self.slow = True

    async def writer(self, transport: asyncio.Transport) -> None:
        """Write queued messages until the connection closes or falls too far behind.

        Everything queued is written as one `writelines` (one system call for many frames);
        aiohttp's own writer sends one frame per call, which costs a system call per message
        per subscriber. While the socket's send buffer is above `WRITE_HIGH_WATER` the writer
        waits, so the queue fills and a consumer that stays behind is closed as slow.
        """
        ws, subscriber, metrics = self.ws, self.subscriber, self.app[METRICS]
        try:
            while True:
                messages = await subscriber.drain()
                if messages:
                    if ws.closed or transport.is_closing():
                        return
                    transport.writelines(text_frames(messages))
                    subscriber.last_sent = time.monotonic()
                    metrics.messages_sent += len(messages)
                    while transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                        if transport.is_closing():
                            return
                        await asyncio.sleep(0.002)
                if subscriber.closed:
                    break
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return
        if self.slow:
            metrics.slow_disconnects += 1
            metrics.messages_dropped += subscriber.dropped
            self.app[HUB].unsubscribe_all(subscriber)
            log.warning("closing slow consumer %s after dropping %d messages", self.remote,
                        subscriber.dropped)
            await ws.close(code=CloseCode.SLOW_CONSUMER,
                           message=b"slow consumer: reconnect and resubscribe for a snapshot")

    async def close_going_away(self) -> None:
        """Server shutdown: close with 1001 and wait for the handler to finish."""
        await self.ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
        await self.finished.wait()

    # -- input ----------------------------------------------------------------------------

    def handle(self, data: bytes) -> bool:
        """Process one text message; return False when the connection must be closed."""
        limiter = self.app[KEY_LIMITER] if self.account else self.app[IP_LIMITER]
        wait = limiter.check(self.account or self.remote)
        if wait:
            self.violations += 1
            self.app[METRICS].rate_limited.inc({})
            self.error(_request_id(data), ApiError(ErrorCode.RATE_LIMITED,
                                                   "too many messages", retry_after=wait))
            return self.violations < self.app[CONFIG].rate_limits.ws_violations_before_close
        self.violations = 0
        try:
            request = _decode_request(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            self.error(_request_id(data), error)
            return True
        try:
            self.dispatch(request)
        except Exception as error:
            self.error(request.id, error)
        return True

    def dispatch(self, request: AnyWsRequest) -> None:
        """Act on one decoded request."""
        match request:
            case PlaceOp():
                tracked = self.app[SERVICE].place_with_reply(
                    self._account(), request.order, self._answerer(request.id, "place"))
                self.placed.add(tracked.order_id)
                if len(self.placed) > 10_000:
                    self._prune_placed()
            case CancelOp():
                self.app[SERVICE].cancel_with_reply(
                    self._account(), request.order_id, request.client_order_id,
                    self._answerer(request.id, "cancel"))
            case AmendOp():
                order, future = self.app[SERVICE].start_amend(
                    self._account(), request.order_id, request.client_order_id,
                    AmendBody(quantity=request.quantity, price=request.price))
                self._reply_when_done(request.id, "amend", future, self._changed(order))
            case CancelAllOp():
                account = self._account()
                task = asyncio.ensure_future(self.app[SERVICE].cancel_all(account,
                                                                         request.symbol))
                task.add_done_callback(lambda done: self._answer(request.id, "cancel_all",
                                                                 done, lambda r: r))
            case SubscribeOp():
                self.subscribe(request)
            case UnsubscribeOp():
                found = self.app[HUB].unsubscribe(self.subscriber, request.channel,
                                                  request.symbol, self.account)
                if not found:
                    raise ApiError(ErrorCode.INVALID_VALUE, "no such subscription", "channel")
                self.send(UnsubscribedMessage(id=request.id, channel=request.channel,
                                              symbol=request.symbol))
            case PingOp():
                self.send(PongMessage(id=request.id, time=time.time_ns()))
            case AuthOp():
                known = self.app[ACCOUNTS].get(request.api_key)
                if known is None:
                    raise ApiError(ErrorCode.UNAUTHORIZED, "unknown API key", "api_key")
                self.account = known
                self.cancel_on_disconnect = request.cancel_on_disconnect
                self.send(AckMessage(id=request.id, op="auth"))

    def subscribe(self, request: SubscribeOp) -> None:
        """Start a subscription; book and quotes begin with a snapshot taken in the actor."""
        hub = self.app[HUB]
        if request.channel == "executions":
            hub.subscribe_executions(self.subscriber, self._account())
            self.send(SubscribedMessage(id=request.id, channel="executions"))
            return
        if request.symbol is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "this channel needs a symbol", "symbol")
        actor = self.app[EXCHANGE].actor(request.symbol)
        if request.channel == "book" and request.depth not in BOOK_DEPTHS:
            raise ApiError(ErrorCode.OUT_OF_RANGE,
                           f"depth must be one of {', '.join(map(str, BOOK_DEPTHS))}", "depth")
        # Subscribing again replaces the old subscription (and gives a fresh snapshot).
        hub.unsubscribe(self.subscriber, request.channel, request.symbol)
        self.send(SubscribedMessage(id=request.id, channel=request.channel,
                                    symbol=request.symbol))
        subscriber, symbol = self.subscriber, request.symbol
        if request.channel == "trades":
            hub.subscribe_trades(subscriber, symbol)
        elif request.channel == "quotes":
            actor.query(lambda book: hub.attach_quotes(subscriber, symbol, book))
        else:
            depth = request.depth
            actor.query(lambda book: hub.attach_book(subscriber, symbol, depth, book))

    def _account(self) -> str:
        if self.account is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "authenticate first (op: auth)")
        return self.account

    def _answerer(self, request_id: RequestId, op: str
                  ) -> Callable[[OrderAck | None, BaseException | None], None]:
        """A reply callback that queues the ack or the error for this request."""
        def answer(ack: OrderAck | None, error: BaseException | None) -> None:
            if error is not None:
                self.error(request_id, error)
            else:
                self.send(AckMessage(id=request_id, op=op, result=ack))
        return answer

    def _changed(self, order: TrackedOrder) -> Callable[[list[Event]], OrderAck]:
        service = self.app[SERVICE]

        def finish(events: list[Event]) -> OrderAck:
            return service.finish_change(order, events)
        return finish

    def _reply_when_done(self, request_id: RequestId, op: str,
                         future: asyncio.Future[list[Event]],
                         finish: Callable[[list[Event]], Any]) -> None:
        future.add_done_callback(lambda done: self._answer(request_id, op, done, finish))

    def _answer(self, request_id: RequestId, op: str, done: asyncio.Future[Any],
                finish: Callable[[Any], Any]) -> None:
        try:
            self.send(AckMessage(id=request_id, op=op, result=finish(done.result())))
        except asyncio.CancelledError:
            return
        except Exception as error:
            self.error(request_id, error)

    def _prune_placed(self) -> None:
        registry = self.app[REGISTRY]
        self.placed = {order_id for order_id in self.placed if order_id in registry.open}

    def cancel_orders_placed_here(self) -> None:
        """Cancel-on-disconnect: cancel this connection's orders that are still open."""
        registry = self.app[REGISTRY]
        by_symbol: dict[str, list[CancelOrder]] = {}
        now = time.time_ns()
        for order_id in sorted(self.placed):
            order = registry.open.get(order_id) or registry.pending.get(order_id)
            if order is not None and order.account == self.account:
                by_symbol.setdefault(order.symbol, []).append(CancelOrder(order_id, now))
        exchange = self.app[EXCHANGE]
        for symbol, cancels in by_symbol.items():
            try:
                exchange.actor(symbol).submit_many(cancels)
            except Exception:
                log.exception("cancel-on-disconnect of %d orders on %s failed", len(cancels),
                              symbol)
        if by_symbol:
            log.info("cancel-on-disconnect: %d orders of %s",
                     sum(map(len, by_symbol.values())), self.account)


WRITE_HIGH_WATER = 256 * 1024
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack


def text_frames(messages: list[bytes]) -> list[bytes]:
    """Unmasked, final, uncompressed text frames (RFC 6455 section 5.2) for each message."""
    parts: list[bytes] = []
    append = parts.append
    for data in messages:
        size = len(data)
        if size < 126:
            append(_HEADER_SHORT(0x81, size))
        elif size < 65536:
            append(_HEADER_MEDIUM(0x81, 126, size))
        else:
            append(_HEADER_LONG(0x81, 127, size))
        append(data)
    return parts


def _request_id(data: bytes) -> RequestId:
    """The request's id if the message is at least an object with a usable id."""
    try:
        return _decode_id(data).id
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """Serve one WebSocket connection."""
    app = request.app
    if not app[STATE].ready:
        raise ApiError(ErrorCode.SHUTTING_DOWN, "the gateway is not accepting connections",
                       retry_after=1)
    ws = web.WebSocketResponse(compress=False, autoping=True, decode_text=False,
                               max_msg_size=app[CONFIG].server.max_ws_message_bytes)
    await ws.prepare(request)
    connection = Connection(app, ws, request.remote or "?")
    app[STATE].connections.add(connection)
    transport = request.transport
    assert transport is not None  # prepared just above
    writer = asyncio.create_task(connection.writer(transport),
                                 name=f"ws-writer:{connection.remote}")
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if not connection.handle(message.data):
                    # Let the writer deliver what is queued (the last refusal) first.
                    connection.subscriber.closed = True
                    connection.subscriber.wakeup.set()
                    await writer
                    await ws.close(code=CloseCode.POLICY_VIOLATION,
                                   message=b"rate limit exceeded repeatedly")
                    break
            elif message.type is WSMsgType.BINARY:
                connection.error(None, ApiError(ErrorCode.UNSUPPORTED_MESSAGE,
                                                "send JSON text frames"))
            if connection.slow:
                break
    finally:
        app[HUB].unsubscribe_all(connection.subscriber)
        if connection.cancel_on_disconnect and connection.account is not None:
            connection.cancel_orders_placed_here()
        if connection.slow or writer.done():
            await writer
        else:
            connection.subscriber.closed = True
            connection.subscriber.wakeup.set()
            writer.cancel()
        app[STATE].connections.discard(connection)
        connection.finished.set()
    if ws.close_code == CloseCode.MESSAGE_TOO_BIG:
        log.info("closed %s: message too big", connection.remote)
    return ws
