"""REST handlers and the helpers they share: decode at the edge, ask the service or an actor,
encode the answer. Failures propagate as exceptions; the app's middleware maps them."""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect
from aiohttp import web

from lobgw.actors import SymbolActor
from lobgw.book.instrument import InstrumentSpec
from lobgw.errors import ErrorCode, UnknownSymbolError
from lobgw.gateway.errors import ApiError
from lobgw.gateway.keys import (
    ACCOUNTS,
    CANCEL_AFTER,
    CONFIG,
    EXCHANGE,
    HUB,
    KEY_LIMITER,
    METRICS,
    OPENAPI,
    REGISTRY,
    SERVICE,
    STATE,
)
from lobgw.gateway.orders import answered, format_decimal
from lobgw.gateway.wire import (
    AmendBody,
    BatchBody,
    BatchItem,
    CancelAfterBody,
    DepthResponse,
    ExecutionsResponse,
    HealthResponse,
    PlaceOp,
    PlaceOrder,
    StatsResponse,
    SymbolInfo,
    TradesResponse,
    check_duplicate_keys,
)
from lobgw.orders import ExecutionKind

_encode = msgspec.json.Encoder().encode
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def json_response(value: Any, status: int = 200) -> web.Response:
    """A msgspec-encoded JSON response."""
    return web.Response(body=_encode(value), status=status, content_type="application/json")


async def read_body(request: web.Request, kind: type[Any]) -> Any:
    """Decode the JSON body into `kind`; errors become 400 with the field and reason
    (duplicate keys are refused)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    if request.content_length is not None and request.content_length > request.client_max_size:
        raise ApiError(ErrorCode.REQUEST_TOO_LARGE,  # say so now, not after reading it all
                       f"the body is {request.content_length} bytes; at most "
                       f"{request.client_max_size} are accepted")
    try:
        data = await asyncio.wait_for(request.read(),
                                      request.app[CONFIG].server.body_timeout_seconds)
    except TimeoutError:
        raise ApiError(ErrorCode.REQUEST_TIMEOUT) from None
    check_duplicate_keys(data)
    return decoder.decode(data)


_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)


_INTEGER_FIELDS: dict[type[Any], frozenset[str]] = {}


def _integer_fields(kind: type[Any]) -> frozenset[str]:
    """The query struct's integer fields (worked out once per struct)."""
    found = _INTEGER_FIELDS.get(kind)
    if found is None:
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, msgspec.inspect.StructType)
        found = _INTEGER_FIELDS[kind] = frozenset(
            field.name for field in info.fields
            if isinstance(field.type, msgspec.inspect.IntType))
    return found


def read_query(request: web.Request, kind: type[Any]) -> Any:
    """Convert the query string into `kind`: integers must be plain ASCII digits (no
    exponent, no other digits), the rest is coerced to the field types."""
    query = dict(request.query)
    for name in _integer_fields(kind):
        value = query.get(name)
        if value is not None and _INTEGER.fullmatch(value) is None:
            raise ApiError(ErrorCode.INVALID_TYPE, "must be a whole number in ASCII digits",
                           name)
    return msgspec.convert(query, kind, strict=False)


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or behind a trusted proxy the last address in
    `X-Forwarded-For` that is not itself a trusted proxy."""
    remote = request.remote or "?"
    trusted = request.app[CONFIG].server.trusted_proxies
    if remote not in trusted:
        return remote
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")
                 if hop.strip()]
    for hop in reversed(forwarded):
        if hop not in trusted:
            return hop[:64]
    return remote


def account_of(request: web.Request) -> str | None:
    """The account of the request's `X-API-Key`, if it names one."""
    return request.app[ACCOUNTS].get(request.headers.get("X-API-Key", ""))


def authenticate(request: web.Request) -> str:
    """The account of the request's `X-API-Key`, after its rate limit; else 401 / 429."""
    account = account_of(request)
    if account is None:
        raise ApiError(ErrorCode.UNAUTHORIZED)
    wait = request.app[KEY_LIMITER].check(account)
    if wait:
        raise ApiError(ErrorCode.RATE_LIMITED, "too many requests for this API key",
                       retry_after=wait)
    return account


_ORDER_ID = re.compile(r"[0-9]{1,19}", re.ASCII)


def _order_id(request: web.Request) -> int:
    raw = request.match_info["order_id"]
    if _ORDER_ID.fullmatch(raw) is None or not 0 < int(raw) < 2**63:
        raise ApiError(ErrorCode.INVALID_VALUE,
                       "order ids are positive integers below 2**63, in ASCII digits",
                       "order_id")
    return int(raw)


_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)


def _client_order_id(request: web.Request) -> str:
    """The client order id in the path, held to the pattern a body's is (a 400, not a
    404 for an id no order can have)."""
    raw = request.match_info["client_order_id"]
    if _CLIENT_ORDER_ID.fullmatch(raw) is None:
        raise ApiError(ErrorCode.INVALID_VALUE,
                       "client order ids are 1 to 64 of A-Z a-z 0-9 _ . : -", "client_order_id")
    return raw


def _actor(request: web.Request) -> SymbolActor:
    """The actor of the symbol the path names (a 404 when there is none)."""
    symbol = request.match_info["symbol"]
    try:
        return request.app[EXCHANGE].actor(symbol)
    except UnknownSymbolError:
        raise UnknownSymbolError(symbol, resource=True) from None


class DepthQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Query of the book route."""

    depth: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class LimitQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Query of the trades route."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class SymbolQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Optional symbol filter."""

    symbol: str | None = None


class FillsQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Query of the executions history: which symbol, after which cursor, how many, and
    whether to list fills only or every kind of execution report."""

    symbol: str | None = None
    after: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    events: Literal["fills", "all"] = "fills"


_FILLS_ONLY = frozenset({ExecutionKind.FILL})


def encode_cursor(seqs: dict[str, int]) -> str:
    """An opaque cursor: the last sequence number seen per symbol."""
    return base64.urlsafe_b64encode(msgspec.json.encode(seqs)).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, int]:
    """The cursor `encode_cursor` made; a bad one is a 400 naming `after`."""
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)),
                                   type=dict[str, int])
    except (ValueError, msgspec.DecodeError):
        raise ApiError(ErrorCode.INVALID_VALUE, "not a cursor this API returned",
                       "after") from None


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response(HealthResponse(status="ok", symbols=len(request.app[EXCHANGE].actors)))


async def ready(request: web.Request) -> web.Response:
    """Readiness: recovery is done, every symbol can take orders (its journal can be
    written) and the gateway is not shutting down; else 503 with what fails and why."""
    state = request.app[STATE]
    exchange = request.app[EXCHANGE]
    failing = {symbol: reason for symbol, actor in exchange.actors.items()
               if (reason := actor.unready_reason) is not None}
    if state.ready and not failing:
        return json_response(HealthResponse(status="ok", symbols=len(exchange.actors)))
    detail = ("shutting down" if state.stopping else "recovering the journal"
              if not state.ready else "some symbols cannot take orders")
    return json_response(HealthResponse(status="unavailable", symbols=len(exchange.actors),
                                        detail=detail, failing=failing or None), 503)


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body, headers = request.app[METRICS].render(request.headers.getall("Accept", []))
    return web.Response(body=body, headers=headers)


async def openapi_handler(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    return json_response(request.app[OPENAPI]())


async def list_symbols(request: web.Request) -> web.Response:
    """The tradable symbols and their rules."""
    return json_response([symbol_info(actor.spec)
                          for actor in request.app[EXCHANGE].actors.values()])


def symbol_info(spec: InstrumentSpec) -> SymbolInfo:
    """The wire form of an InstrumentSpec."""
    def text(value: Any) -> str | None:
        return None if value is None else format_decimal(value)
    return SymbolInfo(symbol=spec.symbol, tick_size=format_decimal(spec.tick_size),
                      lot_size=format_decimal(spec.lot_size),
                      min_quantity=format_decimal(spec.lots_to_quantity(spec.min_lots)),
                      max_quantity=text(spec.max_quantity),
                      price_band_low=text(spec.price_band_low),
                      price_band_high=text(spec.price_band_high))


async def get_book(request: web.Request) -> web.Response:
    """L2 depth for N levels."""
    actor = _actor(request)
    query: DepthQuery = read_query(request, DepthQuery)
    spec = actor.spec
    seq, (bids, asks) = await actor.query(lambda book: (book.seq, book.depth(query.depth)))
    return json_response(DepthResponse(
        symbol=spec.symbol, seq=seq,
        bids=[(spec.format_price(p), spec.format_quantity(q)) for p, q in bids],
        asks=[(spec.format_price(p), spec.format_quantity(q)) for p, q in asks]))


async def get_trades(request: web.Request) -> web.Response:
    """The most recent trades."""
    actor = _actor(request)
    query: LimitQuery = read_query(request, LimitQuery)
    trades = request.app[HUB].recent_trades(actor.symbol, query.limit)
    return json_response(TradesResponse(symbol=actor.symbol, trades=trades))


async def get_stats(request: web.Request) -> web.Response:
    """Counters and live state of one symbol."""
    actor = _actor(request)
    spec = actor.spec
    seq, counters, open_orders, bid, ask = await actor.query(
        lambda book: (book.seq, book.counters(), book.open_order_count(), book.best_bid(),
                      book.best_ask()))

    def level(value: tuple[int, int] | None) -> tuple[str, str] | None:
        if value is None:
            return None
        return spec.format_price(value[0]), spec.format_quantity(value[1])

    return json_response(StatsResponse(
        symbol=spec.symbol, seq=seq, messages=counters.messages,
        orders_accepted=counters.orders, rejections=counters.rejections,
        trades=counters.trades, volume=format_decimal(spec.lots_to_quantity(counters.volume)),
        open_orders=open_orders, queue_depth=actor.queue_depth, best_bid=level(bid),
        best_ask=level(ask)))


async def place_order(request: web.Request) -> web.Response:
    """Place an order; 201 with the order and its fills, 422 if the engine rejects it."""
    account = authenticate(request)
    body: PlaceOrder = await read_body(request, PlaceOrder)
    service = request.app[SERVICE]
    ack = await answered(functools.partial(service.place, account, body))
    return json_response(ack, 201)


def check_batch(app: web.Application, account: str, items: Sequence[BatchItem]) -> None:
    """Refuse a batch above the configured size, or one that the OpenAPI schema refuses
    (an unknown symbol is outside the schema's enum, like a wrong type), as a whole; and
    charge the account's rate limit one token per request in it (REST and WebSocket alike:
    the first was already taken). Checks against the book's rules and state are answered
    per item."""
    size = len(items)
    limit = app[CONFIG].runtime.max_batch_requests
    if size > limit:
        raise ApiError(ErrorCode.BATCH_TOO_LARGE, f"{size} requests; at most {limit}",
                       "requests")
    symbols = app[EXCHANGE].actors
    for index, item in enumerate(items):
        if isinstance(item, PlaceOp) and item.order.symbol not in symbols:
            raise ApiError(ErrorCode.UNKNOWN_SYMBOL, f"unknown symbol {item.order.symbol!r}",
                           f"requests.{index}.order.symbol")
    wait = app[KEY_LIMITER].check(account, size - 1) if size > 1 else 0.0
    if wait:
        raise ApiError(ErrorCode.RATE_LIMITED, "too many requests for this API key",
                       retry_after=wait)


async def place_batch(request: web.Request) -> web.Response:
    """Places, cancels and amends in one request; 200 with each one's answer, in order."""
    account = authenticate(request)
    body: BatchBody = await read_body(request, BatchBody)
    check_batch(request.app, account, body.requests)
    service = request.app[SERVICE]
    result = await answered(functools.partial(service.batch, account, body.requests))
    return json_response(result)


async def list_orders(request: web.Request) -> web.Response:
    """The account's open orders."""
    account = authenticate(request)
    query: SymbolQuery = read_query(request, SymbolQuery)
    if query.symbol is not None:
        request.app[EXCHANGE].actor(query.symbol)  # unknown symbol -> 400, as cancel-all
    registry = request.app[REGISTRY]
    return json_response([registry.info(order)
                          for order in registry.open_orders(account, query.symbol)])


async def get_order(request: web.Request) -> web.Response:
    """One of the account's orders, open or finished within the history's retention."""
    account = authenticate(request)
    registry = request.app[REGISTRY]
    order = registry.owned(account, _order_id(request), None)
    if order is None:
        raise ApiError(ErrorCode.ORDER_NOT_FOUND, "no order of this account has that id",
                       "order_id")
    return json_response(registry.info(order))


async def get_order_by_client_id(request: web.Request) -> web.Response:
    """One of the account's orders by client order id, open or finished within the
    history's retention."""
    account = authenticate(request)
    registry = request.app[REGISTRY]
    order = registry.owned(account, None, _client_order_id(request))
    if order is None:
        raise ApiError(ErrorCode.ORDER_NOT_FOUND,
                       "no order of this account has that client order id", "client_order_id")
    return json_response(registry.info(order))


async def list_fills(request: web.Request) -> web.Response:
    """The account's own executions, oldest first, from a cursor (`after`, from `next`)."""
    account = authenticate(request)
    query: FillsQuery = read_query(request, FillsQuery)
    if query.symbol is not None:
        request.app[EXCHANGE].actor(query.symbol)  # an unknown symbol is a 400
    registry = request.app[REGISTRY]
    page, cursor = registry.executions(
        account, decode_cursor(query.after) if query.after else {}, query.symbol, query.limit,
        _FILLS_ONLY if query.events == "fills" else None)
    return json_response(ExecutionsResponse(
        executions=[registry.execution_info(execution) for execution in page],
        next=encode_cursor(cursor)))


async def cancel_order(request: web.Request) -> web.Response:
    """Cancel one of the account's open orders by id."""
    account = authenticate(request)
    service = request.app[SERVICE]
    order_id = _order_id(request)
    return json_response(await answered(
        functools.partial(service.cancel, account, order_id, None)))


async def cancel_by_client_id(request: web.Request) -> web.Response:
    """Cancel one of the account's open orders by client order id."""
    account = authenticate(request)
    service = request.app[SERVICE]
    client_order_id = _client_order_id(request)
    return json_response(await answered(
        functools.partial(service.cancel, account, None, client_order_id)))


async def amend_order(request: web.Request) -> web.Response:
    """Amend one of the account's open orders: new total quantity and/or price."""
    account = authenticate(request)
    body: AmendBody = await read_body(request, AmendBody)
    service = request.app[SERVICE]
    order_id = _order_id(request)
    return json_response(await answered(
        functools.partial(service.amend, account, order_id, None, body)))


async def amend_by_client_id(request: web.Request) -> web.Response:
    """Amend one of the account's open orders by client order id."""
    account = authenticate(request)
    body: AmendBody = await read_body(request, AmendBody)
    service = request.app[SERVICE]
    client_order_id = _client_order_id(request)
    return json_response(await answered(
        functools.partial(service.amend, account, None, client_order_id, body)))


async def cancel_after(request: web.Request) -> web.Response:
    """Arm, refresh or (timeout_ms 0) disarm the account's dead-man's switch."""
    account = authenticate(request)
    body: CancelAfterBody = await read_body(request, CancelAfterBody)
    return json_response(request.app[CANCEL_AFTER].arm(account, body.timeout_ms))


async def cancel_all(request: web.Request) -> web.Response:
    """Cancel every open order of the account (of one symbol with ?symbol=)."""
    account = authenticate(request)
    query: SymbolQuery = read_query(request, SymbolQuery)
    service = request.app[SERVICE]
    return json_response(await answered(
        functools.partial(service.cancel_all, account, query.symbol)))
