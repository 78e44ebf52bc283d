"""The OpenAPI 3.1 document, generated from the route table and the msgspec wire types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from lobgw import __version__
from lobgw.gateway.routes import Route
from lobgw.gateway.wire import ErrorResponse

REF = "#/components/schemas/{name}"
_DESCRIPTIONS = {
    200: "OK", 201: "Created", 400: "Invalid request (code, field, reason)",
    401: "Missing or unknown API key", 404: "Not found", 408: "The body did not arrive in time",
    409: "Conflict (the original order is included for a known client order id)",
    413: "The request is too large",
    422: "Rejected by the matching engine (the order is included)", 429: "Rate limited",
    500: "Internal error (an error_id that is in the server log; never a traceback)",
    503: "Overloaded, recovering, journal unavailable or shutting down (see Retry-After)",
}
UNLIMITED = frozenset({"/health", "/ready", "/metrics"})
SECURITY_SCHEME = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
NOT_REST = frozenset({"/ws"})
"""The WebSocket endpoint is described in docs/api.md, not here."""


def statuses(route: Route) -> set[int]:
    """Every status the route can answer with: its own, and those its shape implies."""
    found = set(route.statuses) | {500}
    if route.path not in UNLIMITED:
        found.add(429)
    if route.auth:
        found.add(401)  # (and 429: authenticated routes are always limited)
    if _path_parameters(route.path) or route.query is not None:
        found.add(400)
    if "{symbol}" in route.path:
        found |= {404, 503}
    if route.body is not None:
        found |= {400, 408, 413}
    return found


def openapi_document(routes: Sequence[Route], symbols: Sequence[str] = ()) -> dict[str, Any]:
    """Build the document for `routes`; a request's symbol is one of `symbols`, when given
    (the document describes this gateway, so a tool knows an unknown symbol is invalid)."""
    types: list[Any] = [ErrorResponse]
    for route in routes:
        types.extend(t for t in (route.body, route.response, route.query) if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    _pairs_as_items(components)
    path_schemas = dict(_PATH_SCHEMAS)
    if symbols:
        path_schemas["symbol"] = {"type": "string", "enum": list(symbols)}
        for request in {t.__name__ for route in routes for t in (route.body, route.query)
                        if t is not None}:
            _name_symbols(components[request], list(symbols))
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.path in NOT_REST:
            continue
        operation: dict[str, Any] = {"summary": route.summary,
                                     "operationId": route.handler.__name__.strip("_")}
        if route.handler.__doc__:
            operation["description"] = route.handler.__doc__.strip()
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": path_schemas.get(name, {"type": "string"})}
                      for name in _path_parameters(route.path)]
        if route.query is not None:
            query_schema = components[route.query.__name__]
            for name, schema in query_schema.get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": False,
                                   "schema": schema})
        if route.auth:
            operation["security"] = [{"ApiKey": []}]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": by_type[route.body]}}}
        success = 201 if 201 in route.statuses else 200
        responses: dict[str, Any] = {str(success): {"description": _DESCRIPTIONS[success]}}
        if route.response is not None:
            responses[str(success)]["content"] = {
                "application/json": {"schema": by_type[route.response]}}
        for status in sorted(statuses(route)):
            if status != success:
                responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": {
                    "application/json": {"schema": by_type[ErrorResponse]}}}
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    _link_placed_orders(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lobgw", "version": __version__,
                 "description": "Limit-order-book exchange gateway. WebSocket protocol: "
                                "docs/api.md."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEME},
    }


_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "order_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "client_order_id": {"type": "string", "minLength": 1, "maxLength": 64,
                        "pattern": "^[A-Za-z0-9_.:-]+$"},
    "symbol": {"type": "string", "minLength": 1, "maxLength": 32},
}


_LINKED = {"order_id": "$response.body#/order/order_id",
           "client_order_id": "$response.body#/order/client_order_id"}


def _link_placed_orders(paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from a placed order to the operations on it, so tools (and readers)
    know where an order id comes from."""
    placed = paths.get("/api/v1/orders", {}).get("post")
    if placed is None:
        return
    links: dict[str, Any] = {}
    for path, operations in paths.items():
        names = [name for name in _path_parameters(path) if name in _LINKED]
        for operation in operations.values():
            if names:
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {name: _LINKED[name] for name in names}}
    if links:
        placed["responses"]["201"]["links"] = links


def _name_symbols(schema: dict[str, Any], symbols: list[str]) -> None:
    """Restrict a request schema's `symbol` property (string, or string-or-null) to `symbols`."""
    field = schema.get("properties", {}).get("symbol")
    if field is None:
        return
    for option in field.get("anyOf", [field]):
        if option.get("type") == "string":
            option.clear()
            option.update({"type": "string", "enum": symbols})


def _pairs_as_items(node: Any) -> None:
    """Write a fixed-length array of one item type (a price-quantity pair of strings) as
    `items` rather than `prefixItems`: equivalent, and more tools read it."""
    if isinstance(node, dict):
        prefix = node.get("prefixItems")
        if prefix and node.get("items") is False and all(p == prefix[0] for p in prefix):
            del node["prefixItems"]
            node["items"] = prefix[0]
        for value in node.values():
            _pairs_as_items(value)
    elif isinstance(node, list):
        for value in node:
            _pairs_as_items(value)


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
