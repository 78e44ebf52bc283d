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
        found |= {401, 429}
    if _path_parameters(route.path) or route.query is not None:
        found.add(400)
    if "{symbol}" in route.path:
        found |= {404, 503}
    if route.body is not None:
        found |= {400, 408, 413}
    return found


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """Build the document for `routes`."""
    types: list[Any] = [ErrorResponse]
    for route in routes:
        types.extend(t for t in (route.body, route.response, route.query) if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
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
                       "schema": _PATH_SCHEMAS.get(name, {"type": "string"})}
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


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
