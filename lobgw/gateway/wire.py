"""Wire messages of the REST and WebSocket APIs, as msgspec Structs.

Requests decode straight into these types, so their field rules (types, ranges, unknown
fields) are checked by msgspec at the edge. Prices and quantities travel as decimal strings;
market-data messages carry them pre-formatted so every subscriber gets the same bytes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from lobgw.book.types import OrderType, SelfTradePrevention, Side, TimeInForce
from lobgw.errors import ErrorCode
from lobgw.orders import ExecutionKind, Liquidity, OrderStatus

OrderId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                            pattern=r"^[A-Za-z0-9_.:-]+$(?!\n)")]
"""`(?!\n)`: Python's `$` also matches before a final newline; JSON Schema's does not."""
DecimalText = Annotated[str, msgspec.Meta(
    min_length=1, max_length=64,
    description="a decimal as a string: ASCII digits with an optional fraction "
                "(\"64000.25\"); no sign, exponent or JSON number")]
"""Decimals travel as strings and are parsed strictly at the edge (`parse_decimal`)."""
SymbolName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Depth = Annotated[int, msgspec.Meta(ge=1, le=1000)]
RequestId = str | int | None
Timestamp = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1,
                                        description="Unix time in nanoseconds")]


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (which value was meant is anyone's guess)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def check_duplicate_keys(data: bytes) -> None:
    """Raise DuplicateKeyError if an object of the JSON `data` repeats a key.

    Every key ends in `":` (unless whitespace precedes its colon), and inside strings `":`
    can only appear as `\\":`. A plain decode collapses a repeated key, and encoding the
    result again writes each remaining key once and each string's `\\":` again: so the two
    texts hold as many `":` exactly when no key repeated (escapes such as `\\u0061` are
    compared decoded). Only otherwise, or with whitespace before a colon, does the exact,
    slower check with the json module run. Two C passes instead of a Python walk: this runs
    for every order.
    """
    spaced = b'" ' in data or b'"\n' in data or b'"\t' in data or b'"\r' in data
    if not spaced:
        bound = data.count(b'":')
        if bound < 2:
            return
        try:
            if msgspec.json.encode(msgspec.json.decode(data)).count(b'":') == bound:
                return
        except (msgspec.DecodeError, RecursionError):
            return  # not JSON: the typed decoder says so with the right code
    try:
        json.loads(data, object_pairs_hook=_refuse_duplicates)
    except DuplicateKeyError:
        raise
    except (ValueError, RecursionError):
        return  # not JSON: the typed decoder says so with the right code


class Wire(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base of every wire struct: unknown fields are refused."""


# -- order entry ---------------------------------------------------------------------------

class PlaceOrder(Wire):
    """A new order as a client sends it."""

    symbol: SymbolName
    side: Side
    quantity: DecimalText
    price: DecimalText | None = None
    type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: ClientOrderId | None = None
    stop_price: DecimalText | None = None
    """STOP and STOP_LIMIT (and only they): the last trade price that releases the order."""
    display_quantity: DecimalText | None = None
    """An iceberg: the part shown at a time (a GTC, GTD or DAY limit; at most `quantity`)."""
    expire_time: Timestamp | None = None
    """GTD (and only GTD): when the order expires, Unix ns. DAY orders expire at the
    symbol's configured session end."""


class AmendBody(Wire):
    """New total quantity and/or new price for a resting order (and/or a new stop price
    for a waiting stop)."""

    quantity: DecimalText | None = None
    price: DecimalText | None = None
    stop_price: DecimalText | None = None


class FillInfo(Wire):
    """One trade of an order, from that order's point of view (`lobgw.orders.Fill`)."""

    trade_seq: int
    price: str
    quantity: str
    liquidity: Liquidity
    timestamp: int


class OrderInfo(Wire):
    """An order's current state."""

    order_id: int
    client_order_id: str | None
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: str | None
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    average_price: str | None
    status: OrderStatus
    post_only: bool
    stp: SelfTradePrevention
    created_at: int
    updated_at: int
    reason: str | None = None
    """Why the order was rejected, cancelled or expired."""
    stop_price: str | None = None
    triggered: bool = False
    """A stop that a trade released (it entered the book then)."""
    display_quantity: str | None = None
    expire_time: int | None = None


class OrderAck(Wire):
    """The answer to place / cancel / amend: the order after the command, and its new fills."""

    order: OrderInfo
    fills: list[FillInfo] = msgspec.field(default_factory=list)


class ExecutionInfo(Wire):
    """One execution report from the account's history: what happened to one of its
    orders and the order's state after it (`fill` for a trade)."""

    symbol: str
    seq: int
    """The symbol's event sequence number (what the `after` cursor counts)."""
    account_seq: int
    """The account's own gap-free number of its reports on this symbol."""
    event: ExecutionKind
    order_id: int
    client_order_id: str | None
    side: Side
    price: str | None
    status: OrderStatus
    filled_quantity: str
    remaining_quantity: str
    reason: str | None
    timestamp: int
    fill: FillInfo | None = None


class ExecutionsResponse(Wire):
    """A page of the account's executions, oldest first; `next` continues after it."""

    executions: list[ExecutionInfo]
    next: str
    """Pass as `after` for the following page (also when this one is empty: new executions
    appear after it)."""


class CancelAllResult(Wire):
    """How many open orders a cancel-all cancelled."""

    canceled: int
    order_ids: list[int]


# -- market data ---------------------------------------------------------------------------

class SymbolInfo(Wire):
    """A tradable symbol and its rules."""

    symbol: str
    tick_size: str
    lot_size: str
    min_quantity: str
    max_quantity: str | None
    price_band_low: str | None
    price_band_high: str | None


class DepthResponse(Wire):
    """L2 book: [price, quantity] pairs from the best level outwards."""

    symbol: str
    seq: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class TradeInfo(Wire):
    """A public trade."""

    seq: int
    price: str
    quantity: str
    aggressor: Side
    timestamp: int


class TradesResponse(Wire):
    """Recent trades, newest last."""

    symbol: str
    trades: list[TradeInfo]


class StatsResponse(Wire):
    """Per-symbol counters and live state."""

    symbol: str
    seq: int
    messages: int
    orders_accepted: int
    rejections: int
    trades: int
    volume: str
    open_orders: int
    queue_depth: int
    best_bid: tuple[str, str] | None
    best_ask: tuple[str, str] | None


class HealthResponse(Wire):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    symbols: int = 0
    detail: str | None = None
    failing: dict[str, str] | None = None
    """Readiness: the symbols that cannot take orders, and why."""


class ErrorBody(Wire, omit_defaults=True):
    """A refusal: a stable machine-readable code, the field at fault (or null), a reason."""

    code: ErrorCode
    reason: str
    field: str | None
    error_id: str | None = None
    retry_after_ms: int | None = None
    """With RATE_LIMITED, OVERLOADED, JOURNAL_UNAVAILABLE, SHUTTING_DOWN and NOT_READY: how
    long to wait before retrying (REST also sends `Retry-After` in seconds)."""
    """Only on internal errors: the id under which the details were logged."""


class ErrorResponse(Wire, omit_defaults=True):
    """The body of every non-2xx REST response."""

    error: ErrorBody
    order: OrderInfo | None = None


# -- WebSocket requests (client -> server), tagged by "op" ----------------------------------

class WsRequest(Wire, tag_field="op", kw_only=True):
    """Base of WebSocket requests; `id` is echoed in the reply."""

    id: RequestId = None


class AuthOp(WsRequest, tag="auth"):
    """Authenticate the connection with an API key."""

    api_key: Annotated[str, msgspec.Meta(max_length=256)]
    cancel_on_disconnect: bool = False


class PlaceOp(WsRequest, tag="place"):
    """Place an order; `order` has the same fields as the REST body."""

    order: PlaceOrder


class CancelOp(WsRequest, tag="cancel"):
    """Cancel by `order_id` or by `client_order_id`."""

    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None


class AmendOp(WsRequest, tag="amend"):
    """Amend by `order_id` or `client_order_id`: new total quantity and/or price."""

    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None
    quantity: DecimalText | None = None
    price: DecimalText | None = None
    stop_price: DecimalText | None = None


class CancelAllOp(WsRequest, tag="cancel_all"):
    """Cancel every open order of the account (of one symbol, if given)."""

    symbol: SymbolName | None = None


Channel = Literal["trades", "quotes", "book", "executions", "orders"]


class SubscribeOp(WsRequest, tag="subscribe"):
    """Subscribe to a channel; `book` takes a depth, `executions` needs no symbol and may
    resume: `since` is the last `account_seq` seen per symbol."""

    channel: Channel
    symbol: SymbolName | None = None
    depth: Depth = 10
    since: dict[SymbolName, Annotated[int, msgspec.Meta(ge=0)]] | None = None


class UnsubscribeOp(WsRequest, tag="unsubscribe"):
    """Stop a subscription."""

    channel: Channel
    symbol: SymbolName | None = None


class PingOp(WsRequest, tag="ping"):
    """Application-level ping; answered with a pong."""


TimeoutMs = Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]


class CancelAfterOp(WsRequest, tag="cancel_after"):
    """The dead-man's switch: cancel every order of the account unless refreshed within
    `timeout_ms`; 0 disarms it."""

    timeout_ms: TimeoutMs


class CancelAfterBody(Wire):
    """`POST /api/v1/cancel-after`: as the WebSocket op."""

    timeout_ms: TimeoutMs


class CancelAfterResult(Wire):
    """The switch's state: `trigger_time` (Unix ns) is when it fires, null when disarmed."""

    current_time: int
    trigger_time: int | None


BatchItem = PlaceOp | CancelOp | AmendOp
"""What a batch holds: places, cancels and amends, tagged by `op` (their `id` is echoed in
the item's result)."""
BatchItems = Annotated[list[BatchItem], msgspec.Meta(min_length=1)]


class BatchOp(WsRequest, tag="batch"):
    """Up to `runtime.max_batch_requests` places, cancels and amends in one message: each
    answered on its own, in order; one symbol's items are journaled as one record."""

    requests: BatchItems


class BatchBody(Wire):
    """`POST /api/v1/orders/batch`: as the WebSocket op."""

    requests: BatchItems


class BatchItemResult(Wire, omit_defaults=True):
    """One item's answer: `status` is the HTTP status it would have had alone; `result`
    the order and its fills on success, else `error` (and the order when the engine
    refused it)."""

    id: RequestId
    status: int
    result: OrderAck | None = None
    error: ErrorBody | None = None
    order: OrderInfo | None = None


class BatchResult(Wire):
    """The answers of a batch, in the order of its requests."""

    results: list[BatchItemResult]


AnyWsRequest = (AuthOp | PlaceOp | CancelOp | AmendOp | CancelAllOp | SubscribeOp
                | UnsubscribeOp | PingOp | CancelAfterOp | BatchOp)


# -- WebSocket replies and pushes (server -> client), tagged by "type" ---------------------

class WsMessage(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of every server-to-client WebSocket message."""


class AckMessage(WsMessage, tag="ack"):
    """A request succeeded; `result` depends on the op."""

    id: RequestId
    op: str
    result: OrderAck | CancelAllResult | CancelAfterResult | BatchResult | None = None


class ErrorMessage(WsMessage, tag="error"):
    """A request was refused (or the server reports a problem with the connection)."""

    id: RequestId
    error: ErrorBody
    order: OrderInfo | None = None


class PongMessage(WsMessage, tag="pong"):
    """Answer to ping."""

    id: RequestId
    time: int


class SubscribedMessage(WsMessage, tag="subscribed"):
    """Confirms a subscription (book snapshots follow as their own message)."""

    id: RequestId
    channel: str
    symbol: str | None = None


class UnsubscribedMessage(WsMessage, tag="unsubscribed"):
    """Confirms an unsubscription."""

    id: RequestId
    channel: str
    symbol: str | None = None


class ShutdownMessage(WsMessage, tag="shutdown"):
    """The gateway is stopping: the connection closes with 1001 next."""

    time: int


class HeartbeatMessage(WsMessage, tag="heartbeat"):
    """Sent on a connection whose subscriptions were idle for a while."""

    time: int


class TradeMessage(WsMessage, tag="trade"):
    """One public trade (channel `trades`)."""

    symbol: str
    seq: int
    price: str
    quantity: str
    aggressor: Side
    timestamp: int


class QuoteMessage(WsMessage, tag="quote"):
    """Best bid and ask after a change (channel `quotes`); null when a side is empty."""

    symbol: str
    seq: int
    timestamp: int
    """The engine time of the event that last changed the book (0 before any)."""
    bid: str | None = None
    bid_size: str | None = None
    ask: str | None = None
    ask_size: str | None = None


class BookSnapshotMessage(WsMessage, tag="book_snapshot"):
    """The top `depth` levels; updates chain on from `seq`."""

    symbol: str
    seq: int
    depth: int
    timestamp: int
    """The engine time of the event that last changed these levels (0 before any)."""
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    checksum: int


class BookUpdateMessage(WsMessage, tag="book_update"):
    """Changed levels with their new absolute quantity ("0" removes the level).

    `prev_seq` is the `seq` of the previous snapshot or update of this subscription's depth;
    a client that sees a different value missed something and should resubscribe.
    `checksum` is CRC32 of the top 10 levels after the update, computed as Kraken's v2 book.
    """

    symbol: str
    seq: int
    prev_seq: int
    depth: int
    """The depth of the subscription this update belongs to."""
    timestamp: int
    """The engine time of the batch's last event."""
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    checksum: int


class ExecutionMessage(WsMessage, tag="execution"):
    """A private execution report for the authenticated account (channel `executions`).

    `account_seq` numbers the account's reports on this symbol 1, 2, 3, ... without gaps
    (also across restarts): a jump means a report was missed, and subscribing with
    `since` replays every kept report after the last one seen.
    """

    symbol: str
    seq: int
    account_seq: int
    event: ExecutionKind
    order: OrderInfo
    fill: FillInfo | None = None


L3Order = tuple[int, str, str]
"""[order_id, price, visible quantity] of a resting order in the `orders` channel."""

L3Event = Literal["add", "modify", "delete", "trade"]


class L3Change(msgspec.Struct, omit_defaults=True):
    """One change of the order-by-order book (channel `orders`).

    `add`: a new visible order (or one that lost its priority) at the back of its level;
    `modify`: a resting order's visible quantity changed, its place kept; `delete`: it left
    the book; `trade`: an execution at `price` of `quantity` against the resting order
    `order_id` (omitted for an iceberg, whose hidden size is nobody's business), the book
    change it causes follows as a modify or delete.
    """

    event: L3Event
    side: Side
    order_id: int | None = None
    price: str | None = None
    quantity: str | None = None


class OrdersSnapshotMessage(WsMessage, tag="orders_snapshot"):
    """Every visible resting order (channel `orders`): levels from the best outwards, each
    level's orders in time priority; updates chain on from `seq`."""

    symbol: str
    seq: int
    timestamp: int
    bids: list[L3Order]
    asks: list[L3Order]
    checksum: int


class OrdersUpdateMessage(WsMessage, tag="orders_update"):
    """The order-by-order changes of one batch of events, in order; `checksum` is the
    Kraken level-3 CRC32 of the top 10 levels' orders after them."""

    symbol: str
    seq: int
    prev_seq: int
    timestamp: int
    changes: list[L3Change]
    checksum: int


CHECKSUM_LEVELS = 10


def book_checksum(asks: Iterable[tuple[str, str]], bids: Iterable[tuple[str, str]]) -> int:
    """The `checksum` of book messages: CRC32 of the top 10 asks (low to high) then bids (high
    to low), Kraken v2 style: each price and quantity as sent, with '.' removed and leading
    zeros stripped, concatenated. Server and client both compute it with this function."""
    parts: list[str] = []
    for levels in (asks, bids):
        for count, (price, quantity) in enumerate(levels):
            if count == CHECKSUM_LEVELS:
                break
            parts.append(price.replace(".", "").lstrip("0"))
            parts.append(quantity.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())


def orders_checksum(asks: Iterable[Iterable[tuple[str, str]]],
                    bids: Iterable[Iterable[tuple[str, str]]]) -> int:
    """The `checksum` of `orders` messages, Kraken's level-3 CRC32: for the top 10 ask
    levels (low to high) then bid levels (high to low), each order in time priority as its
    price and visible quantity, with '.' removed and leading zeros stripped, concatenated.
    It checks the order of the queues, not only their totals."""
    parts: list[str] = []
    for side in (asks, bids):
        for count, level in enumerate(side):
            if count == CHECKSUM_LEVELS:
                break
            for price, quantity in level:
                parts.append(price.replace(".", "").lstrip("0"))
                parts.append(quantity.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())
