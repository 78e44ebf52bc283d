"""The gateway application: `create_app(config)` builds an aiohttp app with typed state.

Long-lived resources (the symbol actors, the heartbeat task) live in a `cleanup_ctx`
generator. Routes come from one table (`lobgw.gateway.routes`), which also feeds
`/openapi.json`. One middleware maps every failure to `{error: {code, field, reason}}` with
the status from the one error table; another writes one log line and one histogram sample
per request. Shutdown order: stop accepting, close WebSockets with 1001 (on_shutdown),
drain the actors (cleanup).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from lobgw.actors import Exchange, Journal
from lobgw.actors.journal import DirectoryLock
from lobgw.book.commands import AnyCommand, CancelOrder
from lobgw.book.types import Reason
from lobgw.config import Config
from lobgw.errors import ErrorCode
from lobgw.gateway.connections import ConnectionGuard
from lobgw.gateway.errors import ApiError, describe
from lobgw.gateway.keys import (
    ACCOUNTS,
    CANCEL_AFTER,
    CONFIG,
    EXCHANGE,
    FLUSHER,
    GUARD,
    HUB,
    IP_LIMITER,
    KEY_LIMITER,
    METRICS,
    OPENAPI,
    REGISTRY,
    SERVICE,
    STATE,
    GatewayState,
)
from lobgw.gateway.marketdata import MarketDataHub
from lobgw.gateway.metrics import Metrics
from lobgw.gateway.openapi import openapi_document
from lobgw.gateway.orders import CancelAfter, OrderRegistry, OrderService
from lobgw.gateway.outbox import Flusher
from lobgw.gateway.ratelimit import RateLimiter
from lobgw.gateway.rest import account_of, client_address
from lobgw.gateway.routes import ROUTES
from lobgw.orders.history import Retention

log = logging.getLogger("lobgw.gateway")
access_log = logging.getLogger("lobgw.access")

_encode = msgspec.json.Encoder().encode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the per-IP limit and run the handler; every failure becomes a JSON error with a
    stable code, never a traceback."""
    try:
        if request.path not in _UNLIMITED_PATHS and account_of(request) is None:
            # Before authentication only: an account is limited per key (authenticate).
            wait = request.app[IP_LIMITER].check(client_address(request))
            if wait:
                raise ApiError(ErrorCode.RATE_LIMITED, "too many requests from this address",
                               retry_after=wait)
        return await handler(request)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        response = error_response(describe(http))
        if "Allow" in http.headers:  # 405: which methods the path takes
            response.headers["Allow"] = http.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception as error:
        return error_response(describe(error))


def error_response(api: ApiError) -> web.Response:
    """The REST response of a refusal (with Retry-After when there is a wait)."""
    response = web.Response(body=_encode(api.response()), status=api.status,
                            content_type="application/json")
    if api.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(api.retry_after + 0.499)))
    return response


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the request guarded, then write one log line and one latency sample."""
    start = time.perf_counter()
    status = 500
    guard = request.app[GUARD]
    guard.started(request)
    try:
        response = await guarded(request, handler)
        status = response.status
        return response
    finally:
        guard.finished(request, status == 101)
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
                                "remote": client_address(request)})


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


async def runtime_context(app: web.Application) -> AsyncIterator[None]:
    """Lock the journal directory and check the journal's instruments (at once: a refusal
    stops start-up), then recover in the background while the port already answers
    `/health`; start the heartbeat. On cleanup drain the actors and release the lock."""
    exchange = app[EXCHANGE]
    config = app[CONFIG]
    state = app[STATE]
    lock = None
    if exchange.journaled:
        lock = DirectoryLock(Path(config.journal.directory))
        try:
            for actor in exchange.actors.values():
                assert actor.journal is not None
                actor.journal.check_spec(actor.spec)
        except BaseException:
            lock.release()
            raise
        state.recovery = asyncio.create_task(_recover(app), name="recovery")
    else:
        exchange.start()
        _ready(app)
    heartbeat = asyncio.create_task(_heartbeats(app), name="heartbeats")
    yield
    state.ready = False
    state.stopping = True
    app[CANCEL_AFTER].disarm_all()
    heartbeat.cancel()
    if state.recovery is not None and not state.recovery.done():
        state.recovery.cancel()
        await asyncio.gather(state.recovery, return_exceptions=True)
    await exchange.stop()
    if lock is not None:
        lock.release()
    log.info("actors drained and stopped")


async def _recover(app: web.Application) -> None:
    """Rebuild every journaled symbol, then take orders."""
    exchange = app[EXCHANGE]
    registry = app[REGISTRY]
    recoveries = await exchange.recover(app[STATE].repair, registry.restore)
    await _cancel_orphans(exchange, registry)
    for symbol, recovery in recoveries.items():
        log.info("recovered %s: snapshot seq %d, %d journal records (%d commands) in "
                 "%.3fs%s%s%s", symbol, recovery.snapshot_seq, recovery.records,
                 recovery.commands, recovery.seconds,
                 f", torn tail of {recovery.torn_bytes} bytes cut" if recovery.torn_bytes else "",
                 f", quarantined {len(recovery.quarantined)} file(s)"
                 if recovery.quarantined else "",
                 f", --repair dropped {recovery.dropped_commands} journaled command(s)"
                 if recovery.dropped_commands else "")
    _ready(app)


async def _cancel_orphans(exchange: Exchange, registry: OrderRegistry) -> None:
    """Cancel-on-disconnect across a restart: every session died with the old process, so
    its orders placed with `cancel_on_disconnect` are cancelled now, through the journal,
    with reason CANCEL_ON_DISCONNECT (the owner finds them in its executions history)."""
    now = time.time_ns()
    by_symbol: dict[str, list[AnyCommand]] = {}
    for order in list(registry.open.values()):
        if order.cancel_on_disconnect:
            by_symbol.setdefault(order.symbol, []).append(
                CancelOrder(order.order_id, now, Reason.CANCEL_ON_DISCONNECT))
    for symbol, cancels in by_symbol.items():
        await (await exchange.actor(symbol).send([cancels]))
        log.info("cancel-on-disconnect: %d order(s) of sessions that ended with the previous "
                 "process on %s", len(cancels), symbol)


def _ready(app: web.Application) -> None:
    app[STATE].ready = True
    log.info("gateway ready: %d symbols", len(app[EXCHANGE].actors))


HOUSEKEEPING_SECONDS = 0.25
"""How often connections are checked for being too far behind."""


async def _heartbeats(app: web.Application) -> None:
    """Apply the slow-consumer policy to every connection (also those with nothing new to
    send), and send heartbeats to every authenticated or subscribed connection that has
    been quiet for `runtime.heartbeat_seconds`."""
    interval = app[CONFIG].runtime.heartbeat_seconds
    hub = app[HUB]
    state = app[STATE]
    guard = app[GUARD]
    next_heartbeat = time.monotonic() + interval / 2
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        now = time.monotonic()
        guard.sweep(now)
        for connection in list(state.connections):
            connection.outbox.check(now)
            connection.check_auth_deadline(now)
        if now >= next_heartbeat:
            next_heartbeat = now + interval / 2
            subscribed = hub.subscribers()
            hub.heartbeat(interval, [connection.outbox for connection in state.connections
                                     if connection.account is not None
                                     or connection.outbox in subscribed])


async def close_websockets(app: web.Application) -> None:
    """on_shutdown: refuse new work and close every WebSocket with 1001 (going away)."""
    app[STATE].ready = False
    connections = list(app[STATE].connections)
    await asyncio.gather(*(connection.close_going_away() for connection in connections),
                         return_exceptions=True)


async def _no_banner(request: web.Request, response: web.StreamResponse) -> None:
    """No `Server:` header: which software and version runs is nobody's business."""
    response.headers.popall("Server", None)


def warn_about_demo_keys(config: Config) -> None:
    """Say loudly when the public demo keys guard a gateway reachable from elsewhere."""
    demo = [account.name for account in config.accounts
            if account.api_key.startswith(("demo-alice-key-", "demo-bob-key-"))]
    loopback = config.server.host in ("127.0.0.1", "localhost", "::1")
    if demo and not loopback:
        log.warning("THE DEMO API KEYS ARE IN USE (%s) ON %s: anyone can trade as these "
                    "accounts. Replace them (lobgw init writes fresh ones).",
                    ", ".join(demo), config.server.host)


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
    warn_about_demo_keys(config)
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
                        observe_latency=metrics.observe_latency, journals=journals,
                        expire_on_clock=True)
    history = config.history
    registry = OrderRegistry(specs, Retention(history.orders_kept, history.executions_kept,
                                              history.max_age_seconds))
    hub = MarketDataHub(specs, config.runtime.recent_trades)
    for symbol, actor in exchange.actors.items():
        # The order history and the recent trades are kept in each symbol's snapshots.
        actor.add_snapshot_part("orders", functools.partial(registry.capture, symbol),
                                functools.partial(registry.give_back, symbol))
        actor.add_snapshot_part("trades", functools.partial(hub.capture, symbol),
                                functools.partial(hub.give_back, symbol))
    registry.subscribed = hub.executions
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
    service = app[SERVICE] = OrderService(
        exchange, registry, metrics.received,
        {session.symbol: session for session in config.sessions})
    app[CANCEL_AFTER] = CancelAfter(service)
    app[HUB] = hub
    app[METRICS] = metrics
    app[ACCOUNTS] = {account.api_key: account.name for account in config.accounts}
    app[KEY_LIMITER] = RateLimiter(config.rate_limits.per_key_rate,
                                   config.rate_limits.per_key_burst)
    app[IP_LIMITER] = RateLimiter(config.rate_limits.per_ip_rate,
                                  config.rate_limits.per_ip_burst)
    app[STATE] = state
    app[GUARD] = ConnectionGuard(config.server.max_connections_per_ip,
                                 config.server.header_timeout_seconds,
                                 config.server.keepalive_seconds,
                                 config.server.trusted_proxies)
    document: Callable[[], dict[str, Any]] = functools.cache(
        functools.partial(openapi_document, ROUTES, list(specs)))
    app[OPENAPI] = document
    flusher = app[FLUSHER] = Flusher(config.runtime.market_data_flush_ms / 1000)
    metrics.add_collector(lambda: setattr(metrics, "messages_sent", flusher.frames_written))
    for route in ROUTES:
        app.router.add_route(route.method, route.pattern, route.handler)
    app.on_response_prepare.append(_no_banner)
    app.cleanup_ctx.append(runtime_context)
    app.on_shutdown.append(close_websockets)
    return app
