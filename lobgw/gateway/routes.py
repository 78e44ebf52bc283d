"""The route table: every REST route once, with what the OpenAPI document says about it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lobgw.gateway.rest import (
    DepthQuery,
    FillsQuery,
    LimitQuery,
    SymbolQuery,
    amend_by_client_id,
    amend_order,
    cancel_after,
    cancel_all,
    cancel_by_client_id,
    cancel_order,
    get_book,
    get_order,
    get_order_by_client_id,
    get_stats,
    get_trades,
    health,
    list_fills,
    list_orders,
    list_symbols,
    metrics_handler,
    openapi_handler,
    place_batch,
    place_order,
    ready,
)
from lobgw.gateway.wire import (
    AmendBody,
    BatchBody,
    BatchResult,
    CancelAfterBody,
    CancelAfterResult,
    CancelAllResult,
    DepthResponse,
    ExecutionsResponse,
    HealthResponse,
    OrderAck,
    OrderInfo,
    PlaceOrder,
    StatsResponse,
    SymbolInfo,
    TradesResponse,
)
from lobgw.gateway.ws import websocket_handler

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

    @property
    def pattern(self) -> str:
        """The path as the router matches it: `{order_id}` is anything but `batch`, so
        that other methods on `/api/v1/orders/batch` answer 405, not an order lookup."""
        return self.path.replace("{order_id}", "{order_id:(?!batch$)[^/]+}")


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
    Route("POST", "/api/v1/orders/batch", place_batch,
          "Places, cancels and amends in one request, each answered in order",
          body=BatchBody, response=BatchResult, auth=True,
          statuses=(400, 401, 429, 503)),
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
    Route("GET", "/api/v1/orders/by-client-id/{client_order_id}", get_order_by_client_id,
          "Look up an order by client order id", response=OrderInfo, auth=True,
          statuses=(401, 404, 429)),
    Route("POST", "/api/v1/cancel-after", cancel_after,
          "Dead-man's switch: cancel all orders unless refreshed in time",
          body=CancelAfterBody, response=CancelAfterResult, auth=True,
          statuses=(400, 401, 429)),
    Route("GET", "/api/v1/fills", list_fills, "The account's executions, from a cursor",
          query=FillsQuery, response=ExecutionsResponse, auth=True,
          statuses=(400, 401, 429)),
    Route("DELETE", "/api/v1/orders/by-client-id/{client_order_id}", cancel_by_client_id,
          "Cancel an order by client order id", response=OrderAck, auth=True,
          statuses=(401, 404, 429, 503)),
    Route("PATCH", "/api/v1/orders/by-client-id/{client_order_id}", amend_by_client_id,
          "Amend an order by client order id", body=AmendBody, response=OrderAck, auth=True,
          statuses=(400, 401, 404, 422, 429, 503)),
    Route("GET", "/ws", websocket_handler,
          "WebSocket: order entry and market data (see docs/api.md)"),
]
