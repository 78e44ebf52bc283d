"""The raw WebSocket endpoint `/ws`: order entry, execution reports and market data.

Each connection has one reader (this handler) and an outbox that the event loop flushes in
batches (lobgw.gateway.outbox). Every op is answered the same way: order requests are
validated and enqueued synchronously, and the service's answer callback queues the reply
when the actor has answered (inside the actor's turn), so a client may pipeline requests
and the replies keep their order. See docs/api.md for the protocol.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from lobgw.actors import BookReader
from lobgw.book.commands import CancelOrder
from lobgw.book.events import Event
from lobgw.book.types import Reason
from lobgw.errors import ErrorCode
from lobgw.gateway.errors import ApiError, CloseCode, describe
from lobgw.gateway.keys import (
    ACCOUNTS,
    CANCEL_AFTER,
    CONFIG,
    EXCHANGE,
    FLUSHER,
    HUB,
    IP_LIMITER,
    KEY_LIMITER,
    METRICS,
    REGISTRY,
    SERVICE,
    STATE,
)
from lobgw.gateway.marketdata import BOOK_DEPTHS
from lobgw.gateway.orders import Answer
from lobgw.gateway.outbox import Outbox, SlowConsumerPolicy, encode_frame
from lobgw.gateway.rest import check_batch, client_address
from lobgw.gateway.wire import (
    AckMessage,
    AmendBody,
    AmendOp,
    AnyWsRequest,
    AuthOp,
    BatchOp,
    CancelAfterOp,
    CancelAllOp,
    CancelOp,
    DuplicateKeyError,
    PingOp,
    PlaceOp,
    PongMessage,
    RequestId,
    ShutdownMessage,
    SubscribedMessage,
    SubscribeOp,
    UnsubscribedMessage,
    UnsubscribeOp,
    check_duplicate_keys,
)

log = logging.getLogger("lobgw.ws")

_decode_request = msgspec.json.Decoder(AnyWsRequest).decode


class _IdOnly(msgspec.Struct):
    id: RequestId = None


_decode_id = msgspec.json.Decoder(_IdOnly).decode


class Subscription:
    """One of a connection's subscriptions; `active` until replaced or ended (an attach
    still on its way to the actor then does nothing)."""

    __slots__ = ("active", "channel", "depth", "symbol")

    def __init__(self, channel: str, symbol: str | None, depth: int) -> None:
        self.channel = channel
        self.symbol = symbol
        self.depth = depth
        self.active = True

    @property
    def key(self) -> tuple[str, str | None]:
        """What makes a subscription one of its kind: its channel and symbol."""
        return self.channel, self.symbol


class Connection:
    """One WebSocket client."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, remote: str,
                 transport: asyncio.Transport) -> None:
        self.app = app
        self.ws = ws
        self.remote = remote
        self.account: str | None = None
        self.cancel_on_disconnect = False
        self.placed: set[int] = set()
        self.violations: collections.deque[float] = collections.deque()
        """When this connection was refused for its rate, within the violation window."""
        self.slow = False
        self.finished = asyncio.Event()
        runtime = app[CONFIG].runtime
        self.outbox = Outbox(remote, transport, app[FLUSHER], SlowConsumerPolicy(
            runtime.slow_consumer_bytes, runtime.slow_consumer_seconds,
            runtime.max_outbox_bytes), self._overflowed)
        self.transport = transport
        # Looked up once: every message uses them.
        self.service = app[SERVICE]
        self.key_limiter = app[KEY_LIMITER]
        self.ip_limiter = app[IP_LIMITER]
        limits = app[CONFIG].rate_limits
        self.max_violations = limits.ws_violations_before_close
        self.violation_window = limits.ws_violation_window_seconds
        self._closing: asyncio.Future[Any] | None = None
        self.subscriptions: dict[tuple[str, str | None], Subscription] = {}
        self.opened_at = time.monotonic()
        self.auth_timeout = app[CONFIG].server.ws_auth_timeout_seconds
        self._next_slot = 0
        self._next_reply = 0
        self._held: dict[int, list[bytes]] = {}
        """Replies that are ready, waiting for an earlier message's reply."""

    # -- output ---------------------------------------------------------------------------

    def error(self, request_id: RequestId, error: BaseException) -> None:
        """Send a refusal that answers no particular message (a binary frame)."""
        self._reply(self._take_slot(), describe(error).message(request_id))

    def check_auth_deadline(self, now: float) -> None:
        """Close a connection that has neither authenticated nor subscribed in time."""
        if self.account is None and not self.subscriptions and not self.slow \
                and self._closing is None and now - self.opened_at > self.auth_timeout:
            self._closing = asyncio.ensure_future(self.close(
                CloseCode.POLICY_VIOLATION, b"authenticate or subscribe first"))

    def _take_slot(self) -> int:
        slot = self._next_slot
        self._next_slot = slot + 1
        return slot

    def _overflowed(self, outbox: Outbox) -> None:
        # Often called inside an actor's turn: never block, close from a task.
        if self.slow:
            return
        self.slow = True
        metrics = self.app[METRICS]
        metrics.slow_disconnects += 1
        metrics.messages_dropped += outbox.dropped
        self.app[HUB].unsubscribe_all(outbox)
        log.warning("closing slow consumer %s after dropping %d messages", self.remote,
                    outbox.dropped)
        self._closing = asyncio.ensure_future(self._close_slow())

    async def _close_slow(self) -> None:
        """Send 4008; cut the connection if the peer does not take it in time (a stalled
        reader would otherwise hold its socket buffers for minutes)."""
        seconds = self.app[CONFIG].runtime.slow_consumer_close_seconds
        try:
            await asyncio.wait_for(self.ws.close(
                code=CloseCode.SLOW_CONSUMER,
                message=b"slow consumer: reconnect and resubscribe for a snapshot"), seconds)
        except (TimeoutError, ConnectionError, RuntimeError):
            # A graceful close waits for the unread buffers to drain: cut it instead.
            self.transport.abort()

    async def close(self, code: CloseCode, message: bytes) -> None:
        """Write what is queued (e.g. the last refusal), then close."""
        self.outbox.flush()
        self.outbox.close()
        await self.ws.close(code=code, message=message)

    async def close_going_away(self) -> None:
        """Server shutdown: say so, close with 1001 and wait for the handler to finish."""
        self.outbox.offer(encode_frame(ShutdownMessage(time=time.time_ns())), urgent=True)
        await self.close(CloseCode.GOING_AWAY, b"server shutting down")
        await self.finished.wait()

    # -- input ----------------------------------------------------------------------------

    def handle(self, data: bytes) -> bool:
        """Process one text message; return False when the connection must be closed.

        Every message takes the next reply slot, whatever it is (valid or not, whichever
        symbol it touches): replies leave in the order the messages arrived.
        """
        slot = self._take_slot()
        limiter = self.key_limiter if self.account else self.ip_limiter
        wait = limiter.check(self.account or self.remote)
        if wait:
            # Sustained flooding closes the connection, even when some messages get through
            # between refusals: count the refusals within a sliding window.
            now = time.monotonic()
            violations = self.violations
            violations.append(now)
            while violations[0] < now - self.violation_window:
                violations.popleft()
            self.app[METRICS].rate_limited.inc({})
            self._fail(slot, _request_id(data), ApiError(
                ErrorCode.RATE_LIMITED, "too many messages", retry_after=wait))
            return len(violations) < self.max_violations
        try:
            check_duplicate_keys(data)
            request = _decode_request(data)
        except (msgspec.ValidationError, msgspec.DecodeError, DuplicateKeyError,
                RecursionError) as error:
            self._fail(slot, _request_id(data), error)
            return True
        try:
            self.dispatch(request, slot)
        except Exception as error:
            self._fail(slot, request.id, describe(error).within("order")
                       if isinstance(request, PlaceOp) else error)
        return True

    # -- replies, in arrival order ----------------------------------------------------------

    def _reply(self, slot: int, *messages: Any) -> None:
        """Queue the reply of message number `slot` (and what belongs with it, such as a
        subscription's snapshot); later replies wait for earlier ones."""
        if slot != self._next_reply:
            self._held[slot] = [message if isinstance(message, bytes) else
                                encode_frame(message) for message in messages]
            return
        offer = self.outbox.offer
        for message in messages:  # the usual case: its turn, nothing held
            offer(message if isinstance(message, bytes) else encode_frame(message),
                  urgent=True)
        self._next_reply += 1
        held = self._held
        while held:
            frames = held.pop(self._next_reply, None)
            if frames is None:
                return
            for frame in frames:
                offer(frame, urgent=True)
            self._next_reply += 1

    def _fail(self, slot: int, request_id: RequestId, error: BaseException) -> None:
        self._reply(slot, describe(error).message(request_id))

    def _answer(self, slot: int, request_id: RequestId, op: str) -> Answer[Any]:
        """The reply path of every order op: the ack or the refusal, in its slot."""
        def answer(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self._fail(slot, request_id,
                           describe(error).within("order") if op == "place" else error)
            else:
                self._reply(slot, AckMessage(id=request_id, op=op, result=result))
        return answer

    def dispatch(self, request: AnyWsRequest, slot: int) -> None:
        """Act on one decoded request; its reply goes to `slot`."""
        match request:
            case PlaceOp():
                order = self.service.place(self._account(), request.order,
                                           self._answer(slot, request.id, "place"),
                                           self.cancel_on_disconnect)
                self.placed.add(order.order_id)
                if len(self.placed) > 10_000:
                    self._prune_placed()
            case CancelOp():
                self.service.cancel(self._account(), request.order_id, request.client_order_id,
                                    self._answer(slot, request.id, "cancel"))
            case AmendOp():
                self.service.amend(self._account(), request.order_id, request.client_order_id,
                                   AmendBody(quantity=request.quantity, price=request.price,
                                             stop_price=request.stop_price),
                                   self._answer(slot, request.id, "amend"))
            case BatchOp():
                account = self._account()
                check_batch(self.app, account, request.requests)
                self.service.batch(account, request.requests,
                                   self._answer(slot, request.id, "batch"),
                                   self.cancel_on_disconnect)
            case CancelAllOp():
                self.service.cancel_all(self._account(), request.symbol,
                                        self._answer(slot, request.id, "cancel_all"))
            case SubscribeOp():
                self.subscribe(request, slot)
            case UnsubscribeOp():
                key = (request.channel, None if request.channel == "executions"
                       else request.symbol)
                subscription = self.subscriptions.pop(key, None)
                if subscription is None:
                    raise ApiError(ErrorCode.INVALID_VALUE, "no such subscription", "channel")
                self._end(subscription)
                self._reply(slot, UnsubscribedMessage(id=request.id, channel=request.channel,
                                                      symbol=request.symbol))
            case PingOp():
                self._reply(slot, PongMessage(id=request.id, time=time.time_ns()))
            case CancelAfterOp():
                result = self.app[CANCEL_AFTER].arm(self._account(), request.timeout_ms)
                self._reply(slot, AckMessage(id=request.id, op="cancel_after", result=result))
            case AuthOp():
                if self.account is not None:
                    raise ApiError(ErrorCode.ALREADY_AUTHENTICATED, None, "api_key")
                known = self.app[ACCOUNTS].get(request.api_key)
                if known is None:
                    raise ApiError(ErrorCode.UNAUTHORIZED, "unknown API key", "api_key")
                self.account = known
                self.cancel_on_disconnect = request.cancel_on_disconnect
                self._reply(slot, AckMessage(id=request.id, op="auth"))

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(self, request: SubscribeOp, slot: int) -> None:
        """Start a subscription: one per (channel, symbol); subscribing again replaces it
        (with a fresh snapshot). Book and quotes start with a snapshot taken in the actor,
        sent right after the `subscribed` reply."""
        hub = self.app[HUB]
        channel = request.channel
        if channel == "executions":
            account = self._account()
            self._replace(Subscription(channel, None, 0))
            # One synchronous step: every report made before is in the history, every one
            # after goes to the live subscription, so a resume has neither gap nor repeat.
            hub.subscribe_executions(self.outbox, account)
            resumed = ([] if request.since is None
                       else self.app[REGISTRY].resume(account, request.since))
            self._reply(slot, SubscribedMessage(id=request.id, channel=channel), *resumed)
            return
        if request.symbol is None:
            raise ApiError(ErrorCode.MISSING_FIELD, "this channel needs a symbol", "symbol")
        if channel == "orders" and self._account() not in self.app[CONFIG].market_data \
                .l3_accounts:
            raise ApiError(ErrorCode.FORBIDDEN, "the order-by-order channel is for the "
                           "accounts in market_data.l3_accounts", "channel")
        actor = self.app[EXCHANGE].actor(request.symbol)
        if channel == "book" and request.depth not in BOOK_DEPTHS:
            raise ApiError(ErrorCode.OUT_OF_RANGE,
                           f"depth must be one of {', '.join(map(str, BOOK_DEPTHS))}", "depth")
        subscription = Subscription(channel, request.symbol, request.depth)
        subscribed = SubscribedMessage(id=request.id, channel=channel, symbol=request.symbol)
        outbox, symbol, depth = self.outbox, request.symbol, request.depth
        if channel == "trades":
            self._replace(subscription)
            hub.subscribe_trades(outbox, symbol)
            self._reply(slot, subscribed)
            return

        def attach(book: BookReader) -> None:
            # Inside the actor: only if nothing replaced or ended the subscription meanwhile.
            if not subscription.active:
                self._reply(slot, subscribed)
            elif channel == "quotes":
                self._reply(slot, subscribed, hub.attach_quotes(outbox, symbol, book))
            elif channel == "orders":
                self._reply(slot, subscribed, hub.attach_orders(outbox, symbol, book))
            else:
                self._reply(slot, subscribed, hub.attach_book(outbox, symbol, depth, book))

        future = actor.query(attach)  # raises (refused) before anything is registered
        self._replace(subscription)
        future.add_done_callback(lambda done: None if done.cancelled() or not done.exception()
                                 else self._fail(slot, request.id, done.exception()
                                                 or RuntimeError("attach failed")))

    def _replace(self, subscription: Subscription) -> None:
        old = self.subscriptions.pop(subscription.key, None)
        if old is not None:
            self._end(old)
        self.subscriptions[subscription.key] = subscription

    def _end(self, subscription: Subscription) -> None:
        subscription.active = False
        self.app[HUB].unsubscribe(self.outbox, subscription.channel, subscription.symbol,
                                  self.account)

    def _account(self) -> str:
        if self.account is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "authenticate first (op: auth)")
        return self.account

    def _prune_placed(self) -> None:
        registry = self.app[REGISTRY]
        self.placed = {order_id for order_id in self.placed if order_id in registry.open}

    def cancel_orders_placed_here(self) -> None:
        """Cancel-on-disconnect: cancel this connection's orders that are still open."""
        registry = self.app[REGISTRY]
        by_symbol: dict[str, list[CancelOrder]] = {}
        now = time.time_ns()
        for order_id in sorted(self.placed):
            order = registry.tracker.get(order_id)
            if order is not None and order.account == self.account:
                by_symbol.setdefault(order.symbol, []).append(
                    CancelOrder(order_id, now, Reason.CANCEL_ON_DISCONNECT))
        exchange = self.app[EXCHANGE]
        for symbol, cancels in by_symbol.items():
            try:
                exchange.actor(symbol).submit(cancels, _log_failure)
            except Exception:
                log.exception("cancel-on-disconnect of %d orders on %s failed", len(cancels),
                              symbol)
        if by_symbol:
            log.info("cancel-on-disconnect: %d orders of %s",
                     sum(map(len, by_symbol.values())), self.account)


def _log_failure(events: list[Event] | None, error: BaseException | None) -> None:
    if error is not None:
        log.error("cancel-on-disconnect failed: %s", error)


def _request_id(data: bytes) -> RequestId:
    """The request's id if the message is at least an object with a usable id."""
    try:
        return _decode_id(data).id
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """Serve one WebSocket connection."""
    app = request.app
    if not app[STATE].ready:
        raise ApiError(ErrorCode.SHUTTING_DOWN, "the gateway is not accepting connections",
                       retry_after=1)
    server = app[CONFIG].server
    ws = web.WebSocketResponse(compress=False, autoping=True, decode_text=False,
                               max_msg_size=server.max_ws_message_bytes,
                               heartbeat=server.ws_ping_seconds)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None  # prepared just above
    connection = Connection(app, ws, client_address(request), transport)
    app[STATE].connections.add(connection)
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if not connection.handle(message.data):
                    await connection.close(CloseCode.POLICY_VIOLATION,
                                           b"rate limit exceeded repeatedly")
                    break
            elif message.type is WSMsgType.BINARY:
                connection.error(None, ApiError(ErrorCode.UNSUPPORTED_MESSAGE,
                                                "send JSON text frames"))
            if connection.slow:
                break
    finally:
        app[HUB].unsubscribe_all(connection.outbox)
        if connection.cancel_on_disconnect and connection.account is not None:
            connection.cancel_orders_placed_here()
        connection.outbox.close()
        if connection._closing is not None:
            await asyncio.gather(connection._closing, return_exceptions=True)
        app[STATE].connections.discard(connection)
        connection.finished.set()
    return ws
