"""The gateway application: `create_app(config)` builds an aiohttp app with typed state.

Long-lived resources (the symbol actors, the heartbeat task) live in a `cleanup_ctx`
generator. Routes are one table (`ROUTES`), which also feeds `/openapi.json`. One middleware
maps every failure to `{error: {code, field, reason}}` with the right status; another writes
one log line and one histogram sample per request. Shutdown order: stop accepting, close
WebSockets with 1001 (on_shutdown), drain the actors (cleanup).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
from aiohttp import web

from lobgw.actors import Exchange
from lobgw.book.engine import Engine
from lobgw.config import Config
from lobgw.errors import UnknownSymbolError
from lobgw.gateway.errors import ApiError, ErrorCode, describe
from lobgw.gateway.keys import (
    ACCOUNTS,
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
    GatewayState,
)
from lobgw.gateway.marketdata import MarketDataHub
from lobgw.gateway.metrics import Metrics
from lobgw.gateway.orders import OrderRegistry, OrderService, RejectedError, format_decimal
from lobgw.gateway.outbox import Flusher
from lobgw.gateway.ratelimit import RateLimiter
from lobgw.gateway.wire import (
    AmendBody,
    CancelAllResult,
    DepthResponse,
    ErrorResponse,
    HealthResponse,
    OrderAck,
    OrderInfo,
    PlaceOrder,
    StatsResponse,
    SymbolInfo,
    TradesResponse,
)
from lobgw.gateway.ws import websocket_handler
from lobgw.journal import Journal

log = logging.getLogger("lobgw.gateway")
access_log = logging.getLogger("lobgw.access")

_encode = msgspec.json.Encoder().encode


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One REST route, with what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    response: Any = None
    query: type | None = None
    auth: bool = False
    statuses: tuple[int, ...] = ()


# -- helpers --------------------------------------------------------------------------------

def json_response(value: Any, status: int = 200) -> web.Response:
    """A msgspec-encoded JSON response."""
    return web.Response(body=_encode(value), status=status, content_type="application/json")


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


async def read_body(request: web.Request, kind: type[Any]) -> Any:
    """Decode the JSON body into `kind`; errors become 400 with the field and reason."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder.decode(await request.read())


def read_query(request: web.Request, kind: type[Any]) -> Any:
    """Convert the query string into `kind` (strings coerced to the field types)."""
    return msgspec.convert(dict(request.query), kind, strict=False)


def authenticate(request: web.Request) -> str:
    """The account of the request's `X-API-Key`, after its rate limit; else 401 / 429."""
    key = request.headers.get("X-API-Key", "")
    account = request.app[ACCOUNTS].get(key)
    if account is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "a valid X-API-Key header is required")
    wait = request.app[KEY_LIMITER].check(account)
    if wait:
        raise ApiError(ErrorCode.RATE_LIMITED, "too many requests for this API key",
                       retry_after=wait)
    return account


def _order_id(request: web.Request) -> int:
    raw = request.match_info["order_id"]
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise ApiError(ErrorCode.INVALID_VALUE, "order ids are positive integers", "order_id")
    return int(raw)


# -- middleware -----------------------------------------------------------------------------

_HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.REQUEST_TOO_LARGE,
}


_UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the per-IP limit and run the handler; every failure becomes a JSON error with a
    stable code, never a traceback."""
    try:
        if request.path not in _UNLIMITED_PATHS:
            wait = request.app[IP_LIMITER].check(request.remote or "?")
            if wait:
                raise ApiError(ErrorCode.RATE_LIMITED, "too many requests from this address",
                               retry_after=wait)
        return await handler(request)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        code = _HTTP_CODES.get(http.status, ErrorCode.INVALID_VALUE)
        api = ApiError(code, http.reason or code.value)
        return _error_response(api, http.status)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        api = describe(error)
        if isinstance(api, RejectedError):
            return json_response(ErrorResponse(error=api.body(), order=api.ack.order),
                                 api.status)
        return _error_response(api, api.status)


def _error_response(api: ApiError, status: int) -> web.Response:
    response = json_response(ErrorResponse(error=api.body()), status)
    if api.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(api.retry_after + 0.499)))
    return response


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the request guarded, then write one log line and one latency sample."""
    start = time.perf_counter()
    status = 500
    try:
        response = await guarded(request, handler)
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - start
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else "unmatched"
        if status == 429:
            request.app[METRICS].rate_limited.inc({})
        request.app[METRICS].http_duration.observe(
            {"route": route_name, "method": request.method, "status": str(status)}, elapsed)
        if request.app[CONFIG].logging.access_log and request.path != "/ws":
            access_log.info("%s %s %d %.2fms", request.method, request.path, status,
                            elapsed * 1000, extra={
                                "method": request.method, "path": request.path,
                                "status": status, "duration_ms": round(elapsed * 1000, 3),
                                "remote": request.remote})


def cors_middleware(config: Config) -> Any:
    """Answer preflights and add CORS headers for the configured origins."""
    origins = set(config.cors.allow_origins)
    headers = ", ".join(config.cors.allow_headers)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and ("*" in origins or origin in origins)
        if allowed and request.method == "OPTIONS" and \
                "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
            response.headers["Access-Control-Allow-Headers"] = headers
            response.headers["Access-Control-Max-Age"] = str(config.cors.max_age)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin or ""
            response.headers["Vary"] = "Origin"
        return response

    return cors


# -- handlers -------------------------------------------------------------------------------

class DepthQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Query of the book route."""

    depth: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class LimitQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Query of the trades route."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class SymbolQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Optional symbol filter."""

    symbol: str | None = None


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response(HealthResponse(status="ok", symbols=len(request.app[EXCHANGE].actors)))


async def ready(request: web.Request) -> web.Response:
    """Readiness: every actor runs and the gateway is not shutting down."""
    state = request.app[STATE]
    exchange = request.app[EXCHANGE]
    if state.ready and exchange.running:
        return json_response(HealthResponse(status="ok", symbols=len(exchange.actors)))
    return json_response(HealthResponse(status="unavailable", detail="starting or stopping"),
                         503)


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body, headers = request.app[METRICS].render(request.headers.getall("Accept", []))
    return web.Response(body=body, headers=headers)


async def list_symbols(request: web.Request) -> web.Response:
    """The tradable symbols and their rules."""
    return json_response([symbol_info(actor.engine.spec)
                          for actor in request.app[EXCHANGE].actors.values()])


def symbol_info(spec: Any) -> SymbolInfo:
    """The wire form of an InstrumentSpec."""
    def text(value: Any) -> str | None:
        return None if value is None else format_decimal(value)
    return SymbolInfo(symbol=spec.symbol, tick_size=format_decimal(spec.tick_size),
                      lot_size=format_decimal(spec.lot_size),
                      min_quantity=format_decimal(spec.lots_to_quantity(spec.min_lots)),
                      max_quantity=text(spec.max_quantity),
                      price_band_low=text(spec.price_band_low),
                      price_band_high=text(spec.price_band_high))


def _actor(request: web.Request) -> Any:
    symbol = request.match_info["symbol"]
    try:
        return request.app[EXCHANGE].actor(symbol)
    except UnknownSymbolError:
        raise ApiError(ErrorCode.NOT_FOUND, f"unknown symbol {symbol!r}", "symbol") from None


async def get_book(request: web.Request) -> web.Response:
    """L2 depth for N levels."""
    actor = _actor(request)
    query: DepthQuery = read_query(request, DepthQuery)
    spec = actor.engine.spec
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
    spec = actor.engine.spec
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
    ack = await request.app[SERVICE].place(account, body)
    return json_response(ack, 201)


async def list_orders(request: web.Request) -> web.Response:
    """The account's open orders."""
    account = authenticate(request)
    query: SymbolQuery = read_query(request, SymbolQuery)
    registry = request.app[REGISTRY]
    return json_response([registry.info(order)
                          for order in registry.open_orders(account, query.symbol)])


async def get_order(request: web.Request) -> web.Response:
    """One of the account's orders, open or recently finished."""
    account = authenticate(request)
    registry = request.app[REGISTRY]
    order = registry.owned(account, _order_id(request), None)
    if order is None:
        raise ApiError(ErrorCode.ORDER_NOT_FOUND, "no order of this account has that id",
                       "order_id")
    return json_response(registry.info(order))


async def cancel_order(request: web.Request) -> web.Response:
    """Cancel one of the account's open orders by id."""
    account = authenticate(request)
    return json_response(await request.app[SERVICE].cancel(account, _order_id(request), None))


async def cancel_by_client_id(request: web.Request) -> web.Response:
    """Cancel one of the account's open orders by client order id."""
    account = authenticate(request)
    client_order_id = request.match_info["client_order_id"]
    return json_response(await request.app[SERVICE].cancel(account, None, client_order_id))


async def amend_order(request: web.Request) -> web.Response:
    """Amend one of the account's open orders: new total quantity and/or price."""
    account = authenticate(request)
    body: AmendBody = await read_body(request, AmendBody)
    return json_response(await request.app[SERVICE].amend(account, _order_id(request), None,
                                                          body))


async def amend_by_client_id(request: web.Request) -> web.Response:
    """Amend one of the account's open orders by client order id."""
    account = authenticate(request)
    body: AmendBody = await read_body(request, AmendBody)
    client_order_id = request.match_info["client_order_id"]
    return json_response(await request.app[SERVICE].amend(account, None, client_order_id,
                                                          body))


async def cancel_all(request: web.Request) -> web.Response:
    """Cancel every open order of the account (of one symbol with ?symbol=)."""
    account = authenticate(request)
    query: SymbolQuery = read_query(request, SymbolQuery)
    return json_response(await request.app[SERVICE].cancel_all(account, query.symbol))


async def openapi_handler(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    from lobgw.gateway.openapi import openapi_document

    return json_response(openapi_document(ROUTES))


ROUTES: list[Route] = [
    Route("GET", "/health", health, "Liveness", response=HealthResponse),
    Route("GET", "/ready", ready, "Readiness", response=HealthResponse, statuses=(503,)),
    Route("GET", "/metrics", metrics_handler, "Prometheus metrics (text exposition)"),
    Route("GET", "/openapi.json", openapi_handler, "This OpenAPI document"),
    Route("GET", "/api/v1/symbols", list_symbols, "Symbols and their trading rules",
          response=list[SymbolInfo]),
    Route("GET", "/api/v1/symbols/{symbol}/book", get_book, "L2 depth", query=DepthQuery,
          response=DepthResponse, statuses=(400, 404)),
    Route("GET", "/api/v1/symbols/{symbol}/trades", get_trades, "Recent trades",
          query=LimitQuery, response=TradesResponse, statuses=(400, 404)),
    Route("GET", "/stats/{symbol}", get_stats, "Counters of one symbol",
          response=StatsResponse, statuses=(404,)),
    Route("POST", "/api/v1/orders", place_order, "Place an order", body=PlaceOrder,
          response=OrderAck, auth=True, statuses=(201, 400, 401, 409, 422, 429, 503)),
    Route("GET", "/api/v1/orders", list_orders, "The account's open orders", query=SymbolQuery,
          response=list[OrderInfo], auth=True, statuses=(401, 429)),
    Route("DELETE", "/api/v1/orders", cancel_all, "Cancel all open orders", query=SymbolQuery,
          response=CancelAllResult, auth=True, statuses=(400, 401, 429, 503)),
    Route("GET", "/api/v1/orders/{order_id}", get_order, "Look up an order",
          response=OrderInfo, auth=True, statuses=(401, 404, 429)),
    Route("DELETE", "/api/v1/orders/{order_id}", cancel_order, "Cancel an order",
          response=OrderAck, auth=True, statuses=(401, 404, 429, 503)),
    Route("PATCH", "/api/v1/orders/{order_id}", amend_order, "Amend an order",
          body=AmendBody, response=OrderAck, auth=True,
          statuses=(400, 401, 404, 422, 429, 503)),
    Route("DELETE", "/api/v1/orders/by-client-id/{client_order_id}", cancel_by_client_id,
          "Cancel an order by client order id", response=OrderAck, auth=True,
          statuses=(401, 404, 429, 503)),
    Route("PATCH", "/api/v1/orders/by-client-id/{client_order_id}", amend_by_client_id,
          "Amend an order by client order id", body=AmendBody, response=OrderAck, auth=True,
          statuses=(400, 401, 404, 422, 429, 503)),
    Route("GET", "/ws", websocket_handler,
          "WebSocket: order entry and market data (see docs/api.md)"),
]


# -- the app --------------------------------------------------------------------------------

async def runtime_context(app: web.Application) -> AsyncIterator[None]:
    """Recover (if journaled) and start the actors and the heartbeat; on cleanup drain them."""
    exchange = app[EXCHANGE]
    if any(actor.journal is not None for actor in exchange.actors.values()):
        registry = app[REGISTRY]

        def restored(symbol: str, engine: Engine) -> None:
            snapshot = engine.snapshot()
            registry.restore(symbol, snapshot.bids + snapshot.asks)

        recoveries = await exchange.recover(app[STATE].repair, restored)
        for symbol, recovery in recoveries.items():
            log.info("recovered %s: snapshot seq %d, %d journal records (%d commands) in "
                     "%.3fs%s%s", symbol, recovery.snapshot_seq, recovery.records,
                     recovery.commands, recovery.seconds,
                     f", torn tail of {recovery.torn_bytes} bytes truncated"
                     if recovery.torn_bytes else "",
                     f", quarantined {len(recovery.quarantined)} file(s)"
                     if recovery.quarantined else "")
    else:
        exchange.start()
    heartbeat = asyncio.create_task(_heartbeats(app), name="heartbeats")
    app[STATE].ready = True
    log.info("gateway ready: %d symbols", len(exchange.actors))
    yield
    app[STATE].ready = False
    heartbeat.cancel()
    await exchange.stop()
    log.info("actors drained and stopped")


async def _heartbeats(app: web.Application) -> None:
    interval = app[CONFIG].runtime.heartbeat_seconds
    hub = app[HUB]
    while True:
        await asyncio.sleep(interval / 2)
        hub.heartbeat(interval)


async def close_websockets(app: web.Application) -> None:
    """on_shutdown: refuse new work and close every WebSocket with 1001 (going away)."""
    app[STATE].ready = False
    connections = list(app[STATE].connections)
    await asyncio.gather(*(connection.close_going_away() for connection in connections),
                         return_exceptions=True)


def create_app(config: Config, repair: bool = False) -> web.Application:
    """Build the gateway for `config` (actors recover and start when the app starts).

    `repair`: on journal corruption keep what precedes it and quarantine the rest, instead
    of refusing to start.
    """
    app = web.Application(
        client_max_size=config.server.max_request_bytes,
        middlewares=[cors_middleware(config), access_middleware],
    )
    specs = {spec.symbol: spec for spec in config.symbols}
    metrics = Metrics()
    journals = None
    if config.journal.enabled:
        journals = {spec.symbol: Journal(Path(config.journal.directory), spec.symbol,
                                         config.journal.fsync,
                                         config.journal.snapshot_every_commands,
                                         config.journal.snapshot_every_seconds)
                    for spec in config.symbols}
    exchange = Exchange(config.symbols, queue_size=config.runtime.command_queue_size,
                        batch_size=config.runtime.batch_size,
                        observe_latency=metrics.observe_latency, journals=journals)
    registry = OrderRegistry(specs, config.runtime.finished_orders_kept)
    hub = MarketDataHub(specs, config.runtime.recent_trades)
    registry.wants_executions = hub.wants_executions
    registry.on_executions = hub.on_executions
    # Listener order matters: order states first, then market data, then metrics.
    exchange.add_listener(registry.on_batch)
    exchange.add_listener(hub.on_batch)
    exchange.add_listener(metrics.on_batch)
    metrics.watch_exchange(exchange)
    state = GatewayState(repair=repair)
    metrics.add_collector(lambda: metrics.ws_connections.set({}, len(state.connections)))

    app[CONFIG] = config
    app[EXCHANGE] = exchange
    app[REGISTRY] = registry
    app[SERVICE] = OrderService(exchange, registry, metrics.received)
    app[HUB] = hub
    app[METRICS] = metrics
    app[ACCOUNTS] = {account.api_key: account.name for account in config.accounts}
    app[KEY_LIMITER] = RateLimiter(config.rate_limits.per_key_rate,
                                   config.rate_limits.per_key_burst)
    app[IP_LIMITER] = RateLimiter(config.rate_limits.per_ip_rate,
                                  config.rate_limits.per_ip_burst)
    app[STATE] = state
    flusher = app[FLUSHER] = Flusher(config.runtime.market_data_flush_ms / 1000)
    metrics.add_collector(lambda: setattr(metrics, "messages_sent", flusher.frames_written))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.cleanup_ctx.append(runtime_context)
    app.on_shutdown.append(close_websockets)
    return app

